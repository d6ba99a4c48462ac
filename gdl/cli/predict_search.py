"""Rank candidate partners of a protein (dMaSIF search), and show where on each one it would bind.

    python -m gdl.cli.predict_search protein.pdb[.gz] candidate1.cif[.gz] candidates/ ... [--ckpt search.ckpt] [--out results/]

The shipped site model picks the protein's likely interface: the ``--fraction`` (0.2) of its
surface points with the highest site scores. The search model (shipped, or ``--ckpt``) embeds both
surfaces, each point with a binder and a target embedding, trained (binary cross-entropy) so that
``sigmoid(<binder_i, target_j>)`` is the probability that point i of one protein faces point j of
its partner. A candidate scores the mean over the interface points i of ``max_j <binder_i,
target_j>`` over its surface points j: high when some patch of the candidate complements the
protein's interface. Each surface point j of a candidate gets the binding score

    s_j = sigmoid(max_i <binder_i, target_j>)    (i over the protein's interface points),

the probability, as the model was trained, that j faces the interface point it matches best; a
residue scores the mean of its points' s_j (:mod:`gdl.data.residue_scores`).

Printed: one summary line for the protein (its interface residues by site score), one per candidate
(its score, residues, surface points and the five residues with the highest binding scores), then
the candidates from most to least likely with their scores. With ``--out DIR`` (created if
missing), written there:

- ``<protein>_interface.csv`` and ``<protein>_interface.pdb`` or ``.cif`` (the protein's format):
  per residue the site probability that chose the interface points (one row per residue: chain,
  residue number, insertion code, name, score, surface points), and the structure read with each
  residue's score in the B-factor column (``spectrum b`` in PyMOL, ``color bfactor`` in ChimeraX);
- ``<candidate>_search.csv`` and ``<candidate>_search.pdb`` or ``.cif``: the same for each
  candidate, scored with s_j: where on the candidate the protein's interface would bind.

Structures are PDB or mmCIF files, gzipped or not, read as :func:`gdl.data.pdb.read_pdb` reads them
for the search model (without hydrogens unless it keeps them; the B-factor copies keep every atom);
a folder of candidates stands for the structure files under it. Both models are loaded once. A
candidate that cannot be read gets one ``error: <file>: <reason>`` line and the others are still
ranked and written; exit code 1 when the protein or any candidate failed, else 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np
import torch

from gdl.cli.predict_sites import error_line, load_model, model_surface
from gdl.command_line import ArgumentParser
from gdl.data.pdb import PDBError, read_for_model, structure_files
from gdl.data.residue_scores import ResidueScore, residue_scores, summary, write_residue_files
from gdl.models.dmasif import DMaSIF
from gdl.tasks.checkpoint_task import WrongTaskError


@dataclass
class Scored:
    """One structure read and scored: ``path``, ``structure`` (every atom read, for the scored copy),
    surface ``points`` (N, 3) in the file's frame, their ``scores`` (N,) and the ``residues``."""

    path: Path
    structure: gemmi.Structure
    points: np.ndarray
    scores: np.ndarray
    residues: list[ResidueScore]


@dataclass
class Protein(Scored):
    """The protein: ``scores`` are its site probabilities, ``binder`` (K, C) the binder embeddings of
    its K interface points (the highest site scores)."""

    binder: torch.Tensor = None


@dataclass
class Candidate(Scored):
    """A candidate: ``scores`` are its binding scores s_j (module docstring), ``score`` its rank score."""

    score: float = float("nan")


