"""dMaSIF on protein complexes: evaluation of any checkpoint, or costs and a small training run.

    # evaluate the shipped site / search model, or a checkpoint, on every complex of a folder:
    python benchmarks/protein.py --ckpt site|search|PATH --data DIR --eval-only [--split all|test]
        [--cache-dir DIR] [--threshold 3.0] [--strip-hydrogens] [--device cpu]

    # costs per protein and a small training run (8 complexes x 1 epoch by default):
    python benchmarks/protein.py [--data ../shared/data/masif_search_pairs] [--train-complexes 8]
        [--test-complexes 8] [--max-atoms 0] [--epochs 1] [--resolution 1.5] [--points-per-atom 10]

``--eval-only`` reads both sides of every complex (``--split test``: only the test split, 20% of the
PDB IDs by a stable hash, the split of the shipped models), labels as interface the surface points
within ``--threshold`` angstroms of a partner atom, and reports the per-protein median and pooled
site ROC-AUC (site model) or the ROC-AUC of true versus random point pairs, the mean partner rank
and the top-1 rate (search model), with seconds and peak memory per protein (surface sampling when
not cached, forward pass), beside the published anchors; JSON in
benchmarks/results/protein_eval_<ckpt>_<split>_<device>.json. ``--strip-hydrogens`` reads every
file, both sides, without its H and D atoms (surfaces and labels alike: a protonated set evaluated
as an X-ray set would be), and adds ``_noH`` to the JSON name; otherwise files are read as the model
says (``DMaSIF.hydrogens``). Peak memory: CUDA
max_memory_allocated, or on CPU the peak resident-set increase sampled every millisecond.

Docking Benchmark 5.5 folders (``bound/`` and ``unbound/``) are evaluated by
``benchmarks/protein_report.py``, per set and kind of structure.

Without ``--eval-only``: complexes are split by PDB ID (test = 20% of IDs); ``--max-atoms`` keeps
the complexes whose two sides have at most that many atoms, then the first ``--train-complexes`` /
``--test-complexes`` of each split are used; surface, features and forward costs are timed per
protein, and a site and a search model are trained and tested (protein_<device>.json).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import platform
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import psutil
import torch

from sklearn.metrics import roc_auc_score
from torch_geometric.loader import DataLoader

from gdl.cli.predict_sites import load_model
from gdl.data.pdb import read_pdb
from gdl.data.protein_cache import ProteinCache
from gdl.data.proteins import (
    SAMPLE_DIR,
    ProteinComplexDataModule,
    ProteinComplexes,
    find_complexes,
    split_by_pdb_id,
)
from gdl.models.dmasif import DMaSIF, Surface, atom_radii, van_der_waals_gap
from gdl.tasks.protein import complex_surfaces
from gdl.tasks.protein_search import ProteinSearchTask
from gdl.tasks.protein_site import ProteinSiteTask

REPO = Path(__file__).resolve().parents[1]
ANCHORS = {  # published, full MaSIF data, one V100 (Sverrisson et al., CVPR 2021)
    "dMaSIF site ROC-AUC (3 layers, 9 A)": 0.865,
    "dMaSIF forward ms per protein": 36.5,
    "dMaSIF forward MB per protein": 132,
    "dMaSIF surface generation s per protein (batch 1)": 0.121,
    "MaSIF site ROC-AUC": 0.849,
    "MaSIF forward ms per protein": 164,
    "MaSIF forward MB per protein": 1500,
}


def _release_freed_memory():
    """Return the C heap's free pages to the system (glibc), so that RSS measures live memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory (MB) of a block: CUDA allocator peak, or on CPU the increase of the sampled
    resident-set size over its value at the start (after freed heap pages are returned)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        _release_freed_memory()  # else freed heap pages stay resident and later peaks are not seen
        self._process, self._stop = psutil.Process(), threading.Event()
        self._base = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._process.memory_info().rss)
            self.peak_mb = (self._peak - self._base) / 2**20


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


