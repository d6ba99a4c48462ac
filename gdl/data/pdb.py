"""Reading atoms from PDB files (``.pdb`` or ``.pdb.gz``), fixed-column format.

Columns (1-based, inclusive) of ATOM/HETATM records: atom name 13-16, residue name 18-20,
chain 22, residue number 23-26, insertion code 27, x 31-38, y 39-46, z 47-54, element 77-78.
When the element column is blank the element is the leading letters of the atom name.
"""

from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path

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

# Two-letter elements whose first letter is also an element: needed to read names without element column.
_TWO_LETTER = {"SE", "CL", "BR", "FE", "ZN", "MG", "MN", "CA", "NA", "CU", "CO", "NI", "CD", "HG"}


class PDBError(ValueError):
    """A PDB file that cannot be read: names the file and, where it applies, the line."""


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


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="ascii", errors="replace")
    return open(path, encoding="ascii", errors="replace")


def _element(line: str, atom_name: str) -> str:
    element = line[76:78].strip().upper() if len(line) >= 77 else ""
    if element:
        return element
    letters = "".join(c for c in atom_name.strip() if c.isalpha()).upper()
    if not letters:
        return ""
    # Columns 13-14 hold the element right-justified: a short name starting in column 13 is a
    # two-letter element ("SE  "); four-character names ("HG12") start there too, for hydrogens.
    if atom_name[:1].isalpha() and letters[:2] in _TWO_LETTER and len(atom_name.strip()) < 4:
        return letters[:2]
    return letters[:1]


def read_pdb(path, unknown: str = "warn") -> Atoms:
    """Read the ATOM and HETATM records of ``path``.

    Atoms whose element is not one of :data:`ATOM_TYPES` are dropped with a single warning listing
    them (``unknown="warn"``), or raise :class:`PDBError` (``unknown="raise"``). A malformed record
    raises :class:`PDBError` naming the file and line; a file without atoms is an error too.
    """
    if unknown not in ("warn", "raise"):
        raise ValueError(f"unknown must be 'warn' or 'raise', got {unknown!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PDB file not found: {path}")
    coords, elements, chains, residues, dropped = [], [], [], [], {}
    try:
        with _open_text(path) as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip("\r\n")
                record = line[:6].strip()
                if record == "ENDMDL":
                    break  # first model only
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
                    raise PDBError(
                        f"{path}, line {number}: coordinates in columns 31-54 are not numbers: "
                        f"{line[30:54]!r}"
                    ) from None
                if not all(abs(v) < float("inf") and v == v for v in xyz):
                    raise PDBError(f"{path}, line {number}: non-finite coordinates {line[30:54]!r}")
                residue_text = line[22:26].strip()
                try:
                    residue_number = int(residue_text) if residue_text else 0
                except ValueError:
                    raise PDBError(
                        f"{path}, line {number}: residue number in columns 23-26 is not an integer: "
                        f"{line[22:26]!r}"
                    ) from None
                atom_name = line[12:16]
                element = _element(line, atom_name)
                if element not in ATOM_TYPES:
                    key = element or f"<blank, atom {atom_name.strip()!r}>"
                    if unknown == "raise":
                        raise PDBError(f"{path}, line {number}: unknown element {key!r}")
                    dropped[key] = dropped.get(key, 0) + 1
                    continue
                chain = line[21]
                coords.append(xyz)
                elements.append(element)
                chains.append(chain)
                residues.append((chain, residue_number, line[26].strip(), line[17:20].strip()))
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise PDBError(f"{path}: cannot be read as a PDB file ({error})") from error
    if dropped:
        listing = ", ".join(f"{k} x{v}" for k, v in sorted(dropped.items()))
        warnings.warn(f"{path}: dropped atoms of unknown element(s): {listing}", stacklevel=2)
    if not coords:
        raise PDBError(f"{path}: no ATOM or HETATM record with a known element: the file holds no atoms")
    types = torch.zeros(len(elements), len(ATOM_TYPES))
    types[torch.arange(len(elements)), torch.tensor([ATOM_TYPES.index(e) for e in elements])] = 1.0
    return Atoms(torch.tensor(coords, dtype=torch.float32), types, elements, chains, residues)
