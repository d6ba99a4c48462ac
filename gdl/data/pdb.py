"""Reading the protein atoms of a structure file: PDB or mmCIF, plain or gzipped, parsed by gemmi.

What is kept, and why (the surface the models see is the protein's, as in their training data):

- the first model only (NMR ensembles, multi-model files);
- one conformer: the first alternative location of each atom (``A`` before ``B``, whatever the
  occupancies; gemmi's ``remove_alternative_conformations``);
- amino-acid residues only: every ``ATOM`` record that is not water or a nucleotide, and the
  ``HETATM`` residues that the Chemical Component Dictionary classes as amino acids (modified
  residues such as MSE, SEP, TPO). Waters, ions and metals (ZN, CA, FE...), ligands and cofactors
  (ATP, HEM, FAD...), glycans (NAG, MAN...), nucleic acids, and ``HETATM`` caps or residues that are
  not tabulated amino acids (ACE, NH2, 5HP) are dropped;
- hydrogens, when the file has them (deuterium is read as hydrogen); ``hydrogens=False`` drops
  every H and D atom, so that a protonated file and the same file without hydrogens give the same
  atoms (X-ray structures, AlphaFold models and docking benchmarks usually have none).

The element of an atom of a tabulated amino acid comes from its name, which the Chemical Component
Dictionary fixes (the first letter after any leading digits: ``CA`` carbon, ``1HG1`` hydrogen,
``SD`` sulfur; ``SE`` of MSE selenium), so wrong, blank or misaligned element columns do not matter:
real files have them (serial numbers in PDB columns 77-80, a segment identifier spilling into
column 77, ``C`` written for the N and O of a residue). Atoms of other residues take the element
column (PDB columns 77-78, mmCIF ``type_symbol``), or gemmi's reading of the atom name where it is
blank; when columns 77-80 hold neither an element nor a charge, they are ignored for the whole file.
"""

from __future__ import annotations

import gzip
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import gemmi
import torch

ATOM_TYPES = ("C", "H", "O", "N", "S", "SE")

# Kyte-Doolittle hydropathy of the standard residues (Kyte & Doolittle, J. Mol. Biol. 1982).
HYDROPATHY = {
    "ILE": 4.5, "VAL": 4.2, "LEU": 3.8, "PHE": 2.8, "CYS": 2.5, "MET": 1.9, "ALA": 1.8, "GLY": -0.4,
    "THR": -0.7, "SER": -0.8, "TRP": -0.9, "TYR": -1.3, "PRO": -1.6, "HIS": -3.2, "GLU": -3.5,
    "GLN": -3.5, "ASP": -3.5, "ASN": -3.5, "LYS": -3.9, "ARG": -4.5, "MSE": 1.9,
}
# Side-chain charge at neutral pH (histidine counted as +0.1, mostly neutral).
CHARGE = {"LYS": 1.0, "ARG": 1.0, "HIS": 0.1, "ASP": -1.0, "GLU": -1.0}

# PDB columns 77-80 are ignored when they hold more than these characters (element and charge).
_ELEMENT_COLUMNS = 76


class PDBError(ValueError):
    """A structure file that cannot be read: names the file and, where it applies, the line."""


@dataclass
class Atoms:
    """Atoms of one structure: ``coords`` (N, 3) float32 in angstroms, ``types`` (N, 6) one-hot over
    :data:`ATOM_TYPES`, and per-atom ``elements``, ``residue_ids`` (chain, number, insertion code,
    residue name) and ``chains``."""

    coords: torch.Tensor
    types: torch.Tensor
    elements: list[str]
    chains: list[str]
    residue_ids: list[tuple[str, int, str, str]]

    def __len__(self) -> int:
        return self.coords.shape[0]

    def residue_properties(self) -> torch.Tensor:
        """(N, 2) float32: the Kyte-Doolittle hydropathy / 4.5 and the charge of each atom's residue
        (0 for residues that are not standard amino acids)."""
        names = [r[3] for r in self.residue_ids]
        return torch.tensor(
            [[HYDROPATHY.get(n, 0.0) / 4.5, CHARGE.get(n, 0.0)] for n in names], dtype=torch.float32
        ).reshape(-1, 2)


STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


def structure_files(paths) -> list[Path]:
    """``paths`` with each folder replaced by the structure files under it (``*.pdb``, ``*.ent``,
    ``*.cif``, ``*.mmcif``, optionally gzipped; recursively, sorted). Files are kept as given."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file() and p.name.lower().removesuffix(".gz").endswith(STRUCTURE_SUFFIXES))
            files.extend(sorted(found))
        else:
            files.append(path)
    return files


def is_mmcif(path) -> bool:
    """Whether ``path`` names an mmCIF file (``.cif``, ``.mmcif``, optionally ``.gz``)."""
    name = Path(path).name.lower().removesuffix(".gz")
    return name.endswith((".cif", ".mmcif"))


def _text(path: Path) -> str:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="ascii", errors="replace") as handle:
                return handle.read()
        return path.read_text(encoding="ascii", errors="replace")
    except (OSError, EOFError) as error:
        raise PDBError(f"{path}: cannot be read as a structure file ({error})") from error


def _check_pdb_coordinates(path: Path, text: str) -> None:
    """gemmi reads unparsable coordinates as 0: refuse them here, naming the line."""
    for number, line in enumerate(text.splitlines(), start=1):
        record = line[:6].strip()
        if record == "ENDMDL":
            return
        if record not in ("ATOM", "HETATM"):
            continue
        if len(line) < 54:
            raise PDBError(
                f"{path}, line {number}: {record} record too short ({len(line)} characters, "
                f"coordinates need columns 31-54): {line!r}"
            )
        try:
            xyz = [float(line[30:38]), float(line[38:46]), float(line[46:54])]
        except ValueError:
            raise PDBError(f"{path}, line {number}: coordinates in columns 31-54 are not numbers: {line[30:54]!r}") from None
        if not all(math.isfinite(v) for v in xyz):
            raise PDBError(f"{path}, line {number}: non-finite coordinates {line[30:54]!r}")


def _parse(path: Path) -> gemmi.Structure:
    text = _text(path)
    try:
        if is_mmcif(path) or text.lstrip().startswith("data_"):
            return gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
        _check_pdb_coordinates(path, text)
        try:
            return gemmi.read_pdb_string(text)
        except RuntimeError:  # columns 77-80 hold neither an element nor a charge: elements from atom names
            return gemmi.read_pdb_string(text, max_line_length=_ELEMENT_COLUMNS)
    except (RuntimeError, ValueError) as error:
        raise PDBError(f"{path}: cannot be read as a structure file ({error})".replace("\n", " ")) from None


def is_protein_residue(residue: gemmi.Residue) -> bool:
    """An ``ATOM`` residue that is not water or a nucleotide, or a tabulated amino acid (MSE, SEP...)."""
    info = gemmi.find_tabulated_residue(residue.name)
    if info is not None and (info.is_water() or info.is_nucleic_acid()):
        return False
    return residue.het_flag == "A" or (info is not None and info.is_amino_acid())


def _set_amino_acid_elements(residue: gemmi.Residue) -> None:
    """Elements of a tabulated amino acid's atoms from their names (module docstring)."""
    info = gemmi.find_tabulated_residue(residue.name)
    if info is None or not info.is_amino_acid():
        return
    for atom in residue:
        letters = atom.name.lstrip("0123456789").upper()
        if letters:
            atom.element = gemmi.Element("Se" if letters.startswith("SE") and residue.name in ("MSE", "SEC") else letters[0])


