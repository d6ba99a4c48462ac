"""Rank candidate partners of a protein: how likely each candidate binds it (dMaSIF search).

    python -m gdl.cli.predict_search protein.pdb[.gz] candidate1.pdb[.gz] candidate2.pdb ... [--ckpt search.ckpt]

The shipped site model picks the protein's likely interface (the ``--fraction`` of its surface
points with the highest site scores); the search model (shipped, or ``--ckpt``) embeds both
surfaces, and a candidate scores the mean over those interface points i of max_j <binder_i, target_j>
over the candidate's surface points j: high when some patch of the candidate complements the
protein's interface. Prints the candidates from most to least likely, with their scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gdl.cli.predict_sites import load_model
from gdl.data.pdb import read_pdb
from gdl.models.dmasif import DMaSIF


def _surface_and_outputs(model: DMaSIF, pdb):
    atoms = read_pdb(pdb)
    coords = atoms.coords - atoms.coords.mean(0)
    surface = model.surface(coords, atoms.types, None, atoms.residue_properties())
    return surface, coords, atoms.types, model(surface, coords, atoms.types)


@torch.no_grad()
def search_scores(pdb, candidates, ckpt=None, fraction: float = 0.2) -> list[tuple[str, float]]:
    """``[(candidate file name, score)]`` sorted from the most to the least likely partner of ``pdb``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if not candidates:
        raise ValueError("candidates must list at least one PDB file, got none")
    site, search = DMaSIF.from_pretrained("site"), load_model(ckpt, "search")
    surface, coords, types, _ = _surface_and_outputs(search, pdb)
    site_scores = site(surface, coords, types)
    interface = site_scores.topk(max(1, int(fraction * len(site_scores)))).indices
    binder = search(surface, coords, types)[0][interface]
    scores = []
    for candidate in candidates:
        _, _, _, (_, target) = _surface_and_outputs(search, candidate)
        scores.append((Path(candidate).name, float((binder @ target.T).max(1).values.mean())))
    return sorted(scores, key=lambda item: -item[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdl.cli.predict_search", description=__doc__.splitlines()[0])
    parser.add_argument("pdb", help="the protein: a .pdb or .pdb.gz file")
    parser.add_argument("candidates", nargs="+", help="candidate partners: .pdb or .pdb.gz files")
    parser.add_argument("--ckpt", default=None, help="checkpoint of experiment=protein_search (default: the shipped model)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of the surface taken as the interface")
    args = parser.parse_args(argv)
    ranked = search_scores(args.pdb, args.candidates, args.ckpt, args.fraction)
    print(f"{'rank':>4}  {'score':>8}  candidate")
    for rank, (name, score) in enumerate(ranked, start=1):
        print(f"{rank:>4}  {score:>8.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
