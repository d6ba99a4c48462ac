"""KITTI scene flow: EPE3D, Acc3DS, Acc3DR, Outliers and seconds per pair for any subset of the
three registration steps, with the ``kitti`` registration config (``configs/registration/``).

    python benchmarks/kitti.py --data ../shared/data/kitti_sceneflow --points 8192 \
        --steps prealign,finetune --json benchmarks/results/kitti.json [--ckpt run/checkpoints/last.ckpt] \
        [registration.finetune.smoothing=[2,2,1,0.5] ...]

Trailing overrides change the config; ``key=a,b`` choices run one benchmark per combination (a sweep,
one JSON file each, suffixed by the run number).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gdl.data.kitti import list_scene_pairs, read_scene_pair, standard_protocol
from gdl.models.registration.metrics import scene_flow_metrics
from gdl.models.registration.configs import FINETUNE_MODELS, build_pipeline, sweep
from gdl.progress import report, show_progress

COLUMNS = ("EPE3D", "Acc3DS", "Acc3DR", "Outliers", "seconds")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value; key=a,b sweeps)")
    parser.add_argument("--preset", default="kitti", help="configs/registration/<preset>.yaml")
    parser.add_argument("--data", required=True, help="folder of pairs (NNNNNN/pc1.npy, pc2.npy or FlowNet3D .npz)")
    parser.add_argument("--points", default="8192", help="points per frame after the standard protocol, or 'all'")
    parser.add_argument("--steps", default="prealign,finetune", help="comma list of prealign, flow, finetune")
    parser.add_argument("--finetune", default="ot", choices=FINETUNE_MODELS, help="fine-tuning model: robust OT + smoothing, or LDDMM")
    parser.add_argument("--ckpt", default=None, help="FlowTask checkpoint for the flow step")
    parser.add_argument("--json", default="benchmarks/results/kitti.json", help="output JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the protocol's point sampling")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_intermixed_args(argv)
    show_progress()
    runs = sweep(args.overrides)
    for number, overrides in enumerate(runs):
        out = Path(args.json)
        if len(runs) > 1:
            out = out.with_name(f"{out.stem}_{number}{out.suffix}")
        run(args, overrides, out)


def run(args, overrides, out: Path):
    points = None if args.points == "all" else int(args.points)
    pipeline = build_pipeline(
        args.steps.split(","), args.preset, args.ckpt, finetune_model=args.finetune, overrides=overrides
    ).to(args.device)
    rows = {}
    print(f"preset: {args.preset} {' '.join(overrides)}   steps: {args.steps}   points: {args.points}   device: {args.device}")
    print(f"{'pair':>10} " + " ".join(f"{c:>9}" for c in COLUMNS))
    paths = list_scene_pairs(args.data)
    for number, path in enumerate(paths, start=1):
        report("kitti", f"pair {number}/{len(paths)}: {Path(path).name}")
        pair = standard_protocol(read_scene_pair(path), points, seed=args.seed)
        source, target, flow = (torch.from_numpy(a).to(args.device) for a in (pair.source, pair.target, pair.flow))
        timings = {}
        start = time.perf_counter()
        with torch.no_grad():
            predicted = pipeline(source, target, timings=timings)
        if source.device.type == "cuda":
            torch.cuda.synchronize()
        row = scene_flow_metrics(predicted, flow)
        row["seconds"] = time.perf_counter() - start
        row["step_seconds"] = timings
        rows[pair.name] = row
        print(f"{pair.name:>10} " + " ".join(f"{row[c]:9.4f}" for c in COLUMNS), flush=True)
    mean = {c: sum(r[c] for r in rows.values()) / len(rows) for c in COLUMNS}
    print(f"{'mean':>10} " + " ".join(f"{mean[c]:9.4f}" for c in COLUMNS))
    result = {
        "preset": args.preset, "overrides": list(overrides), "steps": args.steps, "finetune_model": args.finetune,
        "points": args.points, "device": args.device, "pairs": rows, "mean": mean,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
