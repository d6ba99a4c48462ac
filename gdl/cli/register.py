"""Register two point clouds (VTK, PLY or NPY) and write the warped source, the displacement and a
PNG before/after view.

    python -m gdl.cli.register source.vtk target.vtk --out results/ [--steps prealign,finetune]
        [--ckpt flow.ckpt] [--preset kitti|lung]

Writes ``<out>/warped_source.<ext>`` (the source's format, point data kept), ``<out>/displacement.npy``
(N, 3) and ``<out>/before_after.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from gdl.data.pointclouds import read_points, write_points
from gdl.models.registration.pipeline import FINETUNE_MODELS, PRESETS, build_pipeline


def plot_before_after(source, warped, target, path, max_points: int = 20000) -> Path:
    """Two 3-D scatter panels: source and target, then warped source and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)

    def thin(x):
        return x if len(x) <= max_points else x[rng.choice(len(x), max_points, replace=False)]

    figure = plt.figure(figsize=(12, 6))
    for column, (title, moving) in enumerate((("before", source), ("after", warped))):
        axes = figure.add_subplot(1, 2, column + 1, projection="3d")
        for cloud, colour, label in ((thin(moving), "tab:blue", "source"), (thin(target), "tab:red", "target")):
            axes.scatter(cloud[:, 0], cloud[:, 1], cloud[:, 2], s=0.3, c=colour, label=label, alpha=0.5)
        axes.set_title(title)
        axes.legend(loc="upper right", markerscale=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdl.cli.register", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="moving point cloud (.vtk, .ply or .npy)")
    parser.add_argument("target", help="fixed point cloud (.vtk, .ply or .npy)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", default="prealign,finetune", help="comma list of prealign, flow, finetune")
    parser.add_argument("--finetune", default="ot", choices=FINETUNE_MODELS, help="fine-tuning model: robust OT + smoothing, or LDDMM")
    parser.add_argument("--ckpt", default=None, help="FlowTask checkpoint, needed by the flow step")
    parser.add_argument("--preset", default="kitti", choices=sorted(PRESETS), help="step parameters: metre-scale scenes or unit-scale lungs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    source, source_data = read_points(args.source)
    target, _ = read_points(args.target)
    pipeline = build_pipeline(args.steps.split(","), args.preset, args.ckpt, finetune_model=args.finetune).to(args.device)
    with torch.no_grad():
        displacement = pipeline(torch.from_numpy(source).to(args.device), torch.from_numpy(target).to(args.device))
    displacement = displacement.cpu().numpy()
    warped = source + displacement

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = Path(args.source).suffix.lower()
    written = [
        write_points(out / f"warped_source{suffix}", warped, source_data if suffix != ".npy" else None),
        out / "displacement.npy",
    ]
    np.save(written[1], displacement.astype(np.float32))
    written.append(plot_before_after(source, warped, target, out / "before_after.png"))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
