"""The PDB reader against the files themselves and against crafted malformed files."""

import gzip
import warnings

import pytest
import torch

from gdl.data.pdb import ATOM_TYPES, PDBError, read_pdb
from gdl.data.proteins import SAMPLE_DIR


def atom_line(serial=1, name=" CA ", res="ALA", chain="A", resnum=1, xyz=(1.0, 2.0, 3.0), element="C"):
    x, y, z = xyz
    return (
        f"ATOM  {serial:5d} {name} {res} {chain}{resnum:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00"
        f"          {element:>2s}  \n"
    )


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_file_matches_its_atom_records():
    path = SAMPLE_DIR / "1I07_A.pdb.gz"
    lines = [l for l in gzip.open(path, "rt") if l.startswith(("ATOM", "HETATM"))]
    atoms = read_pdb(path)
    assert len(atoms) == len(lines)
    assert atoms.coords.dtype == torch.float32 and atoms.coords.shape == (len(lines), 3)
    first = lines[0]
    expected = torch.tensor([float(first[30:38]), float(first[38:46]), float(first[46:54])])
    assert torch.equal(atoms.coords[0], expected)
    assert torch.equal(atoms.types.sum(1), torch.ones(len(lines)))
    elements = [l[76:78].strip() for l in lines]
    assert [ATOM_TYPES[i] for i in atoms.types.argmax(1).tolist()] == elements
    assert set(atoms.chains) == {"A"}
    assert atoms.residue_ids[0] == ("A", int(first[22:26]), first[26].strip(), first[17:20].strip())


def test_plain_and_gzip_read_the_same(tmp_path):
    text = atom_line(1) + atom_line(2, name=" N  ", xyz=(4.0, 5.0, 6.5), element="N")
    plain = write(tmp_path, "X_A.pdb", text)
    packed = tmp_path / "X_A.pdb.gz"
    with gzip.open(packed, "wt") as f:
        f.write(text)
    a, b = read_pdb(plain), read_pdb(packed)
    assert torch.equal(a.coords, b.coords) and torch.equal(a.types, b.types)
    assert a.elements == ["C", "N"]


def test_element_falls_back_to_atom_name(tmp_path):
    line = atom_line(1, name=" OG1", element="")
    se = atom_line(2, name="SE  ", res="MSE", element="")
    atoms = read_pdb(write(tmp_path, "X_A.pdb", line + se))
    assert atoms.elements == ["O", "SE"]


def test_unknown_elements_warn_once_or_raise(tmp_path):
    text = atom_line(1) + atom_line(2, name="ZN  ", element="ZN") + atom_line(3, name="ZN  ", element="ZN")
    text += atom_line(4, name="FE  ", element="FE")
    path = write(tmp_path, "X_A.pdb", text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = read_pdb(path)
    assert len(atoms) == 1
    assert len(caught) == 1 and "ZN x2" in str(caught[0].message) and "FE x1" in str(caught[0].message)
    with pytest.raises(PDBError, match=r"X_A.pdb, line 2: unknown element 'ZN'"):
        read_pdb(path, unknown="raise")


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("ATOM      2  CA  ALA A   1      1.000   2.000\n", "line 2: ATOM record too short"),
        ("ATOM      2  CA  ALA A   1      1.000   abc     3.000  1.00  0.00           C\n", "line 2: coordinates"),
        ("ATOM      2  CA  ALA A   x      1.000   2.000   3.000  1.00  0.00           C\n", "line 2: residue number"),
        ("HETATM    2  CA  ALA A   1      nan     2.000   3.000  1.00  0.00           C\n", "line 2: non-finite"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad_line, message):
    path = write(tmp_path, "bad_A.pdb", atom_line(1) + bad_line)
    with pytest.raises(PDBError, match="bad_A.pdb, " + message):
        read_pdb(path)


def test_empty_and_atomless_files_are_errors(tmp_path):
    with pytest.raises(PDBError, match="no ATOM or HETATM"):
        read_pdb(write(tmp_path, "empty.pdb", ""))
    with pytest.raises(PDBError, match="no ATOM or HETATM"):
        read_pdb(write(tmp_path, "remarks.pdb", "REMARK 1 nothing here\nEND\n"))
    with pytest.raises(FileNotFoundError, match="missing.pdb"):
        read_pdb(tmp_path / "missing.pdb")
    corrupt = tmp_path / "corrupt.pdb.gz"
    corrupt.write_bytes(b"not gzip at all")
    with pytest.raises(PDBError, match="corrupt.pdb.gz: cannot be read"):
        read_pdb(corrupt)
    with pytest.raises(ValueError, match="unknown must be"):
        read_pdb(SAMPLE_DIR / "1I07_A.pdb.gz", unknown="ignore")
