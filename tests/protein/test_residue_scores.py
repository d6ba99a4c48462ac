"""Residue scores from surface points, against a hand computation; the scored structure and table."""

import csv
import math

import gemmi
import numpy as np
import pytest
import torch

from gdl.data.pdb import Atoms, read_pdb, read_structure
from gdl.data.residue_scores import residue_scores, write_residue_csv, write_scored_structure
from gdl.data.proteins import SAMPLE_DIR


def tiny_atoms() -> Atoms:
    """Three residues on the x axis: A:1 GLY (atoms at x=0, 1), A:1A SER (x=4), B:2 TRP (x=10, buried here)."""
    coords = torch.tensor([[0.0, 0, 0], [1, 0, 0], [4, 0, 0], [10, 0, 0]])
    ids = [("A", 1, "", "GLY"), ("A", 1, "", "GLY"), ("A", 1, "A", "SER"), ("B", 2, "", "TRP")]
    types = torch.zeros(4, 6)
    types[:, 0] = 1
    return Atoms(coords, types, ["C"] * 4, [i[0] for i in ids], ids)


def test_residue_score_is_the_mean_over_points_whose_nearest_atom_is_in_the_residue():
    # Nearest atoms, by hand: x=-1 -> atom 0 (GLY), x=1.4 -> atom 1 (GLY), x=2.6 -> atom 2 (SER: 1.4 < 1.6),
    # x=5 -> atom 2 (SER); no point is nearest to the TRP atom at x=10.
    points = np.array([[-1.0, 1, 0], [1.4, 1, 0], [2.6, 1, 0], [5, -1, 0]])
    scores = np.array([0.2, 0.6, 0.9, 0.5])
    residues = residue_scores(points, scores, tiny_atoms())
    assert [(r.chain, r.number, r.insertion, r.name) for r in residues] == [
        ("A", 1, "", "GLY"), ("A", 1, "A", "SER"), ("B", 2, "", "TRP")
    ]
    assert [r.points for r in residues] == [2, 2, 0]
    assert residues[0].score == pytest.approx(0.4) and residues[1].score == pytest.approx(0.7)
    assert math.isnan(residues[2].score)
    assert residues[1].label == "A:1A SER"
    with pytest.raises(ValueError, match="points must be"):
        residue_scores(points[:, :2], scores, tiny_atoms())


def test_table_and_b_factors_carry_the_residue_scores(tmp_path):
    atoms = read_pdb(SAMPLE_DIR / "3E2U_E.pdb.gz")
    structure = read_structure(SAMPLE_DIR / "3E2U_E.pdb.gz")
    # Surface stand-in: each atom pushed 1 A away from the centroid, scored by its x coordinate's rank.
    centre = atoms.coords.mean(0)
    points = (atoms.coords + (atoms.coords - centre) / (atoms.coords - centre).norm(dim=1, keepdim=True)).numpy()
    scores = np.argsort(np.argsort(points[:, 0])) / len(points)
    residues = residue_scores(points, scores, atoms)
    write_residue_csv(tmp_path / "scores.csv", residues)
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert len(rows) == len(residues) == len(set(atoms.residue_ids))
    for row, residue in zip(rows, residues):
        assert (row["chain"], int(row["residue_number"]), row["residue_name"]) == (residue.chain, residue.number, residue.name)
        assert row["score"] == ("" if math.isnan(residue.score) else f"{residue.score:.4f}")
    by_id = {(r.chain, r.number, r.insertion): r.score for r in residues}
    for suffix, tolerance in ((".pdb", 0.005), (".cif", 1e-6)):
        write_scored_structure(tmp_path / f"scored{suffix}", structure, residues)
        written = gemmi.read_structure(str(tmp_path / f"scored{suffix}"))
        count = 0
        for chain in written[0]:
            for residue in chain:
                expected = by_id[(chain.name, residue.seqid.num, residue.seqid.icode.strip())]
                for atom in residue:
                    assert atom.b_iso == pytest.approx(0.0 if math.isnan(expected) else expected, abs=tolerance)
                    count += 1
        assert count == len(atoms)