@functools.cache
def atoms_per_side(complex_) -> tuple[int, int]:
    """Atom counts (hydrogens included) of the two sides of a complex."""
    return len(read_pdb(complex_.file_1).coords), len(read_pdb(complex_.file_2).coords)


def protein_costs(model: DMaSIF, proteins, device) -> dict:
    """Median seconds and peak MB per protein of surface, features, forward (batch 1 and batched)."""
    rows = {k: [] for k in ("surface_s", "surface_mb", "features_s", "forward_s", "forward_mb", "points", "atoms", "vdw_gap")}
    surfaces = []
    model.eval()
    with torch.no_grad():
        for index, (atoms, types, residues) in enumerate([proteins[0]] + proteins):  # first one warms up
            atoms, types, residues = atoms.to(device), types.to(device), residues.to(device)
            with PeakMemory(device) as memory:
                surface, seconds = timed(lambda: model.surface(atoms, types, None, residues), device)
            if index == 0:
                timed(lambda: model(surface, atoms, types), device)
                continue
            surfaces.append(surface)
            rows["surface_s"].append(seconds)
            rows["surface_mb"].append(memory.peak_mb)
            rows["points"].append(len(surface.points))
            rows["atoms"].append(len(atoms))
            # Distance of the surface outside the van der Waals spheres (median over the points).
            gap = van_der_waals_gap(surface.points, atoms, atom_radii(types.to(atoms.dtype)))
            rows["vdw_gap"].append(float(gap.median()))
            rows["features_s"].append(timed(lambda: model.features(surface, atoms, types, None), device)[1])
            with PeakMemory(device) as memory:
                rows["forward_s"].append(timed(lambda: model(surface, atoms, types), device)[1])
            rows["forward_mb"].append(memory.peak_mb)
        atom_batch = torch.cat([torch.full((len(a),), i) for i, (a, _, _) in enumerate(proteins)]).to(device)
        batched = Surface(
            torch.cat([s.points for s in surfaces]),
            torch.cat([s.normals for s in surfaces]),
            torch.cat([torch.full((len(s.points),), i, device=device) for i, s in enumerate(surfaces)]),
            torch.cat([s.features for s in surfaces]),
        )
        atoms = torch.cat([a for a, _, _ in proteins]).to(device)
        types = torch.cat([t for _, t, _ in proteins]).to(device)
        with PeakMemory(device) as memory:
            _, batched_s = timed(lambda: model(batched, atoms, types, atom_batch), device)
    summary = {k: statistics.median(v) for k, v in rows.items()}
    summary["per_protein"] = rows
    summary["forward_batched_s_per_protein"] = batched_s / len(proteins)
    summary["forward_batched_mb_per_protein"] = memory.peak_mb / len(proteins)
    summary["proteins"] = len(proteins)
    return summary


def train_and_test(task, data_dir, train, test, epochs, device) -> tuple[dict, float]:
    module = ProteinComplexDataModule(data_dir=str(data_dir), batch_size=1)
    module.splits = {"train": train, "val": [], "test": test}
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=device.type,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(task, module)
    train_seconds = time.perf_counter() - start
    metrics = trainer.test(task, module, verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}, train_seconds


def machine(device) -> dict:
    """Where the numbers come from: device name, threads, torch version, date (UTC)."""
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {path}")


def checkpoint_model(name: str) -> DMaSIF:
    """``site`` / ``search`` (the shipped models), a DMaSIF.save_pretrained file or a Lightning
    checkpoint of experiment=protein_site / protein_search (its head read from its weights)."""
    if name in ("site", "search"):
        return DMaSIF.from_pretrained(name)
    weights = torch.load(name, map_location="cpu", weights_only=False)["state_dict"]
    return load_model(name, "search" if any("head.binder" in k for k in weights) else "site")


