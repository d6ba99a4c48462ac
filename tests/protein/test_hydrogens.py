"""A model that reads structures without hydrogens answers the same for a protonated file and for
the same file stripped of its H atoms; the scored copy keeps every atom given."""

import csv
import gzip

import pytest

import gdl.ops
from gdl.cli.predict_sites import main
from gdl.data.pdb import read_pdb
from gdl.data.protein_cache import ProteinCache
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import DMaSIF

NEEDED = ("grid_subsample", "tangent_frames", "quasi_geodesic_conv")
pytestmark = pytest.mark.skipif(
    any(op not in gdl.ops.available() for op in NEEDED), reason=f"needs the operators {NEEDED}"
)
PROTONATED = SAMPLE_DIR / "3E2U_E.pdb.gz"  # MaSIF-search file: 193 heavy atoms, 155 hydrogens


def stripped_copy(path, folder):
    """The ATOM/HETATM records of ``path`` whose element column is not H, as a new PDB file."""
    lines = gzip.open(path, "rt").read().splitlines()
    kept = [line for line in lines if not (line.startswith(("ATOM", "HETATM")) and line[76:78].strip() == "H")]
    assert len(lines) - len(kept) == 155
    out = folder / "stripped" / path.name.replace(".gz", "")
    out.parent.mkdir()
    out.write_text("\n".join(kept) + "\n")
    return out


def residue_rows(path):
    with open(path) as handle:
        return [(row["chain"], row["residue_number"], row["score"]) for row in csv.DictReader(handle)]


def test_protonated_and_stripped_files_get_the_same_residue_scores(tmp_path, monkeypatch):
    model = DMaSIF.from_pretrained("site", hydrogens=False)
    monkeypatch.setattr("gdl.cli.predict_sites.load_model", lambda ckpt, head="site": model)
    stripped = stripped_copy(PROTONATED, tmp_path)
    assert main([str(PROTONATED), "--out", str(tmp_path / "given")]) == 0
    assert main([str(stripped), "--out", str(tmp_path / "stripped_out")]) == 0
    given, without = tmp_path / "given" / "3E2U_E_sites.csv", tmp_path / "stripped_out" / "3E2U_E_sites.csv"
    assert residue_rows(given) == residue_rows(without) and len(residue_rows(given)) > 10
    scored = read_pdb(tmp_path / "given" / "3E2U_E_sites.pdb")
    assert len(scored.coords) == len(read_pdb(PROTONATED).coords)  # the scored copy keeps the hydrogens


def test_the_cache_reads_files_as_its_model_does(tmp_path):
    with_h, without_h = DMaSIF.from_pretrained("site", hydrogens=True), DMaSIF.from_pretrained("site", hydrogens=False)
    caches = ProteinCache(tmp_path, with_h), ProteinCache(tmp_path, without_h)
    assert caches[0].key(PROTONATED) != caches[1].key(PROTONATED)
    assert len(caches[1].compute(PROTONATED)["atoms"]) == len(read_pdb(PROTONATED, hydrogens=False).coords) == 193