def binding_scores(binder: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(M,) s_j = sigmoid(max_i <binder_i, target_j>) for the (K, C) ``binder`` embeddings of the
    protein's interface points and the (M, C) ``target`` embeddings of a candidate's surface points."""
    if binder.ndim != 2 or target.ndim != 2 or binder.shape[1] != target.shape[1] or not len(binder):
        raise ValueError(
            f"binder must be (K, C) with K > 0 and target (M, C), got {tuple(binder.shape)} and {tuple(target.shape)}"
        )
    return torch.sigmoid((binder @ target.T).max(0).values)


def partner_score(binder: torch.Tensor, target: torch.Tensor) -> float:
    """The mean over the interface points i of max_j <binder_i, target_j> (the ranking score)."""
    return float((binder @ target.T).max(1).values.mean())


@torch.no_grad()
def read_protein(site: DMaSIF, search: DMaSIF, path, fraction: float) -> Protein:
    """The protein ``path`` on the ``search`` model's surface, its points scored by ``site``, and the
    binder embeddings of the ``fraction`` of its points with the highest site scores."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    path = Path(path)
    structure, atoms = read_for_model(path, hydrogens=search.hydrogens)
    surface, coords, centre = model_surface(search, atoms)
    binder, _ = search(surface, coords, atoms.types)
    site_scores = torch.sigmoid(site(surface, coords, atoms.types))
    interface = site_scores.topk(max(1, int(fraction * len(site_scores)))).indices
    points, scores = (surface.points + centre).numpy(), site_scores.numpy()
    return Protein(path, structure, points, scores, residue_scores(points, scores, atoms), binder[interface])


@torch.no_grad()
def score_candidate(search: DMaSIF, binder: torch.Tensor, path) -> Candidate:
    """The candidate ``path`` scored against the protein's interface ``binder`` embeddings."""
    path = Path(path)
    structure, atoms = read_for_model(path, hydrogens=search.hydrogens)
    surface, coords, centre = model_surface(search, atoms)
    _, target = search(surface, coords, atoms.types)
    points, scores = (surface.points + centre).numpy(), binding_scores(binder, target).numpy()
    residues = residue_scores(points, scores, atoms)
    return Candidate(path, structure, points, scores, residues, partner_score(binder, target))


def search_scores(pdb, candidates, ckpt=None, fraction: float = 0.2) -> list[tuple[str, float]]:
    """``[(candidate file name, score)]`` sorted from the most to the least likely partner of ``pdb``."""
    if not candidates:
        raise ValueError("candidates must list at least one structure file, got none")
    search = load_model(ckpt, "search")
    protein = read_protein(DMaSIF.from_pretrained("site"), search, pdb, fraction)
    scores = [(Path(c).name, score_candidate(search, protein.binder, c).score) for c in candidates]
    return sorted(scores, key=lambda item: -item[1])


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m gdl.cli.predict_search", description=__doc__)
    parser.add_argument("pdb", help="the protein: a PDB or mmCIF file (.pdb, .cif, optionally .gz)")
    parser.add_argument("candidates", nargs="+", help="candidate partners: structure files or folders of them")
    parser.add_argument("--ckpt", default=None, help="checkpoint of experiment=protein_search (default: the shipped model)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of the surface taken as the interface")
    parser.add_argument("--out", default=None, help="folder for the per-residue files (default: none written)")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    try:
        search = load_model(args.ckpt, "search")
    except (FileNotFoundError, WrongTaskError) as error:
        sys.exit(f"error: {error}")
    try:
        protein = read_protein(DMaSIF.from_pretrained("site"), search, args.pdb, args.fraction)
        if args.out is not None:
            write_residue_files(args.out, protein.path, "interface", protein.structure, protein.residues)
    except (PDBError, OSError, ValueError) as error:
        print(error_line(args.pdb, error))
        return 1
    lead = f"interface of {len(protein.binder)} points (site scores); "
    print(summary(args.pdb, protein.residues, len(protein.points), lead=lead), flush=True)
    ranked, failed = [], 0
    for path in structure_files(args.candidates):
        try:
            candidate = score_candidate(search, protein.binder, path)
            if args.out is not None:
                write_residue_files(args.out, path, "search", candidate.structure, candidate.residues)
        except (PDBError, OSError, ValueError) as error:
            failed += 1
            print(error_line(path, error), flush=True)
            continue
        ranked.append((str(path), candidate.score))
        print(summary(path, candidate.residues, len(candidate.points), lead=f"score {candidate.score:.3f}; "), flush=True)
    print(f"{'rank':>4}  {'score':>8}  candidate")
    for rank, (name, score) in enumerate(sorted(ranked, key=lambda item: -item[1]), start=1):
        print(f"{rank:>4}  {score:>8.3f}  {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
