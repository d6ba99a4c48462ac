"""The structure reader against real files (whole and cut), crafted odd cases and malformed files."""

import gzip
import warnings
from pathlib import Path

import gemmi
import pytest
import torch

from gdl.data.pdb import ATOM_TYPES, PDBError, read_pdb
from gdl.data.proteins import SAMPLE_DIR

CUTS = Path(__file__).parent / "files"


def atom_line(
    serial=1, name=" CA ", res="ALA", chain="A", resnum=1, xyz=(1.0, 2.0, 3.0), element="C", record="ATOM", altloc=" ",
    occupancy=1.0,
):
    x, y, z = xyz
    return (
        f"{record:6s}{serial:5d} {name}{altloc}{res} {chain}{resnum:4d}    {x:8.3f}{y:8.3f}{z:8.3f}{occupancy:6.2f}  0.00"
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


def test_elements_of_amino_acids_come_from_atom_names(tmp_path):
    text = atom_line(1, name=" OG1", res="THR", element="")  # blank column
    text += atom_line(2, name="SE  ", res="MSE", element="", record="HETATM", resnum=2)  # selenomethionine
    text += atom_line(3, name=" N  ", res="ASP", element="H", resnum=3)  # segment identifier in column 77
    text += atom_line(4, name="1HG1", res="VAL", element="", resnum=4)  # old-style hydrogen name
    text += atom_line(5, name="CA  ", res="GLY", element="CA", resnum=5)  # misaligned name, calcium in the column
    atoms = read_pdb(write(tmp_path, "X_A.pdb", text))
    assert atoms.elements == ["O", "SE", "N", "H", "C"]
    assert atoms.types[1].tolist() == [0, 0, 0, 0, 0, 1]


def test_real_files_with_wrong_element_columns():
    """Cut from Docking Benchmark 5.5: serial numbers in columns 77-80 (1ACB), and ``C`` in the
    element column of the N and O atoms of an aspartate (1D6R unbound)."""
    for name in ("1ACB_l_serials.pdb", "1D6R_r_wrong_elements.pdb"):
        lines = [l for l in open(CUTS / name) if l.startswith("ATOM")]
        atoms = read_pdb(CUTS / name)
        assert len(atoms) == len(lines)
        assert atoms.elements == [l[12:16].strip()[0] for l in lines]
        assert torch.equal(atoms.coords[-1], torch.tensor([float(lines[-1][c : c + 8]) for c in (30, 38, 46)]))
    assert read_pdb(CUTS / "1D6R_r_wrong_elements.pdb").elements[:4] == ["N", "C", "C", "O"]


def test_modified_residues_are_kept_ligands_and_metals_dropped():
    """Real cuts: MSE between two ATOM residues (3FN1), an iron-sulfur cluster FES after a chain (2YVJ)."""
    atoms = read_pdb(CUTS / "3FN1_l_MSE.pdb")
    assert [r[3] for r in dict.fromkeys(atoms.residue_ids)] == ["GLN", "MSE", "LYS"]
    assert atoms.elements.count("SE") == 1 and len(atoms) == 26
    assert atoms.residue_properties()[atoms.elements.index("SE")].tolist() == pytest.approx([1.9 / 4.5, 0.0])
    atoms = read_pdb(CUTS / "2YVJ_l_FES.pdb")
    assert len(atoms) == 8 and {r[3] for r in atoms.residue_ids} == {"THR", "PHE"}


def test_waters_ions_ligands_caps_and_nucleotides_are_dropped(tmp_path):
    text = atom_line(1, name=" N  ", res="ACE", element="C", record="HETATM", resnum=0)
    text += atom_line(2, name=" CA ", res="SER", element="C", resnum=1)
    text += atom_line(3, name=" O  ", res="HOH", element="O", record="HETATM", resnum=101)
    text += atom_line(4, name="ZN  ", res=" ZN", element="ZN", record="HETATM", resnum=102)
    text += atom_line(5, name=" C1 ", res="NAG", element="C", record="HETATM", resnum=103)
    text += atom_line(6, name=" P  ", res=" DA", element="P", chain="B", resnum=1)
    atoms = read_pdb(write(tmp_path, "X_A.pdb", text))
    assert atoms.residue_ids == [("A", 1, "", "SER")]
    with pytest.raises(PDBError, match="no protein atom"):
        read_pdb(write(tmp_path, "ligands.pdb", text.replace("ATOM  ", "HETATM").replace("SER", "UNL")))


def test_first_model_and_first_conformer(tmp_path):
    conformers = atom_line(1, name=" CB ", res="SER", altloc="A", occupancy=0.3, xyz=(1, 1, 1))
    conformers += atom_line(2, name=" CB ", res="SER", altloc="B", occupancy=0.7, xyz=(2, 2, 2))
    conformers += atom_line(3, name=" CA ", res="SER", xyz=(3, 3, 3))
    second = atom_line(1, name=" CB ", res="SER", xyz=(9, 9, 9))
    text = f"MODEL        1\n{conformers}ENDMDL\nMODEL        2\n{second}ENDMDL\nEND\n"
    atoms = read_pdb(write(tmp_path, "X_A.pdb", text))
    assert atoms.coords.tolist() == [[1, 1, 1], [3, 3, 3]]  # conformer A, although B is more occupied


def test_insertion_codes_and_chains(tmp_path):
    text = atom_line(1, resnum=52).replace("  52 ", "  52A") + atom_line(2, chain="H", resnum=7)
    atoms = read_pdb(write(tmp_path, "X_A.pdb", text))
    assert atoms.residue_ids == [("A", 52, "A", "ALA"), ("H", 7, "", "ALA")] and atoms.chains == ["A", "H"]


@pytest.mark.parametrize("source", ["3FN1_l_MSE.pdb", "1ACB_l_serials.pdb", "sample"])
@pytest.mark.parametrize("suffix", [".cif", ".cif.gz"])
def test_mmcif_twin_reads_the_same_atoms(tmp_path, source, suffix):
    pdb = SAMPLE_DIR / "1I07_A.pdb.gz" if source == "sample" else CUTS / source
    structure = gemmi.read_structure(str(pdb), format=gemmi.CoorFormat.Pdb) if source != "1ACB_l_serials.pdb" else None
    if structure is None:  # gemmi cannot parse the serial numbers of columns 77-80 itself
        structure = gemmi.read_pdb_string(pdb.read_text(), max_line_length=76)
    structure.setup_entities()
    text = structure.make_mmcif_document().as_string()
    cif = tmp_path / f"twin{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(cif, "wt") as handle:
            handle.write(text)
    else:
        cif.write_text(text)
    a, b = read_pdb(pdb), read_pdb(cif)
    assert torch.equal(a.coords, b.coords) and a.elements == b.elements and a.residue_ids == b.residue_ids


def test_unknown_elements_warn_once_or_raise(tmp_path):
    """GLX (Glu or Gln, not a tabulated residue) with its two ambiguous atoms marked X (as in 4CPA)."""
    text = atom_line(1, res="GLX") + atom_line(2, name=" XE1", res="GLX", element="X")
    text += atom_line(3, name=" XE2", res="GLX", element="X")
    path = write(tmp_path, "X_A.pdb", text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = read_pdb(path)
    assert len(atoms) == 1
    assert len(caught) == 1 and "X x2" in str(caught[0].message)
    with pytest.raises(PDBError, match=r"X_A.pdb: unknown element 'X' \(atom 'XE1' of residue GLX 1, chain A\)"):
        read_pdb(path, unknown="raise")


def test_real_files_of_each_odd_kind_read(shared_data):
    """Serial numbers in columns 77-80 (2SIC bound), a segment identifier in column 77 (1VFB unbound),
    X atoms of GLX (4CPA), a protonated MaSIF file. All 1012 shared files are checked by a script."""
    for name in ("db5_5/bound/2SIC_r", "db5_5/unbound/1VFB_l", "db5_5/bound/4CPA_l", "masif_search_pairs/1A2K_C"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atoms = read_pdb(shared_data / f"{name}.pdb.gz")
        assert len(atoms) > 250 and set(atoms.elements) == ({"C", "H", "N", "O", "S"} - ({"H"} if "db5" in name else set()))


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("ATOM      2  CA  ALA A   1      1.000   2.000\n", "line 2: ATOM record too short"),
        ("ATOM      2  CA  ALA A   1      1.000   abc     3.000  1.00  0.00           C\n", "line 2: coordinates"),
        ("HETATM    2  CA  ALA A   1      nan     2.000   3.000  1.00  0.00           C\n", "line 2: non-finite"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad_line, message):
    path = write(tmp_path, "bad_A.pdb", atom_line(1) + bad_line)
    with pytest.raises(PDBError, match="bad_A.pdb, " + message):
        read_pdb(path)


def test_empty_and_atomless_files_are_errors(tmp_path):
    with pytest.raises(PDBError, match="empty.pdb: no ATOM or HETATM"):
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


def test_hydrogens_false_keeps_the_heavy_atoms_of_a_protonated_file():
    """Two lysines cut from a protonated MaSIF file: 18 heavy atoms, 25 hydrogens."""
    path = CUTS / "1I07_A_protonated.pdb"
    lines = [l for l in open(path) if l.startswith("ATOM")]
    heavy = [i for i, l in enumerate(lines) if l[76:78].strip() != "H"]
    assert (len(heavy), len(lines) - len(heavy)) == (18, 25)
    every, stripped = read_pdb(path), read_pdb(path, hydrogens=False)
    assert "H" in every.elements and "H" not in stripped.elements
    assert torch.equal(stripped.coords, every.coords[heavy])
    assert torch.equal(stripped.types, every.types[heavy])
    assert stripped.types[:, ATOM_TYPES.index("H")].sum() == 0
    assert stripped.residue_ids == [every.residue_ids[i] for i in heavy]
    assert stripped.elements == [l[76:78].strip() for l in lines if l[76:78].strip() != "H"]


def test_hydrogens_false_drops_deuterium(tmp_path):
    text = atom_line(1, name=" N  ", element="N") + atom_line(2, name=" D  ", xyz=(1.0, 2.0, 4.0), element="D")
    path = write(tmp_path, "X_A.pdb", text)
    assert read_pdb(path).elements == ["N", "H"]
    assert read_pdb(path, hydrogens=False).elements == ["N"]