def evaluate(model: DMaSIF, complexes, device, threshold: float, cache_dir=None, hydrogens: bool | None = None) -> dict:
    """Metrics of ``model`` on every complex (both sides), with seconds and peak MB per protein;
    the files are read with or without their H and D atoms as ``hydrogens`` says (default: the model's setting)."""
    hydrogens = model.hydrogens if hydrogens is None else hydrogens
    cache = ProteinCache(cache_dir, model, hydrogens=hydrogens) if cache_dir else None
    dataset = ProteinComplexes(complexes, cache=cache, hydrogens=hydrogens)
    task = (ProteinSiteTask if model.head_kind == "site" else ProteinSearchTask)(model.to(device), threshold=threshold)
    task.reset()
    rows = {k: [] for k in ("surface_s", "surface_mb", "forward_s", "forward_mb", "points", "atoms")}
    per_protein = []
    follow = ["atoms_1", "atoms_2"] + (["points_1", "points_2"] if cache else [])
    loader = DataLoader(dataset, batch_size=1, follow_batch=follow)
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            with PeakMemory(device) as memory:
                (sides, seconds) = timed(lambda: complex_surfaces(model, batch, threshold, rotate=False), device)
            outputs = []
            for surface, atoms, types, atom_batch in zip(sides.surfaces, sides.atoms, sides.types, sides.atom_batch):
                with PeakMemory(device) as forward_memory:
                    out, forward_s = timed(lambda: model(surface, atoms, types, atom_batch), device)
                outputs.append(out)
                rows["forward_s"].append(forward_s)
                rows["forward_mb"].append(forward_memory.peak_mb)
                rows["points"].append(len(surface.points))
                rows["atoms"].append(len(atoms))
                if cache is None:
                    rows["surface_s"].append(seconds / 2)
                    rows["surface_mb"].append(memory.peak_mb)
            task.collect(sides, outputs, batch)
            if model.head_kind == "site":
                for out, labels in zip(outputs, sides.labels):
                    y, s = labels.cpu().numpy(), out.cpu().numpy()
                    per_protein.append(float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None)
            print(f"  {batch.name[0]}: {len(sides.surfaces[0].points)} + {len(sides.surfaces[1].points)} points", flush=True)
    metrics = {k: float(v) for k, v in task.metrics().items()}
    costs = {k: statistics.median(v) for k, v in rows.items() if v}
    return {"metrics": metrics, "costs": costs, "per_protein_roc_auc": per_protein, "per_protein_costs": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=SAMPLE_DIR, help="folder of complexes (default: the shipped sample; e.g. the MaSIF-search pairs)"
    )
    parser.add_argument("--ckpt", default=None, help="site | search | a checkpoint file: evaluate it (with --eval-only)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --ckpt on the complexes, no training")
    parser.add_argument("--split", default="all", choices=("all", "test"), help="every complex of --data, or the test split (PDB-ID hash, 20%%)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="preprocessing cache (surfaces computed once)")
    parser.add_argument("--threshold", type=float, default=3.0, help="interface: partner atom within this many angstroms")
    parser.add_argument("--strip-hydrogens", action="store_true", help="with --eval-only: read every file without its H and D atoms")
    parser.add_argument("--train-complexes", type=int, default=8, help="0: all training complexes")
    parser.add_argument("--test-complexes", type=int, default=8, help="0: all test complexes")
    parser.add_argument("--max-atoms", type=int, default=0, help="keep complexes with at most this many atoms a side (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.5, help="surface point spacing, angstroms")
    parser.add_argument("--points-per-atom", type=int, default=10, help="points drawn per atom before thinning")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    L.seed_everything(args.seed, verbose=False)
    if args.eval_only:
        return eval_only(args, device)
    if args.ckpt:
        parser.error("--ckpt needs --eval-only")
    if args.strip_hydrogens:
        parser.error("--strip-hydrogens needs --eval-only")
    train, _, test = split_by_pdb_id(find_complexes(args.data), val_fraction=0.0, test_fraction=0.2)
    model_args = dict(resolution=args.resolution, points_per_atom=args.points_per_atom, curvature_scales=[], chemical_channels=0)
    if args.max_atoms:
        train = [c for c in train if max(atoms_per_side(c)) <= args.max_atoms]
        test = [c for c in test if max(atoms_per_side(c)) <= args.max_atoms]
    train = train[: args.train_complexes or None]
    test = test[: args.test_complexes or None]
    proteins = []
    for item in ProteinComplexes(test):
        proteins += [(item.atoms_1, item.types_1, item.residues_1), (item.atoms_2, item.types_2, item.residues_2)]
    print(f"{len(train)} training complexes, {len(test)} test complexes ({len(proteins)} proteins), device {device}")

    results = {"costs": protein_costs(DMaSIF(head="site", **model_args).to(device), proteins, device)}
    site_metrics, site_train_s = train_and_test(
        ProteinSiteTask(DMaSIF(head="site", **model_args)), args.data, train, test, args.epochs, device
    )
    search_metrics, search_train_s = train_and_test(
        ProteinSearchTask(DMaSIF(head="search", **model_args)), args.data, train, test, args.epochs, device
    )
    results.update(site=site_metrics, search=search_metrics, site_train_s=site_train_s, search_train_s=search_train_s)

    c = results["costs"]
    table = [
        ("surface generation, batch 1 (s/protein)", f"{c['surface_s']:.3f}", ANCHORS["dMaSIF surface generation s per protein (batch 1)"]),
        ("surface generation peak (MB/protein)", f"{c['surface_mb']:.0f}", "-"),
        ("atoms per test protein (median, with H)", f"{c['atoms']:.0f}", "-"),
        (f"surface points (median, resolution {args.resolution:g} A)", f"{c['points']:.0f}", "-"),
        ("surface outside van der Waals spheres (median A)", f"{c['vdw_gap']:.2f}", "-"),
        ("features (s/protein)", f"{c['features_s']:.3f}", "-"),
        ("forward, batch 1 (ms/protein)", f"{1e3 * c['forward_s']:.1f}", ANCHORS["dMaSIF forward ms per protein"]),
        ("forward, batch 1 peak (MB/protein)", f"{c['forward_mb']:.0f}", ANCHORS["dMaSIF forward MB per protein"]),
        (f"forward, batch {c['proteins']} (ms/protein)", f"{1e3 * c['forward_batched_s_per_protein']:.1f}", "-"),
        (f"forward, batch {c['proteins']} peak (MB/protein)", f"{c['forward_batched_mb_per_protein']:.0f}", "-"),
        ("site ROC-AUC, per-protein median", f"{site_metrics.get('test/roc_auc', float('nan')):.3f}", ANCHORS["dMaSIF site ROC-AUC (3 layers, 9 A)"]),
        ("site ROC-AUC, pooled", f"{site_metrics.get('test/roc_auc_pooled', float('nan')):.3f}", "-"),
        ("search ROC-AUC, true vs random pairs", f"{search_metrics.get('test/roc_auc', float('nan')):.3f}", "-"),
        (f"search partner rank (mean, of {len(test)})", f"{search_metrics.get('test/partner_rank', float('nan')):.2f}", "-"),
        ("search top-1 partner", f"{search_metrics.get('test/top1', float('nan')):.3f}", "-"),
        (f"site training: {len(train)} complexes x {args.epochs} epochs (s)", f"{site_train_s:.0f}", "-"),
        (f"search training: {len(train)} complexes x {args.epochs} epochs (s)", f"{search_train_s:.0f}", "-"),
    ]
    width = max(len(r[0]) for r in table)
    print(f"\n{'quantity':<{width}}  {'gdl':>10}  {'published (V100, full data)':>28}")
    for name, value, anchor in table:
        print(f"{name:<{width}}  {value:>10}  {str(anchor):>28}")
    results.update(
        anchors=ANCHORS,
        settings={**vars(args), "data": str(args.data), "out": str(args.out)},
        train_ids=sorted({c.pdb_id for c in train}),
        test_ids=sorted({c.pdb_id for c in test}),
        training_size={
            "train_complexes": len(train),
            "test_complexes": len(test),
            "test_proteins": len(proteins),
            "epochs": args.epochs,
            "note": "tiny training on a CPU: metrics are far from converged and not comparable to the "
            "published anchors (full MaSIF training set, GPU)",
        },
        atoms_per_side={c.pdb_id: atoms_per_side(c) for c in train + test},
        machine=machine(device),
    )
    write_json(results, args.out / f"protein_{device.type}.json")


def eval_only(args, device) -> None:
    """``--eval-only``: metrics of ``--ckpt`` on the complexes of ``--data``, table + JSON."""
    model = checkpoint_model(args.ckpt or "site").eval()
    if (args.data / "bound").is_dir() and (args.data / "unbound").is_dir():
        raise SystemExit(f"error: {args.data} holds bound/ and unbound/ structures: benchmarks/protein_report.py --db5 {args.data}")
    complexes = find_complexes(args.data)
    if args.split == "test":
        complexes = split_by_pdb_id(complexes, 0.15, 0.2)[2]
    print(f"{model.head_kind} model {args.ckpt or 'site'}: {len(complexes)} complexes of {args.data}, device {device}")
    result = evaluate(model, complexes, device, args.threshold, args.cache_dir, model.hydrogens and not args.strip_hydrogens)
    m, c = result["metrics"], result["costs"]
    if model.head_kind == "site":
        table = [
            ("site ROC-AUC, per-protein median", m.get("roc_auc"), ANCHORS["dMaSIF site ROC-AUC (3 layers, 9 A)"]),
            ("site ROC-AUC, pooled", m.get("roc_auc_pooled"), "-"),
        ]
    else:
        table = [
            ("search ROC-AUC, true vs random pairs", m.get("roc_auc"), "0.81-0.86"),
            (f"search partner rank (mean, of {len(complexes)})", m.get("partner_rank"), "-"),
            ("search top-1 partner", m.get("top1"), "-"),
        ]
    table += [
        ("surface points per protein (median)", c.get("points"), "-"),
        ("surface generation (s/protein)", c.get("surface_s"), ANCHORS["dMaSIF surface generation s per protein (batch 1)"]),
        ("forward (ms/protein)", 1e3 * c["forward_s"], ANCHORS["dMaSIF forward ms per protein"]),
        ("forward peak (MB/protein)", c["forward_mb"], ANCHORS["dMaSIF forward MB per protein"]),
    ]
    width = max(len(r[0]) for r in table)
    print(f"\n{'quantity':<{width}}  {'gdl':>10}  {'published (V100, full data)':>28}")
    for name, value, anchor in table:
        shown = "-" if value is None else f"{value:.3f}"
        print(f"{name:<{width}}  {shown:>10}  {str(anchor):>28}")
    save_evaluation(result, args, model, [c.name for c in complexes], device, args.split)


def save_evaluation(result: dict, args, model: DMaSIF, names: list[str], device, label: str) -> None:
    """Write ``result`` with the anchors, settings, model, complexes and machine to
    ``protein_eval_<ckpt>_<label>[_noH]_<device>.json``."""
    result.update(
        anchors=ANCHORS,
        settings={k: str(v) for k, v in vars(args).items()},
        model=model.config,
        complexes=names,
        machine=machine(device),
    )
    suffix = "_noH" if args.strip_hydrogens else ""
    write_json(result, args.out / f"protein_eval_{Path(str(args.ckpt or 'site')).stem}_{label}{suffix}_{device.type}.json")


if __name__ == "__main__":
    main()
