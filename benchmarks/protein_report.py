"""One table for the protein models: site ROC-AUC per set and kind of structure, search per set.

    python benchmarks/protein_report.py [--masif DIR] [--db5 DIR] [--site site] [--search search]
        [--split test|val] [--cache-dir DIR] [--threshold 3.0] [--name NAME]

The complexes of ``--masif`` (MaSIF-search ``PDBID_CHAINS`` pairs, protonated) and ``--db5``/bound
(Docking Benchmark 5.5, X-ray; ``--db5``/unbound the unbound structures) are pooled and split by PDB ID as the
training data module splits them (``split_by_pdb_id``, validation 0.15, test 0.2), and the models are
evaluated on the ``--split`` complexes of each set:

- **site**: each protein's surface points are labelled interface when an atom of its partner *in
  the complex* lies within ``--threshold`` angstroms; per-protein median ROC-AUC and the ROC-AUC of
  all points pooled. DB5.5 proteins are scored twice: bound (as in the complex) and unbound (the
  protein crystallised alone, superimposed on the complex), both labelled from the bound partner.
- **search**: per set and kind, the ROC-AUC of true against random point pairs across each
  complex's interface, and the rank of each complex's true partner among the partners of the set
  (1 = first; mean and top-1 rate). Unbound pairs are labelled from each other (superimposed).

Structures are read as each model says (``DMaSIF.hydrogens``). Surfaces come from a
:class:`~gdl.data.protein_cache.ProteinCache` in ``--cache-dir`` (computed once, then reused).
Prints the table beside the published anchors and writes
benchmarks/results/protein_report_<name>_<split>_cpu.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from gdl.data.protein_cache import ProteinCache
from gdl.data.proteins import DB5_SAMPLE_DIR, SAMPLE_DIR, Complex, find_complexes, interface_labels, pooled_complexes, split_by_pdb_id
from gdl.models.dmasif import DMaSIF, Surface

sys.path.insert(0, str(Path(__file__).parent))
from protein import checkpoint_model, evaluate, machine, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANCHORS = {  # Sverrisson et al., CVPR 2021 (dMaSIF, full MaSIF data): bound, protonated structures
    "site": "0.87 (dMaSIF, MaSIF bound)",
    "search": "0.81-0.86 (dMaSIF, MaSIF bound)",
}


def split_sets(masif: Path, db5: Path, split: str) -> dict[str, list[Complex]]:
    """The ``split`` complexes of each set, from the pooled split by PDB ID."""
    folders = {"MaSIF-search": masif, "DB5.5": db5 / "bound"}
    train, val, test = split_by_pdb_id(pooled_complexes(folders.values()), 0.15, 0.2)
    chosen = {"train": train, "val": val, "test": test}[split]
    ids = {name: {c.pdb_id for c in find_complexes(folder)} for name, folder in folders.items()}
    return {name: [c for c in chosen if c.pdb_id in ids[name]] for name in folders}


def unbound(complex_: Complex, db5: Path) -> Complex:
    """The same complex with both sides' unbound structures (Docking Benchmark layout)."""
    folder = db5 / "unbound"
    return Complex(complex_.pdb_id, complex_.chains_1, complex_.chains_2, folder / complex_.file_1.name, folder / complex_.file_2.name)


@torch.no_grad()
def site_scores(model: DMaSIF, cache: ProteinCache, path, partner, threshold: float):
    """(scores, labels) of the surface points of ``path``; labels from the atoms of ``partner``."""
    protein, other = cache.get(path), cache.get(partner)
    centre = protein["atoms"].mean(0)
    points = protein["points"] - centre
    batch = torch.zeros(len(points), dtype=torch.long)
    surface = Surface(points, protein["normals"], batch, protein["features"])
    scores = model(surface, protein["atoms"] - centre, protein["types"])
    partner_atoms = other["atoms"] - centre
    labels = interface_labels(points, batch, partner_atoms, torch.zeros(len(partner_atoms), dtype=torch.long), threshold)
    return scores.numpy(), labels.numpy()


