"""dMaSIF on the shared MaSIF-search complexes: costs per protein, site and search metrics.

    python benchmarks/protein.py [--data ../shared/data/masif_search_pairs] [--train-complexes 8]
        [--test-complexes 8] [--max-atoms 0] [--epochs 1] [--resolution 1.0] [--points-per-atom 20]
        [--device cpu] [--out benchmarks/results]

    # the committed protein_cpu.json, 12 to 25 minutes on a shared 2-core CPU (training is tiny:
    # 8 complexes x 3 epochs, so the ROC-AUCs are near chance; the costs are the point):
    python benchmarks/protein.py --device cpu --max-atoms 2000 --train-complexes 8 --test-complexes 6 \
        --epochs 3 --resolution 1.5 --points-per-atom 10

Complexes are split by PDB ID (test = 20% of IDs, stable hash); ``--max-atoms`` keeps the complexes
whose two sides have at most that many atoms (hydrogens included), then the first
``--train-complexes`` / ``--test-complexes`` of each split are used. The settings, the PDB IDs and
the atom counts are written to the JSON. Timed per protein (median over the test proteins, after one
warm-up): surface generation, features, forward pass at batch 1, and the forward pass of all test
proteins as one ragged batch (per protein). Peak memory: CUDA
max_memory_allocated, or on CPU the peak resident-set increase sampled every millisecond. Then a
site model and a search model are trained on the training complexes and tested on the test ones.
Prints a table and writes benchmarks/results/protein_<device>.json.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import platform
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import psutil
import torch

from gdl.data.proteins import ProteinComplexDataModule, ProteinComplexes, find_complexes, split_by_pdb_id
from gdl.data.pdb import read_pdb
from gdl.models.dmasif import DMaSIF, Surface, atom_radii, van_der_waals_gap
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
        for index, (atoms, types) in enumerate([proteins[0]] + proteins):  # first one warms up
            atoms, types = atoms.to(device), types.to(device)
            with PeakMemory(device) as memory:
                surface, seconds = timed(lambda: model.surface(atoms, types), device)
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
        atom_batch = torch.cat([torch.full((len(a),), i) for i, (a, _) in enumerate(proteins)]).to(device)
        batched = Surface(
            torch.cat([s.points for s in surfaces]),
            torch.cat([s.normals for s in surfaces]),
            torch.cat([torch.full((len(s.points),), i, device=device) for i, s in enumerate(surfaces)]),
        )
        atoms = torch.cat([a for a, _ in proteins]).to(device)
        types = torch.cat([t for _, t in proteins]).to(device)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("GDL_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=shared / "masif_search_pairs")
    parser.add_argument("--train-complexes", type=int, default=8, help="0: all training complexes")
    parser.add_argument("--test-complexes", type=int, default=8, help="0: all test complexes")
    parser.add_argument("--max-atoms", type=int, default=0, help="keep complexes with at most this many atoms a side (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.0, help="surface point spacing, angstroms")
    parser.add_argument("--points-per-atom", type=int, default=20, help="points drawn per atom before thinning")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    L.seed_everything(args.seed, verbose=False)

    train, _, test = split_by_pdb_id(find_complexes(args.data), val_fraction=0.0, test_fraction=0.2)
    if args.max_atoms:
        train = [c for c in train if max(atoms_per_side(c)) <= args.max_atoms]
        test = [c for c in test if max(atoms_per_side(c)) <= args.max_atoms]
    train = train[: args.train_complexes or None]
    test = test[: args.test_complexes or None]
    model_args = dict(resolution=args.resolution, points_per_atom=args.points_per_atom)
    proteins = []
    for item in ProteinComplexes(test):
        proteins += [(item.atoms_1, item.types_1), (item.atoms_2, item.types_2)]
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
        machine={
            "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"protein_{device.type}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
