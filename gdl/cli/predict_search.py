"""Rank candidate partners of a protein: how likely each candidate binds it (dMaSIF search).

    python -m gdl.cli.predict_search protein.pdb[.gz] candidate1.cif[.gz] candidates/ ... [--ckpt search.ckpt]

The shipped site model picks the protein's likely interface (the ``--fraction`` of its surface
points with the highest site scores); the search model (shipped, or ``--ckpt``) embeds both
surfaces, and a candidate scores the mean over those interface points i of max_j <binder_i, target_j>
over the candidate's surface points j: high when some patch of the candidate complements the
protein's interface. Prints the candidates from most to least likely, with their scores.

Structures are PDB or mmCIF files, gzipped or not, read as :func:`gdl.data.pdb.read_pdb` reads
them; a folder of candidates stands for the structure files under it. Both models are loaded once.
A candidate that cannot be read gets one ``error: <file>: <reason>`` line and the others are still
ranked; exit code 1 when the protein or any candidate failed, else 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from gdl.cli.predict_sites import error_line, load_model
from gdl.command_line import ArgumentParser
from gdl.data.pdb import PDBError, read_pdb, structure_files
from gdl.models.dmasif import DMaSIF
from gdl.tasks.checkpoint_task import WrongTaskError


def _surface_and_outputs(model: DMaSIF, pdb):
    atoms = read_pdb(pdb, hydrogens=model.hydrogens)
    coords = atoms.coords - atoms.coords.mean(0)
    surface = model.surface(coords, atoms.types, None, atoms.residue_properties())
    return surface, coords, atoms.types, model(surface, coords, atoms.types)


@torch.no_grad()
def interface_embedding(site: DMaSIF, search: DMaSIF, pdb, fraction: float) -> torch.Tensor:
    """(K, C) binder embeddings of the ``fraction`` of ``pdb``'s surface points that ``site`` scores highest."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    surface, coords, types, (binder, _) = _surface_and_outputs(search, pdb)
    site_scores = site(surface, coords, types)
    return binder[site_scores.topk(max(1, int(fraction * len(site_scores)))).indices]


@torch.no_grad()
def candidate_score(search: DMaSIF, interface: torch.Tensor, candidate) -> float:
    """Mean over the interface points i of max_j <binder_i, target_j> over ``candidate``'s surface."""
    _, _, _, (_, target) = _surface_and_outputs(search, candidate)
    return float((interface @ target.T).max(1).values.mean())


def search_scores(pdb, candidates, ckpt=None, fraction: float = 0.2) -> list[tuple[str, float]]:
    """``[(candidate file name, score)]`` sorted from the most to the least likely partner of ``pdb``."""
    if not candidates:
        raise ValueError("candidates must list at least one structure file, got none")
    search = load_model(ckpt, "search")
    interface = interface_embedding(DMaSIF.from_pretrained("site"), search, pdb, fraction)
    scores = [(Path(c).name, candidate_score(search, interface, c)) for c in candidates]
    return sorted(scores, key=lambda item: -item[1])


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m gdl.cli.predict_search", description=__doc__)
    parser.add_argument("pdb", help="the protein: a PDB or mmCIF file (.pdb, .cif, optionally .gz)")
    parser.add_argument("candidates", nargs="+", help="candidate partners: structure files or folders of them")
    parser.add_argument("--ckpt", default=None, help="checkpoint of experiment=protein_search (default: the shipped model)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of the surface taken as the interface")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    try:
        search = load_model(args.ckpt, "search")
    except (FileNotFoundError, WrongTaskError) as error:
        sys.exit(f"error: {error}")
    try:
        interface = interface_embedding(DMaSIF.from_pretrained("site"), search, args.pdb, args.fraction)
    except (PDBError, OSError, ValueError) as error:
        print(error_line(args.pdb, error))
        return 1
    ranked, failed = [], 0
    for candidate in structure_files(args.candidates):
        try:
            ranked.append((str(candidate), candidate_score(search, interface, candidate)))
        except (PDBError, OSError, ValueError) as error:
            failed += 1
            print(error_line(candidate, error), flush=True)
    print(f"{'rank':>4}  {'score':>8}  candidate")
    for rank, (name, score) in enumerate(sorted(ranked, key=lambda item: -item[1]), start=1):
        print(f"{rank:>4}  {score:>8.3f}  {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
