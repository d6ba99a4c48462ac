"""Scores of surface points carried to residues, and written into a copy of the structure.

A surface point belongs to the residue of its nearest atom; the score of a residue is the mean of
the scores of the points that belong to it:

    s_r = (1 / |P_r|) sum_{p in P_r} s_p,    P_r = {p : the atom nearest to p is an atom of r}.

Residues that own no surface point (buried ones) get no score (NaN): nothing of them is exposed.
Against residue labels (an atom within 5 A of the partner), on the bound and unbound structures of
20 Docking Benchmark 5.5 complexes scored by the shipped site model, this mean did as well as the
maximum over the same points or the mean of the points within 3 A of the residue (per-protein
median ROC-AUC 0.668-0.697 for all three), and better than averaging over atoms the score of each
atom's nearest point (0.599-0.629).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from gdl.data.pdb import Atoms, is_mmcif


@dataclass
class ResidueScore:
    """One residue: ``chain``, ``number``, ``insertion`` code, ``name``, ``score`` (NaN when no
    surface point belongs to it) and ``points``, the number of surface points that do."""

    chain: str
    number: int
    insertion: str
    name: str
    score: float
    points: int

    @property
    def label(self) -> str:
        """``A:52A TYR``: chain, number and insertion code, residue name (``52A TYR`` without a chain)."""
        return f"{self.chain + ':' if self.chain else ''}{self.number}{self.insertion} {self.name}"


def residue_scores(points: np.ndarray, scores: np.ndarray, atoms: Atoms) -> list[ResidueScore]:
    """The residues of ``atoms`` in file order, scored from surface ``points`` (N, 3) with ``scores``
    (N,) in the atoms' coordinates (module docstring)."""
    points, scores = np.asarray(points, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or scores.shape != (len(points),):
        raise ValueError(f"points must be (N, 3) and scores (N,), got {points.shape} and {scores.shape}")
    residues = list(dict.fromkeys(atoms.residue_ids))
    index = {residue: i for i, residue in enumerate(residues)}
    atom_residue = np.array([index[r] for r in atoms.residue_ids])
    _, nearest = cKDTree(atoms.coords.double().numpy()).query(points)
    owner = atom_residue[nearest]
    totals = np.bincount(owner, weights=scores, minlength=len(residues))
    counts = np.bincount(owner, minlength=len(residues))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / counts
    return [
        ResidueScore(chain, number, insertion, name, float(mean), int(count))
        for (chain, number, insertion, name), mean, count in zip(residues, means, counts)
    ]


def summary(path, residues: list[ResidueScore], points: int, top: int = 5, lead: str = "") -> str:
    """``<file>: <lead><n> residues, <points> surface points; top residues: A:52 TYR 0.91, ...``: the
    ``top`` residues with the highest scores (residues without surface points left out)."""
    scored = sorted((r for r in residues if r.points), key=lambda r: -r.score)[:top]
    best = ", ".join(f"{r.label} {r.score:.2f}" for r in scored)
    return f"{path}: {lead}{len(residues)} residues, {points} surface points; top residues: {best}"


def output_stem(path) -> str:
    """The name of a structure file without its suffixes: ``3E2U_E`` for ``3E2U_E.pdb.gz``."""
    return Path(path).name.split(".")[0]


def output_files(out_dir, path, tag: str, kinds=("csv",)) -> dict[str, Path]:
    """The files ``<stem>_<tag>.<kind>`` in ``out_dir`` by kind, and under ``"structure"``
    ``<stem>_<tag>.cif`` or ``.pdb``: the format of the structure file ``path``."""
    out_dir, stem = Path(out_dir), output_stem(path)
    files = {kind: out_dir / f"{stem}_{tag}.{kind}" for kind in kinds}
    files["structure"] = out_dir / f"{stem}_{tag}.{'cif' if is_mmcif(path) else 'pdb'}"
    return files


def write_residue_files(out_dir, path, tag: str, structure: gemmi.Structure, residues: list[ResidueScore]) -> dict[str, Path]:
    """``<stem>_<tag>.csv`` (:func:`write_residue_csv`) and the scored copy of ``structure``
    ``<stem>_<tag>.pdb`` or ``.cif`` as ``path`` is (:func:`write_scored_structure`) in ``out_dir``
    (created if missing), for the structure file ``path``. Returns the files by kind."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files = output_files(out_dir, path, tag)
    write_residue_csv(files["csv"], residues)
    write_scored_structure(files["structure"], structure, residues)
    return files


def write_residue_csv(path, residues: list[ResidueScore]) -> None:
    """One row per residue: chain, residue_number, insertion_code, residue_name, score (blank when
    the residue owns no surface point), surface_points."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chain", "residue_number", "insertion_code", "residue_name", "score", "surface_points"])
        for r in residues:
            writer.writerow([r.chain, r.number, r.insertion, r.name, "" if math.isnan(r.score) else f"{r.score:.4f}", r.points])


def write_scored_structure(path, structure: gemmi.Structure, residues: list[ResidueScore]) -> None:
    """``structure`` with every atom's B-factor set to its residue's score (0 for residues without
    one), as mmCIF when ``path`` ends in ``.cif`` and PDB otherwise (``spectrum b`` in PyMOL)."""
    by_id = {(r.chain, r.number, r.insertion, r.name): r.score for r in residues}
    scored = structure.clone()
    for chain in scored[0]:
        for residue in chain:
            score = by_id.get((chain.name, residue.seqid.num, residue.seqid.icode.strip(), residue.name), math.nan)
            for atom in residue:
                atom.b_iso = 0.0 if math.isnan(score) else score
    if is_mmcif(path):
        scored.setup_entities()
        scored.make_mmcif_document().write_file(str(path))
    else:
        scored.write_pdb(str(path))

