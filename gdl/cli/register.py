"""Register two point clouds (VTK, PLY or NPY) and write the warped source, the displacement and a
PNG before/after view.

    python -m gdl.cli.register source.vtk target.vtk [--out results/] [--steps prealign,finetune]
        [--preset kitti|lung] [--ckpt flow.ckpt] [--query landmarks.txt] [--weights weights|none]
        [registration.finetune.blurs=[0.03,0.01] ...]

Writes ``<out>/warped_source.<ext>`` (the source's format, point data kept), ``<out>/displacement.npy``
(N, 3) and ``<out>/before_after.png`` (``<out>``: the current folder by default); with ``--query`` (x y z rows in .txt, or .npy/.ply/.vtk),
``<out>/warped_query.<ext>``: those points moved by the same registration. The point data named by
``--weights`` (the vessel masses ``weights`` of lung trees, by default) are the transport masses of
pre-alignment and fine-tuning; clouds without it get uniform masses. Trailing ``key=value`` overrides
change the preset (``configs/registration/<preset>.yaml``). Progress lines go to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from gdl.command_line import ArgumentParser, plural
from gdl.data.dirlab import read_xyz
from gdl.data.pointclouds import read_points, write_points
from gdl.models.registration.configs import FINETUNE_MODELS, build_pipeline, presets
from gdl.models.registration.progress import report, show_progress


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


def read_query(path) -> tuple[np.ndarray, dict]:
    """Query points from a text file of x y z rows (``.txt``, ``.csv``: commas allowed) or any
    point-cloud file."""
    path = Path(path)
    if path.suffix.lower() not in (".txt", ".csv"):
        return read_points(path)
    return read_xyz(path, what="query").astype(np.float32), {}


def point_masses(data: dict, name: str | None, path) -> np.ndarray | None:
    """The per-point masses ``data[name]`` (None when ``name`` is None or the file has none)."""
    if name is None or name not in data:
        return None
    masses = np.asarray(data[name], dtype=np.float64)
    if masses.ndim != 1:
        raise ValueError(f"{path}: point data {name!r} must hold one mass per point, got shape {masses.shape}")
    return masses


def write_query(path: Path, points: np.ndarray, suffix: str) -> Path:
    if suffix in (".txt", ".csv"):
        np.savetxt(path, points, fmt="%.6f")
        return path
    return write_points(path, points)


def parse_args(argv):
    parser = ArgumentParser(prog="python -m gdl.cli.register", description=__doc__)
    parser.add_argument("source", help="moving point cloud (.vtk, .ply or .npy)")
    parser.add_argument("target", help="fixed point cloud (.vtk, .ply or .npy)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. registration.finetune.blurs=[0.03,0.01]")
    parser.add_argument("--out", default=".", help="output folder (default: the current folder)")
    parser.add_argument("--steps", default="prealign,finetune", help="comma list of prealign, flow, finetune")
    parser.add_argument("--finetune", default="ot", choices=FINETUNE_MODELS, help="fine-tuning model: robust OT + smoothing, or LDDMM")
    parser.add_argument("--ckpt", default=None, help="FlowTask checkpoint, needed by the flow step")
    parser.add_argument("--preset", default="kitti", help="configs/registration/<preset>.yaml: kitti (metre-scale scenes) or lung (unit-scale trees)")
    parser.add_argument("--query", default=None, help="points to warp too: x y z rows (.txt) or .npy/.ply/.vtk")
    parser.add_argument("--weights", default="weights", help="point data used as transport masses, or 'none' for uniform masses")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=device, help=f"torch device to register on, e.g. cpu, cuda, cuda:1 (default: {device})")
    args = parser.parse_intermixed_args(argv)
    choices = [p for p in presets() if not p.endswith("_lddmm")]
    if args.preset not in choices:
        parser.error(f"argument --preset: expected one of {choices}, got {args.preset!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    show_progress()
    began = time.perf_counter()
    try:
        report("register", f"reading {args.source} and {args.target}")
        source, source_data = read_points(args.source)
        target, target_data = read_points(args.target)
        query = None if args.query is None else read_query(args.query)[0]
        weights = None if args.weights.lower() == "none" else args.weights
        masses = [point_masses(data, weights, path) for data, path in ((source_data, args.source), (target_data, args.target))]
        if (masses[0] is None) != (masses[1] is None):
            masses = [None, None]  # one cloud without masses: uniform on both sides
        pipeline = build_pipeline(
            args.steps.split(","), args.preset, args.ckpt, finetune_model=args.finetune, overrides=args.overrides
        ).to(args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report("register", f"{args.preset} preset, steps {','.join(pipeline.steps)}, {len(source):,} -> {plural(len(target), 'point')}, "
           f"masses: {'point data ' + repr(weights) if masses[0] is not None else 'uniform'}, device {args.device}")
    device = torch.device(args.device)
    a, b = (None if m is None else torch.from_numpy(m).to(device=device, dtype=torch.float32) for m in masses)
    with torch.no_grad():
        result = pipeline.register(
            torch.from_numpy(source).to(device), torch.from_numpy(target).to(device), weights_source=a, weights_target=b
        )
        displacement = result.displacement.cpu().numpy()
        warped_query = None if query is None else result.warp(torch.from_numpy(query).to(device)).cpu().numpy()
    warped = source + displacement

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = Path(args.source).suffix.lower()
    written = [
        write_points(out / f"warped_source{suffix}", warped, source_data if suffix != ".npy" else None),
        out / "displacement.npy",
    ]
    np.save(written[1], displacement.astype(np.float32))
    if warped_query is not None:
        query_suffix = Path(args.query).suffix.lower()
        written.append(write_query(out / f"warped_query{query_suffix}", warped_query, query_suffix))
    written.append(plot_before_after(source, warped, target, out / "before_after.png"))
    report("register", f"done in {time.perf_counter() - began:.1f} s")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
