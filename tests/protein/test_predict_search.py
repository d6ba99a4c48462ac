"""The predict_search command: binding scores per point and residue, partner ranking, written files."""

import csv
import math

import gemmi
import numpy as np
import pytest
import torch

import gdl.ops
from gdl.cli.predict_search import binding_scores, main, partner_score, search_scores
from gdl.data.pdb import Atoms, read_pdb, read_structure
from gdl.data.proteins import SAMPLE_DIR
from gdl.data.residue_scores import residue_scores
from gdl.models.dmasif import DMaSIF

NEEDED = ("grid_subsample", "tangent_frames", "quasi_geodesic_conv")
needs_operators = pytest.mark.skipif(
    any(op not in gdl.ops.available() for op in NEEDED), reason=f"needs the operators {NEEDED}"
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_binding_scores_of_points_and_residues_by_hand():
    """Two interface points, three candidate points in two residues (one atom each)."""
    binder = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[3.0, 1.0], [-1.0, -1.0], [0.5, 0.5]])
    # <binder_i, target_j>: i=0: 3, -1, 0.5; i=1: 2, -2, 1; the max over i: 3, -1, 1.
    expected = [sigmoid(3.0), sigmoid(-1.0), sigmoid(1.0)]
    assert torch.allclose(binding_scores(binder, target), torch.tensor(expected))
    # The ranking score: the mean over i of the max over j: (3 + 2) / 2.
    assert partner_score(binder, target) == pytest.approx(2.5)
    atoms = Atoms(
        coords=torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]),
        types=torch.eye(6)[[0, 0]],
        elements=["C", "C"],
        chains=["B", "B"],
        residue_ids=[("B", 7, "", "ALA"), ("B", 8, "A", "TYR")],
    )
    points = np.array([[1.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 1.5, 0.0]])  # 7, 8A, 7
    residues = residue_scores(points, binding_scores(binder, target).numpy(), atoms)
    assert [(r.label, r.points) for r in residues] == [("B:7 ALA", 2), ("B:8A TYR", 1)]
    assert residues[0].score == pytest.approx((sigmoid(3.0) + sigmoid(1.0)) / 2)
    assert residues[1].score == pytest.approx(sigmoid(-1.0))


def test_binding_scores_against_a_loop(generator):
    binder = torch.randn(5, 4, generator=generator)
    target = torch.randn(7, 4, generator=generator)
    loop = [sigmoid(max(float(binder[i] @ target[j]) for i in range(5))) for j in range(7)]
    assert torch.allclose(binding_scores(binder, target), torch.tensor(loop), atol=1e-6)
    with pytest.raises(ValueError, match="binder must be"):
        binding_scores(binder[:0], target)


def csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@needs_operators
@pytest.mark.slow
def test_predict_search_on_three_candidates_one_unreadable(tmp_path, capsys):
    """A PDB candidate, an mmCIF one and a corrupt one, scored by the shipped search model set to
    read heavy atoms only: two ranked and written, one error line, exit 1."""
    protein = SAMPLE_DIR / "3EYD_C.pdb.gz"
    pdb = SAMPLE_DIR / "3EYD_D.pdb.gz"
    structure = gemmi.read_structure(str(SAMPLE_DIR / "3E2U_E.pdb.gz"))
    structure.setup_entities()
    cif = tmp_path / "3E2U_E.cif"
    structure.make_mmcif_document().write_file(str(cif))
    corrupt = tmp_path / "corrupt.pdb.gz"
    corrupt.write_bytes(b"not gzip at all")
    ckpt = tmp_path / "search.pt"
    DMaSIF.from_pretrained("search", hydrogens=False).save_pretrained(ckpt)
    out = tmp_path / "out"
    assert main([str(protein), str(pdb), str(corrupt), str(cif), "--ckpt", str(ckpt), "--out", str(out)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("[KeOps]")]
    assert len(lines) == 7, lines
    assert lines[0].startswith(f"{protein}: interface of ") and "151 residues" in lines[0]
    assert lines[2].startswith(f"error: {corrupt}: cannot be read")
    assert lines[4].split() == ["rank", "score", "candidate"]
    summaries = {}
    for line in (lines[1], lines[3]):
        name, rest = line.split(": score ", 1)
        summaries[name] = (float(rest.split(";")[0]), int(rest.split(" surface points")[0].split()[-1]))
        assert "top residues: " in rest
    ranked = [line.split() for line in lines[5:]]
    assert [int(r[0]) for r in ranked] == [1, 2] and float(ranked[0][1]) >= float(ranked[1][1])
    assert {r[2]: float(r[1]) for r in ranked} == pytest.approx({n: s for n, (s, _) in summaries.items()}, abs=1e-3)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["3EYD_C_interface.csv", "3EYD_C_interface.pdb", "3EYD_D_search.csv", "3EYD_D_search.pdb"]
        + ["3E2U_E_search.csv", "3E2U_E_search.cif"]
    )
    # The model read the heavy atoms: as many surface points as the search surface of those atoms.
    atoms = read_pdb(pdb, hydrogens=False)
    model = DMaSIF.from_pretrained("search")
    centred = atoms.coords - atoms.coords.mean(0)
    surface = model.surface(centred, atoms.types, None, atoms.residue_properties(), generator=torch.Generator().manual_seed(0))
    assert summaries[str(pdb)][1] == len(surface.points)
    for stem, source, copy in (("3EYD_D_search", pdb, "3EYD_D_search.pdb"), ("3E2U_E_search", cif, "3E2U_E_search.cif")):
        rows = csv_rows(out / f"{stem}.csv")
        assert sum(int(r["surface_points"]) for r in rows) == summaries[str(source)][1]
        assert all(0 < float(r["score"]) < 1 for r in rows if r["score"])
        scores = {(r["chain"], int(r["residue_number"]), r["insertion_code"]): float(r["score"] or 0) for r in rows}
        # The scored copy keeps every atom read, hydrogens included, each with its residue's score.
        written = gemmi.read_structure(str(out / copy))
        assert written[0].count_atom_sites() == read_structure(source)[0].count_atom_sites()
        assert any(a.element.name == "H" for ch in written[0] for r in ch for a in r)
        for chain in written[0]:
            for residue in chain:
                score = scores[(chain.name, residue.seqid.num, residue.seqid.icode.strip())]
                assert all(abs(a.b_iso - score) < 0.006 for a in residue), (chain.name, residue.seqid.num)
    interface = csv_rows(out / "3EYD_C_interface.csv")
    assert len(interface) == 151
    assert all(0 < float(r["score"]) < 1 for r in interface if r["score"])


@needs_operators
@pytest.mark.slow
def test_search_scores_ranks_candidates():
    candidates = [SAMPLE_DIR / f"{name}.pdb.gz" for name in ("3EYD_D", "1I07_B", "2LBU_E")]
    ranked = search_scores(SAMPLE_DIR / "3EYD_C.pdb.gz", candidates)
    assert sorted(name for name, _ in ranked) == sorted(c.name for c in candidates)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    with pytest.raises(ValueError, match="fraction must be in"):
        search_scores(SAMPLE_DIR / "3EYD_C.pdb.gz", candidates, fraction=0)
