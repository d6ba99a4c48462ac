"""DirLab lung vessel trees (full 60k-point trees by default): seconds per registration step, the OT
distance before and after, the landmark TRE when landmark files are given, and the recovery error of
realistic synthetic breathing deformations (``gdl.data.lung.BreathingDeformation``), all in mm.

    python benchmarks/lung.py --data ../shared/data/lung_copd1 --steps prealign,finetune \\
        [--landmarks SOURCE.txt TARGET.txt [--landmark-format dirlab --origin-mm X Y Z]] \\
        [--synthetic-seeds 100-104] [--json benchmarks/results/lung.json] [registration.finetune.smoothing=0.05 ...]

Landmarks: two files of corresponding rows, the source's (expiration) then the target's: x y z in the
clouds' own coordinates (``--landmark-format xyz``), or DirLab voxel indices (``dirlab``: spacing from
the case name or ``--spacing``, ``--origin-mm`` the origin of the clouds' frame in mm); ``--unit-mm``
mm per cloud unit (100 for the normalised trees). The source landmarks are moved as
``python -m gdl.cli.register --query`` moves them (``RegistrationResult.warp``) after each step; the
TRE (mean, median, 90th percentile, count over 10 mm, count worse than before registration, worst
landmark) is printed and written to the JSON before registration and after each step, with every
landmark's error, and ``<json stem>_landmarks.png`` beside the JSON shows the errors on the tree and
against the distance moved. Synthetic pairs deform the expiration tree; seeds 0-99 are for tuning,
100 and above are held out (``--synthetic-seeds ""``: none). Trailing overrides change the ``lung``
config; ``key=a,b`` choices run one benchmark per combination (``<json stem>_<k>.json``) and, with
landmarks, a table of their final TRE (``<json stem>_sweep.json``):
``registration.finetune.subset_seed=0,1,2,3,4`` shows how much a preset depends on its random draws.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import gdl.ops
from gdl.data.dirlab import LANDMARK_FORMATS, landmark_errors_mm, landmark_points, tre_statistics_mm
from gdl.data.lung import BreathingDeformation, read_lung_pair
from gdl.models.registration.configs import FINETUNE_MODELS, build_pipeline, sweep
from gdl.models.registration.landmark_figure import plot_landmark_errors
from gdl.progress import report, show_progress


def seed_list(text: str) -> list[int]:
    """"0-4" or "0,3,7" (or "" for none) as a list of seeds."""
    seeds = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def subset(points, weights, n, seed):
    if n is None or n >= len(points):
        return points, weights
    index = np.sort(np.random.default_rng(seed).choice(len(points), n, replace=False))
    return points[index], weights[index]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value; key=a,b sweeps)")
    parser.add_argument("--data", required=True, help="folder with <case>_source.vtk and <case>_target.vtk")
    parser.add_argument("--case", default="copd1")
    parser.add_argument("--preset", default="lung", help="configs/registration/<preset>.yaml")
    parser.add_argument("--steps", default="prealign,finetune", help="comma list of prealign, flow, finetune")
    parser.add_argument("--finetune", default="ot", choices=FINETUNE_MODELS, help="fine-tuning model: robust OT + smoothing, or LDDMM")
    parser.add_argument("--ckpt", default=None, help="FlowTask checkpoint for the flow step (lung_flow)")
    parser.add_argument("--points", default="all", help="points per tree, or 'all' (default)")
    parser.add_argument("--weights", default="weights", help="point data used as transport masses, or 'none'")
    parser.add_argument("--landmarks", nargs=2, default=None, metavar=("SOURCE", "TARGET"),
                        help="landmark files of the source (expiration) and target trees, row i matching row i")
    parser.add_argument("--landmark-format", default="xyz", choices=LANDMARK_FORMATS)
    parser.add_argument("--spacing", type=float, nargs=3, default=None, help="dirlab format: voxel size (mm)")
    parser.add_argument("--origin-mm", type=float, nargs=3, default=(0.0, 0.0, 0.0), help="dirlab format: origin of the clouds' frame (mm)")
    parser.add_argument("--unit-mm", type=float, default=100.0, help="mm per cloud unit (100 for the normalised trees)")
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic pairs")
    parser.add_argument("--synthetic-seeds", default="100-102", help="synthetic pairs: seeds 0-99 tune, 100+ are held out")
    parser.add_argument("--apex", default="min", choices=("min", "max"),
                        help="synthetic pairs: the end of z that holds the lung apex (min: DirLab's voxel order, slices from the head down)")
    parser.add_argument("--blur", type=float, default=0.01, help="blur of the OT distance (units)")
    parser.add_argument("--ot-points", type=int, default=8192, help="points of each tree in the OT distance")
    parser.add_argument("--json", default="benchmarks/results/lung.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_intermixed_args(argv)
    if not args.unit_mm > 0:
        parser.error(f"argument --unit-mm: expected a positive number, got {args.unit_mm}")
    return args


def main(argv=None):
    args = parse_args(argv)
    show_progress()
    landmarks = None
    if args.landmarks is not None:
        options = dict(format=args.landmark_format, spacing=args.spacing, origin_mm=args.origin_mm, unit_mm=args.unit_mm)
        landmarks = [landmark_points(path, **options) for path in args.landmarks]
        if landmarks[0].shape != landmarks[1].shape:
            raise SystemExit(f"error: the landmark files hold {len(landmarks[0])} and {len(landmarks[1])} points: they must correspond")
    runs = sweep(args.overrides)
    results = []
    for number, overrides in enumerate(runs):
        out = Path(args.json)
        if len(runs) > 1:
            out = out.with_name(f"{out.stem}_{number}{out.suffix}")
        results.append(run(args, overrides, landmarks, out))
    if len(runs) > 1 and landmarks is not None and not args.skip_real:
        sweep_summary(results, Path(args.json))


def sweep_summary(results: list[dict], out: Path):
    """One row per run of a sweep (e.g. ``registration.finetune.subset_seed=0,1,2,3,4``): the final
    TRE (mean, median, 90th percentile, over 10 mm, worse than before) and seconds, then the mean TRE's
    mean, min and max over the runs, printed and written to ``<json stem>_sweep.json``."""
    rows = []
    print("  sweep: final TRE per run (mm)")
    for result in results:
        stats = list(result["real"]["tre_mm"].values())[-1]
        row = {"overrides": result["overrides"], **{key: stats[key] for key in ("mean", "median", "p90", "over_10mm", "worse_than_before")},
               "seconds": sum(result["real"]["seconds"].values())}
        rows.append(row)
        print(f"    {' '.join(row['overrides']) or '(preset)':<50} mean {row['mean']:6.2f}, median {row['median']:6.2f}, "
              f"90% {row['p90']:6.2f}, over 10 mm {row['over_10mm']:3d}, worse than before {row['worse_than_before']:3d}, {row['seconds']:.0f} s")
    means = [row["mean"] for row in rows]
    summary = {"runs": rows, "mean_tre_mm": float(np.mean(means)), "min_mean_tre_mm": min(means), "max_mean_tre_mm": max(means)}
    print(f"  sweep: mean TRE {summary['mean_tre_mm']:.2f} mm over {len(rows)} runs (from {min(means):.2f} to {max(means):.2f})")
    path = out.with_name(f"{out.stem}_sweep{out.suffix}")
    path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {path}")


def landmark_report(registration, landmarks, tree, args, out: Path) -> dict:
    """TRE statistics and each landmark's error (mm) before registration and after each step, printed;
    the picture ``<out stem>_landmarks.png``."""
    source, target = landmarks
    moving = torch.from_numpy(source.astype(np.float32)).to(args.device)
    warped = {"before": source}
    with torch.no_grad():
        for k, step in enumerate(registration.steps, start=1):
            warped[f"after {step}"] = registration.warp(moving, steps=k).cpu().numpy()
    errors = {stage: landmark_errors_mm(points, target, args.unit_mm) for stage, points in warped.items()}
    statistics = {
        stage: tre_statistics_mm(points, target, args.unit_mm, None if stage == "before" else source) for stage, points in warped.items()
    }
    for stage, stats in statistics.items():
        worse = "" if stage == "before" else f", worse than before {stats['worse_than_before']:3d}"
        print(f"  TRE {stage:>15}: mean {stats['mean']:6.2f} mm, median {stats['median']:6.2f}, 90% {stats['p90']:6.2f}, "
              f"over 10 mm {stats['over_10mm']:3d}/{stats['count']}{worse}, worst {stats['max']:6.2f} (landmark {stats['worst']})")
    picture = plot_landmark_errors(
        tree, target, {stage.removeprefix("after "): e for stage, e in errors.items()}, out.with_name(f"{out.stem}_landmarks.png"),
        unit_mm=args.unit_mm, title=f"{args.case}, preset {args.preset}: {len(target)} landmarks",
    )
    print(f"  wrote {picture}")
    return {"tre_mm": statistics, "landmark_errors_mm": {stage: e.round(3).tolist() for stage, e in errors.items()}}


def run(args, overrides, landmarks, out: Path) -> dict:
    device = torch.device(args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = None if args.points == "all" else int(args.points)
    source, target, w_source, w_target = read_lung_pair(args.data, args.case)
    use_masses = args.weights.lower() != "none"
    pipeline = build_pipeline(args.steps.split(","), args.preset, args.ckpt, finetune_model=args.finetune, overrides=overrides).to(device)
    print(f"{args.case}, preset {args.preset} {' '.join(overrides)}, steps {args.steps}, points {args.points}, "
          f"masses {'weights' if use_masses else 'uniform'}, device {device}")

    def masses(weights):
        return torch.from_numpy(weights.astype(np.float32)).to(device) if use_masses else None

    result = {"case": args.case, "preset": args.preset, "apex": args.apex, "overrides": list(overrides), "steps": args.steps,
              "finetune_model": args.finetune, "masses": "weights" if use_masses else "uniform", "device": str(device)}
    if not args.skip_real:
        xs, ws = subset(source, w_source, n, 0)
        yt, wt = subset(target, w_target, n, 1)
        x, y = torch.from_numpy(xs).to(device), torch.from_numpy(yt).to(device)
        sinkhorn = gdl.ops.get("sinkhorn", p=2, blur=args.blur, debias=True)
        i, j = (torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(c))[: args.ot_points])) for seed, c in ((2, x), (3, y)))

        def distance(moved):
            return float(sinkhorn(moved[i], y[j]))

        timings = {}
        report("lung", f"registering the real pair: {len(x)} -> {len(y)} points")
        with torch.no_grad():
            before = distance(x)
            registration = pipeline.register(x, y, timings=timings, weights_source=masses(ws), weights_target=masses(wt))
            after = distance(x + registration.displacement)
        real = {"points": [len(x), len(y)], "seconds": timings, "ot_before": before, "ot_after": after}
        print(f"  real pair: OT distance (blur {args.blur}, {args.ot_points} points) {before:.3e} -> {after:.3e}; "
              + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items()))
        if landmarks is not None:
            real.update(landmark_report(registration, landmarks, target, args, out))
        result["real"] = real

    deformation = BreathingDeformation(apex=args.apex)
    synthetic = []
    tree = torch.from_numpy(source)
    for seed in seed_list(args.synthetic_seeds):
        report("lung", f"synthetic pair, seed {seed}")
        pair = deformation(tree, torch.Generator().manual_seed(seed), torch.from_numpy(w_source))
        timings = {}
        with torch.no_grad():
            registration = pipeline.register(
                pair.source.to(device), pair.target.to(device), timings=timings,
                weights_source=masses(w_source[pair.source_index.numpy()]),
                weights_target=masses(w_source[pair.target_index.numpy()]),
            )
            query = registration.displacement_at(pair.query.to(device)).cpu() if len(pair.query) else None
            step_errors = {  # mean error after each earlier step, at the fitted points
                step: float((registration.displacement_at(pair.source.to(device), steps=k).cpu() - pair.flow).norm(dim=1).mean())
                * args.unit_mm
                for k, step in enumerate(registration.steps[:-1], start=1)
            }
        error = (registration.displacement.cpu() - pair.flow).norm(dim=1) * args.unit_mm
        step_errors[registration.steps[-1]] = float(error.mean())
        row = {
            "seed": seed, "points": [len(pair.source), len(pair.target)],
            "initial_mm": float(pair.flow.norm(dim=1).mean()) * args.unit_mm,
            "error_mm": float(error.mean()), "error_p90_mm": float(error.quantile(0.9)), "error_mm_after": step_errors,
            "held_out_error_mm": None if query is None else float((query - pair.query_flow).norm(dim=1).mean()) * args.unit_mm,
            "seconds": timings,
        }
        synthetic.append(row)
        print(f"  synthetic {seed}: mean motion {row['initial_mm']:.1f} mm -> "
              + " -> ".join(f"{e:.2f} mm after {step}" for step, e in step_errors.items())
              + f" (90% {row['error_p90_mm']:.2f}, missing branches {row['held_out_error_mm'] or float('nan'):.2f}); "
              + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items()), flush=True)
    result["synthetic"] = synthetic
    if synthetic:
        result["mean_synthetic_error_mm"] = float(np.mean([r["error_mm"] for r in synthetic]))
        print(f"  synthetic mean error {result['mean_synthetic_error_mm']:.2f} mm over {len(synthetic)} pairs")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