def read_structure(path, hydrogens: bool = True) -> gemmi.Structure:
    """The protein of ``path`` as a gemmi structure: first model, first conformer, amino-acid
    residues only, without H and D atoms when ``hydrogens`` is false (module docstring). Raises
    :class:`PDBError` when the file cannot be parsed or holds no protein atom."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    structure = _parse(path)
    if not structure or not any(len(residue) for chain in structure[0] for residue in chain):
        raise PDBError(f"{path}: no ATOM or HETATM record: the file holds no atoms")
    while len(structure) > 1:
        del structure[1]
    structure.remove_alternative_conformations()
    for chain in structure[0]:
        for index in reversed(range(len(chain))):
            if not is_protein_residue(chain[index]):
                del chain[index]
            else:
                _set_amino_acid_elements(chain[index])
    if not hydrogens:
        structure.remove_hydrogens()
    structure.remove_empty_chains()
    if not any(len(residue) for chain in structure[0] for residue in chain):
        raise PDBError(f"{path}: no protein atom (amino-acid residue) in the first model")
    return structure


def structure_atoms(structure: gemmi.Structure, path, unknown: str = "warn") -> Atoms:
    """The :class:`Atoms` of the first model of ``structure`` (read from ``path``, named in messages).

    Atoms whose element is not one of :data:`ATOM_TYPES` are dropped with a single warning listing
    them (``unknown="warn"``), or raise :class:`PDBError` (``unknown="raise"``)."""
    if unknown not in ("warn", "raise"):
        raise ValueError(f"unknown must be 'warn' or 'raise', got {unknown!r}")
    coords, elements, chains, residues, dropped = [], [], [], [], {}
    for chain in structure[0]:
        for residue in chain:
            residue_id = (chain.name, residue.seqid.num, residue.seqid.icode.strip(), residue.name)
            for atom in residue:
                element = "H" if atom.element.name == "D" else atom.element.name.upper()
                if element not in ATOM_TYPES:
                    if unknown == "raise":
                        raise PDBError(
                            f"{path}: unknown element {element!r} (atom {atom.name!r} of residue "
                            f"{residue.name} {residue.seqid.num}{residue.seqid.icode.strip()}, chain {chain.name})"
                        )
                    dropped[element] = dropped.get(element, 0) + 1
                    continue
                coords.append(atom.pos.tolist())
                elements.append(element)
                chains.append(chain.name)
                residues.append(residue_id)
    if dropped:
        listing = ", ".join(f"{k} x{v}" for k, v in sorted(dropped.items()))
        warnings.warn(f"{path}: dropped atoms of unknown element(s): {listing}", stacklevel=3)
    if not coords:
        raise PDBError(f"{path}: no protein atom with a known element ({', '.join(ATOM_TYPES)})")
    coords = torch.tensor(coords, dtype=torch.float32)
    if not torch.isfinite(coords).all():
        raise PDBError(f"{path}: non-finite atom coordinates")
    types = torch.zeros(len(elements), len(ATOM_TYPES))
    types[torch.arange(len(elements)), torch.tensor([ATOM_TYPES.index(e) for e in elements])] = 1.0
    return Atoms(coords, types, elements, chains, residues)


def read_for_model(path, hydrogens: bool = True) -> tuple[gemmi.Structure, Atoms]:
    """The protein of ``path``, parsed once, twice over: the gemmi structure with every atom
    :func:`read_structure` keeps, hydrogens included (for copies written back with scores), and the
    :class:`Atoms` a model reads, the same as ``read_pdb(path, hydrogens=hydrogens)`` (heavy atoms
    only when ``hydrogens`` is false; pass the model's ``hydrogens`` attribute)."""
    path = Path(path)
    structure = read_structure(path)
    read = structure
    if not hydrogens:
        read = structure.clone()
        read.remove_hydrogens()
    return structure, structure_atoms(read, path)


def read_pdb(path, unknown: str = "warn", hydrogens: bool = True) -> Atoms:
    """The protein atoms of a PDB or mmCIF file (``.pdb``, ``.cif``, either gzipped): first model,
    first conformer, amino-acid residues, hydrogens kept or (``hydrogens=False``) dropped (module
    docstring); ``unknown`` as in :func:`structure_atoms`. A file that cannot be parsed, or holds no
    protein atom, raises :class:`PDBError`."""
    return structure_atoms(read_structure(path, hydrogens), path, unknown)
