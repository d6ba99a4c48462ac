"""What hydrogens change in a site model's answer: each test protein read with and without them.

    python benchmarks/protein_hydrogens.py [--ckpt site] [--data ../shared/data/masif_search_pairs]
        [--offsets 0.25 0.5] [--threshold 3.0]

For every side of the test-split complexes (the PDB-ID split of ``benchmarks/protein.py --split
test``), the surface is sampled with the same seed from the atoms with hydrogens (as given) and
without them (``read_pdb(..., hydrogens=False)``), from the atoms with hydrogens with another seed
(the sampling noise of a per-protein ROC-AUC, the control), and from the atoms without hydrogens at the
level ``distance + offset`` for each of ``--offsets`` (the surface moved outwards, where the
hydrogens would have put it: a correction without retraining), and with twice the points drawn per
atom (as many candidate points as with hydrogens; alone and with the second offset). Each surface is scored and labelled
twice: interface = a partner atom within ``--threshold`` angstroms, the partner read with its
hydrogens or without them. Reported per input and label kind: per-protein median and pooled site
ROC-AUC, and the per-protein difference to the protonated input (median, worst); per input, the
median surface points, the median distance of the points outside the heavy atoms' van der Waals
spheres, and the shift of each fixed input feature's mean in units of the model's input
normalisation (its running standard deviation). JSON:
benchmarks/results/protein_hydrogens_<ckpt>_test_cpu.json.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from gdl.data.pdb import ATOM_TYPES, read_pdb
from gdl.data.protein_cache import file_sha256
from gdl.data.proteins import find_complexes, interface_labels, split_by_pdb_id
from gdl.models.dmasif import atom_radii, van_der_waals_gap

from protein import REPO, checkpoint_model, machine, write_json

FEATURES = (
    "burial 5 A", "burial 8 A", "burial 11 A", "burial 14 A", "shape 6 A", "shape 10 A",
    "hydropathy 6 A", "hydropathy 10 A", "charge 6 A", "charge 10 A", "N fraction 6 A", "O fraction 6 A",
    "S fraction 6 A", "nearest hydropathy", "nearest charge", "protrusion",
)
HYDROGEN = ATOM_TYPES.index("H")


def score(model, atoms, seed: int, offset: float = 0.0, draws: int = 1):
    """Surface (points, features) of ``atoms`` at the model's level + ``offset``, with ``draws``
    times the model's points drawn per atom, and its site scores."""
    level, per_atom = model.distance, model.points_per_atom
    model.distance, model.points_per_atom = level + offset, per_atom * draws
    try:
        surface = model.surface(atoms.coords, atoms.types, None, atoms.residue_properties(), generator=torch.Generator().manual_seed(seed))
    finally:
        model.distance, model.points_per_atom = level, per_atom
    return surface, model(surface, atoms.coords, atoms.types).numpy()


