"""DirLab copd1 lung vessel trees: runtime of each registration step, OT distance before and after,
and the recovery error (mm, 1 unit = 100 mm) of synthetic deformations of the inspiration tree.

    python benchmarks/lung.py --data ../shared/data/lung_copd1 --steps prealign,finetune \
        [--points 60000] [--synthetic 3] [--json benchmarks/results/lung.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import gdl.ops
from gdl.data.lung import MM_PER_UNIT, read_lung_pair
from gdl.data.synthetic import SyntheticDeformation
from gdl.models.registration.pipeline import FINETUNE_MODELS, build_pipeline


def _subset(points: np.ndarray, weights: np.ndarray, n: int | None, seed: int):
    if n is None or n >= len(points):
        return points, weights
    index = np.random.default_rng(seed).choice(len(points), n, replace=False)
    return points[index], weights[index]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with copd1_source.vtk and copd1_target.vtk")
    parser.add_argument("--case", default="copd1")
    parser.add_argument("--steps", default="prealign,finetune", help="comma list of prealign, flow, finetune")
    parser.add_argument("--finetune", default="ot", choices=FINETUNE_MODELS, help="fine-tuning model: robust OT + smoothing, or LDDMM")
    parser.add_argument("--ckpt", default=None, help="FlowTask checkpoint for the flow step (lung_flow)")
    parser.add_argument("--points", default="all", help="points per tree, or 'all'")
    parser.add_argument("--synthetic", type=int, default=3, help="synthetic deformations to recover")
    parser.add_argument("--blur", type=float, default=0.01, help="blur of the OT distance (units)")
    parser.add_argument("--json", default="benchmarks/results/lung.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    n = None if args.points == "all" else int(args.points)
    source, target, w_source, w_target = read_lung_pair(args.data, args.case)
    source, w_source = _subset(source, w_source, n, 0)
    target, w_target = _subset(target, w_target, n, 1)
    device = torch.device(args.device)
    x, y = torch.from_numpy(source).to(device), torch.from_numpy(target).to(device)
    a = torch.from_numpy(w_source / w_source.sum()).to(device)
    b = torch.from_numpy(w_target / w_target.sum()).to(device)
    distance = gdl.ops.get("sinkhorn", p=2, blur=args.blur, debias=True)
    pipeline = build_pipeline(args.steps.split(","), "lung", args.ckpt, finetune_model=args.finetune).to(device)

    timings = {}
    with torch.no_grad():
        before = float(distance(x, y, a, b))
        start = time.perf_counter()
        displacement = pipeline(x, y, timings=timings)
        total = time.perf_counter() - start
        after = float(distance(x + displacement, y, a, b))
    print(f"copd1 {len(x)} -> {len(y)} points, steps {args.steps}, device {device}")
    for step, seconds in timings.items():
        print(f"  {step:>9}: {seconds:8.2f} s")
    print(f"  OT distance (blur {args.blur}): before {before:.3e}, after {after:.3e}; total {total:.2f} s")

    deformation = SyntheticDeformation(
        scales=(0.3, 0.1), amplitudes=(0.15, 0.03), num_controls=64, rotation_deg=5.0, translation=0.05, affine=0.03, noise=0.002
    )
    recoveries = []
    for seed in range(args.synthetic):
        pair = deformation(torch.from_numpy(target), torch.Generator().manual_seed(seed))
        with torch.no_grad():
            predicted = pipeline(pair.source.to(device), pair.target.to(device)).cpu()
        error = float((predicted - pair.flow).norm(dim=1).mean()) * MM_PER_UNIT
        initial = float(pair.flow.norm(dim=1).mean()) * MM_PER_UNIT
        recoveries.append({"seed": seed, "initial_mm": initial, "error_mm": error})
        print(f"  synthetic {seed}: mean displacement {initial:.2f} mm, recovery error {error:.2f} mm")
    result = {
        "case": args.case, "points": len(x), "steps": args.steps, "finetune_model": args.finetune, "device": str(device), "seconds": timings,
        "ot_before": before, "ot_after": after, "synthetic": recoveries,
        "mean_recovery_mm": float(np.mean([r["error_mm"] for r in recoveries])) if recoveries else None,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