def site_roc_auc(model: DMaSIF, cache: ProteinCache, proteins, threshold: float) -> dict:
    """Per-protein ROC-AUC of ``proteins`` ((name, path, partner) triples), its median and the pooled ROC-AUC."""
    per_protein, scores, labels = {}, [], []
    for name, path, partner in proteins:
        s, y = site_scores(model, cache, path, partner, threshold)
        if 0 < y.sum() < len(y):
            per_protein[name] = float(roc_auc_score(y, s))
        scores.append(s)
        labels.append(y)
    return {
        "median": statistics.median(per_protein.values()),
        "pooled": float(roc_auc_score(np.concatenate(labels), np.concatenate(scores))),
        "proteins": len(per_protein),
        "per_protein": per_protein,
    }


def site_proteins(complexes, bound_or_unbound, db5: Path):
    """(name, structure, bound partner) for both sides of each complex."""
    rows = []
    for c in complexes:
        scored = unbound(c, db5) if bound_or_unbound == "unbound" else c
        rows += [(f"{c.pdb_id}_{c.chains_1}", scored.file_1, c.file_2), (f"{c.pdb_id}_{c.chains_2}", scored.file_2, c.file_1)]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masif", type=Path, default=SAMPLE_DIR, help="MaSIF-search pairs (default: the shipped sample)")
    parser.add_argument("--db5", type=Path, default=DB5_SAMPLE_DIR, help="Docking Benchmark 5.5 bound/ and unbound/ (default: the shipped sample)")
    parser.add_argument("--site", default="site", help="site | a DMaSIF file | a protein_site checkpoint")
    parser.add_argument("--search", default="search", help="search | a DMaSIF file | a protein_search checkpoint")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "proteins")
    parser.add_argument("--threshold", type=float, default=3.0, help="interface: partner atom within this many angstroms")
    parser.add_argument("--name", default="shipped", help="name of the models in the JSON file name")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    sets = split_sets(args.masif, args.db5, args.split)
    site, search = checkpoint_model(args.site).eval(), checkpoint_model(args.search).eval()
    site_cache = ProteinCache(args.cache_dir, site)
    rows, result = [], {"site": {}, "search": {}}
    for set_name, complexes in sets.items():
        if not complexes:
            print(f"{set_name}: no complex in the {args.split} split", flush=True)
            continue
        kinds = ("bound", "unbound") if set_name == "DB5.5" else ("bound",)
        for kind in kinds:
            print(f"{set_name} {kind}: {len(complexes)} complexes", flush=True)
            site_result = site_roc_auc(site, site_cache, site_proteins(complexes, kind, args.db5), args.threshold)
            pairs = [unbound(c, args.db5) for c in complexes] if kind == "unbound" else complexes
            search_result = evaluate(search, pairs, torch.device("cpu"), args.threshold, args.cache_dir)["metrics"]
            result["site"][f"{set_name} {kind}"] = site_result
            result["search"][f"{set_name} {kind}"] = search_result
            rows.append((set_name, kind, len(complexes), site_result, search_result))
    header = f"{'set':<13} {'kind':<8} {'complexes':>9} {'site median':>11} {'site pooled':>11} {'search ROC-AUC':>14} {'partner rank':>14} {'top-1':>6}"
    print(f"\n{args.split} split; site anchor {ANCHORS['site']}, search anchor {ANCHORS['search']}\n{header}")
    for set_name, kind, n, s, r in rows:
        rank = f"{r.get('partner_rank', float('nan')):.1f} of {n}"
        print(
            f"{set_name:<13} {kind:<8} {n:>9} {s['median']:>11.3f} {s['pooled']:>11.3f} "
            f"{r.get('roc_auc', float('nan')):>14.3f} {rank:>14} {r.get('top1', float('nan')):>6.2f}"
        )
    result.update(
        split=args.split,
        complexes={name: [c.pdb_id for c in cs] for name, cs in sets.items()},
        anchors=ANCHORS,
        models={"site": args.site, "search": args.search, "site_config": site.config, "search_config": search.config},
        threshold=args.threshold,
        machine=machine(torch.device("cpu")),
    )
    write_json(result, args.out / f"protein_report_{args.name}_{args.split}_cpu.json")


if __name__ == "__main__":
    main()