def heavy_gap(points, atoms) -> float:
    """Median distance of ``points`` outside the van der Waals spheres of the heavy atoms."""
    heavy = atoms.types[:, HYDROGEN] < 0.5
    radii = atom_radii(atoms.types[heavy])
    return float(van_der_waals_gap(points, atoms.coords[heavy], radii).median())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="site", help="site | a checkpoint file")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/masif_search_pairs"))
    parser.add_argument("--offsets", type=float, nargs="*", default=[0.25, 0.5], help="surface level offsets (A) tried without hydrogens")
    parser.add_argument("--threshold", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    model = checkpoint_model(args.ckpt).eval()
    std = model.input_norm.running_var.sqrt().numpy()
    complexes = split_by_pdb_id(find_complexes(args.data), 0.15, 0.2)[2]
    # (input, read with hydrogens, seed added, level offset, times the points drawn per atom)
    runs = [("hydrogens", True, 0, 0.0, 1), ("hydrogens, another seed", True, 1, 0.0, 1), ("stripped", False, 0, 0.0, 1)]
    runs += [(f"stripped, level +{o:g} A", False, 0, o, 1) for o in args.offsets]
    runs += [("stripped, 2x points drawn", False, 0, 0.0, 2)]
    runs += [(f"stripped, level +{o:g} A, 2x points drawn", False, 0, o, 2) for o in args.offsets[1:2]]
    inputs = [r[0] for r in runs]
    labels_kinds = ("partner with hydrogens", "partner heavy atoms")
    auc = {i: {l: {} for l in labels_kinds} for i in inputs}
    pooled = {i: {l: ([], []) for l in labels_kinds} for i in inputs}
    points, gaps, feature_means = ({i: {} for i in inputs} for _ in range(3))
    zeros = functools.partial(torch.zeros, dtype=torch.long)
    print(f"{len(complexes)} test complexes of {args.data}")
    for c in complexes:
        for path, partner in ((c.file_1, c.file_2), (c.file_2, c.file_1)):
            name = path.name.split(".")[0]
            seed = int(file_sha256(path)[:8], 16)
            given, stripped = read_pdb(path), read_pdb(path, hydrogens=False)
            partners = {labels_kinds[0]: read_pdb(partner).coords, labels_kinds[1]: read_pdb(partner, hydrogens=False).coords}
            with torch.no_grad():
                for kind, hydrogens, seed_added, offset, draws in runs:
                    atoms = given if hydrogens else stripped
                    surface, scores = score(model, atoms, seed + seed_added, offset, draws)
                    points[kind][name] = len(surface.points)
                    gaps[kind][name] = heavy_gap(surface.points, atoms)
                    feature_means[kind][name] = surface.features.double().mean(0).numpy()
                    for label_kind, others in partners.items():
                        y = interface_labels(surface.points, zeros(len(surface.points)), others, zeros(len(others)), args.threshold).numpy()
                        if 0 < y.sum() < len(y):
                            auc[kind][label_kind][name] = float(roc_auc_score(y, scores))
                        pooled[kind][label_kind][0].append(y)
                        pooled[kind][label_kind][1].append(scores)
            print(f"  {name}: " + ", ".join(f"{auc[i][labels_kinds[0]].get(name, float('nan')):.3f}" for i in inputs), flush=True)

    result = {"inputs": inputs, "labels": list(labels_kinds), "site_roc_auc": {}, "surface": {}}
    print(f"\n{'input':<26} {'labels':<24} {'median':>7} {'pooled':>7} {'d median':>9} {'d worst':>8}")
    for kind in inputs:
        result["site_roc_auc"][kind] = {}
        for label_kind in labels_kinds:
            per = auc[kind][label_kind]
            base = auc[inputs[0]][label_kind]
            diff = {n: per[n] - base[n] for n in per if n in base}
            worst = min(diff.values())
            y, s = pooled[kind][label_kind]
            row = {
                "median": statistics.median(per.values()),
                "pooled": float(roc_auc_score(np.concatenate(y), np.concatenate(s))),
                "difference_to_hydrogens_median": statistics.median(diff.values()),
                "difference_to_hydrogens_worst": worst,
                "largest_absolute_difference": max(map(abs, diff.values())),
                "per_protein": per,
            }
            result["site_roc_auc"][kind][label_kind] = row
            print(f"{kind:<26} {label_kind:<24} {row['median']:>7.3f} {row['pooled']:>7.3f} {row['difference_to_hydrogens_median']:>+9.3f} {worst:>+8.3f}")
        shift = np.median([(feature_means[kind][n] - feature_means[inputs[0]][n]) / std for n in feature_means[kind]], axis=0)
        result["surface"][kind] = {
            "points_median": statistics.median(points[kind].values()),
            "heavy_atom_gap_median_A": statistics.median(gaps[kind].values()),
            "feature_mean_shift_in_input_std": dict(zip(FEATURES, map(float, shift))),
        }
    print(f"\n{'input':<26} {'points':>7} {'gap to heavy vdW (A)':>21}  largest feature shifts (input std)")
    for kind, s in result["surface"].items():
        top = sorted(s["feature_mean_shift_in_input_std"].items(), key=lambda kv: -abs(kv[1]))[:4]
        print(f"{kind:<26} {s['points_median']:>7.0f} {s['heavy_atom_gap_median_A']:>21.2f}  " + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    result.update(
        settings={k: str(v) for k, v in vars(args).items()},
        model=model.config,
        complexes=[c.name for c in complexes],
        machine=machine(torch.device("cpu")),
    )
    write_json(result, args.out / f"protein_hydrogens_{Path(args.ckpt).stem}_test_cpu.json")


if __name__ == "__main__":
    main()
