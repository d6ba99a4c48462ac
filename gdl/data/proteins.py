"""Protein complexes for dMaSIF: files, splits by PDB ID, MaSIF lists, labels, a LightningDataModule.

A complex is two files ``PDBID_CHAINS1.pdb[.gz]`` and ``PDBID_CHAINS2.pdb[.gz]`` of one folder (the
MaSIF naming: ``1A2K_AB`` and ``1A2K_C`` are the two sides of 1A2K). Each complex becomes a
``torch_geometric.data.Data`` with the atoms of both sides and, from a
:class:`~gdl.data.protein_cache.ProteinCache`, their preprocessed surfaces; batches of them carry
``atoms_1_batch``, ``points_1_batch``, ... vectors (PyG ``follow_batch``).

Interface labels: a surface point of one side is interface when an atom of the partner (hydrogens
included) lies within ``threshold`` angstroms of it (3 by default: the two surfaces of a contact
lie about 1 angstrom outside their own atoms' van der Waals spheres, so the partner's atoms in
contact are within 2 to 3 angstroms of the interface points).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

import gdl
import gdl.ops
from gdl.data.pdb import read_pdb
from gdl.data.protein_cache import ProteinCache
from gdl.data.synthetic import sample_folder

SAMPLE_DIR = sample_folder("proteins")
# Two Docking Benchmark 5.5 complexes, bound/ and unbound/ PDBID_l, PDBID_r files (its README)
DB5_SAMPLE_DIR = sample_folder("db5_5")
# Preprocessed sample proteins at the settings of configs/model/dmasif.yaml (and the shipped models),
# so that the main job starts from cached surfaces: python -m gdl.data.protein_cache --help
SAMPLE_CACHE_DIR = SAMPLE_DIR / "cache"
MASIF_ARCHIVE_URL = "https://zenodo.org/record/2625420/files/masif_site_masif_search_pdbs_and_ply_files.tar.gz"
MASIF_LIST_FILES = ("training.txt", "testing.txt", "training_ppi.txt", "testing_ppi.txt")

_FILE_NAME = re.compile(r"^(?P<pdb>[0-9A-Za-z]{4})_(?P<chains>[0-9A-Za-z]+)\.pdb(\.gz)?$")


@dataclass(frozen=True)
class Complex:
    """The two sides of one complex: ``pdb_id``, chain strings and files."""

    pdb_id: str
    chains_1: str
    chains_2: str
    file_1: Path
    file_2: Path

    @property
    def name(self) -> str:
        return f"{self.pdb_id}_{self.chains_1}_{self.chains_2}"


def protein_files(folder) -> dict[str, Path]:
    """``{"PDBID_CHAINS": path}`` of the ``.pdb``/``.pdb.gz`` files of ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"protein data folder not found: {folder}")
    files = {}
    for path in sorted(folder.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match:
            files.setdefault(f"{match['pdb'].upper()}_{match['chains']}", path)
    return files


def find_complexes(folder) -> list[Complex]:
    """Complexes of ``folder``: PDB IDs with exactly two files (sorted by ID, then chains)."""
    by_id: dict[str, list[tuple[str, Path]]] = {}
    for key, path in protein_files(folder).items():
        pdb_id, chains = key.split("_", 1)
        by_id.setdefault(pdb_id, []).append((chains, path))
    complexes = []
    for pdb_id, sides in sorted(by_id.items()):
        if len(sides) == 2:
            (c1, f1), (c2, f2) = sorted(sides)
            complexes.append(Complex(pdb_id, c1, c2, f1, f2))
    if not complexes:
        raise ValueError(f"no complex (two files PDBID_CHAINS.pdb[.gz] sharing a PDB ID) in {folder}")
    return complexes


def pooled_complexes(folders) -> list[Complex]:
    """The complexes of several folders; a PDB ID found in two of them is an error (it would
    otherwise reach two splits' worth of data under one ID)."""
    complexes, seen = [], {}
    for folder in folders:
        for complex_ in find_complexes(folder):
            if complex_.pdb_id in seen:
                raise ValueError(f"PDB ID {complex_.pdb_id} is in both {seen[complex_.pdb_id]} and {folder}")
            seen[complex_.pdb_id] = folder
            complexes.append(complex_)
    return sorted(complexes, key=lambda c: (c.pdb_id, c.chains_1, c.chains_2))


def read_masif_list(path) -> list[str]:
    """Entries of a MaSIF list file: ``PDBID_CHAINS`` (training.txt, testing.txt) or
    ``PDBID_CHAINS1_CHAINS2`` (training_ppi.txt, testing_ppi.txt), one a line."""
    path = Path(path)
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not re.fullmatch(r"[0-9A-Za-z]{4}(_[0-9A-Za-z]+){1,2}", line):
            raise ValueError(f"{path}, line {number}: expected PDBID_CHAINS or PDBID_CHAINS1_CHAINS2, got {line!r}")
        entries.append(line)
    return entries


def complexes_from_list(folder, list_file) -> list[Complex]:
    """The complexes of a MaSIF ``*_ppi.txt`` list whose two files are in ``folder``; entries with a
    single side (``PDBID_CHAINS`` lists) are paired with the other file of the same PDB ID."""
    files = protein_files(folder)
    complexes = []
    for entry in read_masif_list(list_file):
        parts = entry.split("_")
        pdb_id = parts[0].upper()
        if len(parts) == 3:
            sides = [f"{pdb_id}_{parts[1]}", f"{pdb_id}_{parts[2]}"]
        else:
            others = [k for k in files if k.startswith(pdb_id + "_") and k != f"{pdb_id}_{parts[1]}"]
            sides = [f"{pdb_id}_{parts[1]}"] + others[:1]
        if len(sides) == 2 and all(s in files for s in sides):
            complexes.append(Complex(pdb_id, sides[0].split("_")[1], sides[1].split("_")[1], files[sides[0]], files[sides[1]]))
    if not complexes:
        raise ValueError(f"none of the complexes listed in {list_file} has both files in {folder}")
    return complexes


def split_by_pdb_id(complexes: list[Complex], val_fraction: float = 0.1, test_fraction: float = 0.2):
    """(train, val, test) lists; a PDB ID goes to one split only, chosen by a hash of the ID
    (stable across machines and folder contents). Small sets keep at least one complex in each of
    val and test when they have three or more complexes."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction and test_fraction must be in [0, 1) with sum < 1, got {val_fraction}, {test_fraction}")
    ids = sorted({c.pdb_id for c in complexes}, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
    n_test = round(test_fraction * len(ids))
    n_val = round(val_fraction * len(ids))
    if len(ids) >= 3:
        n_test, n_val = max(n_test, 1 if test_fraction > 0 else 0), max(n_val, 1 if val_fraction > 0 else 0)
    test_ids, val_ids = set(ids[:n_test]), set(ids[n_test : n_test + n_val])
    train = [c for c in complexes if c.pdb_id not in test_ids | val_ids]
    return train, [c for c in complexes if c.pdb_id in val_ids], [c for c in complexes if c.pdb_id in test_ids]


class ProteinComplexes(torch.utils.data.Dataset):
    """Complexes as PyG ``Data``: ``atoms_1`` (M1, 3), ``types_1`` (M1, 6), ``residues_1`` (M1, 2)
    (hydropathy and charge, :meth:`~gdl.data.pdb.Atoms.residue_properties`) and the same for side 2,
    centred on side 1's centroid, with ``name`` (``PDBID_CHAINS1_CHAINS2``). With a ``cache`` each
    side also carries its surface: ``points_1`` (N1, 3), ``normals_1``, ``features_1`` (N1, F).
    ``hydrogens=False`` reads the files without their H and D atoms (a ``cache`` must have been made
    with the same setting). Items are kept in memory after their first read."""

    def __init__(
        self, complexes: list[Complex], unknown_elements: str = "warn", cache: ProteinCache | None = None, hydrogens: bool = True
    ):
        if cache is not None and cache.hydrogens != hydrogens:
            raise ValueError(f"hydrogens={hydrogens} but the cache was made with hydrogens={cache.hydrogens}")
        self.complexes = list(complexes)
        self.unknown_elements = unknown_elements
        self.cache = cache
        self.hydrogens = hydrogens
        self._items: dict[int, Data] = {}

    def __len__(self) -> int:
        return len(self.complexes)

    def _side(self, path) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            return self.cache.get(path)
        atoms = read_pdb(path, unknown=self.unknown_elements, hydrogens=self.hydrogens)
        return {"atoms": atoms.coords, "types": atoms.types, "residue_properties": atoms.residue_properties()}

    def __getitem__(self, index: int) -> Data:
        if index not in self._items:
            c = self.complexes[index]
            sides = self._side(c.file_1), self._side(c.file_2)
            centre = sides[0]["atoms"].mean(0)
            fields = {}
            for number, side in zip("12", sides):
                fields[f"atoms_{number}"] = side["atoms"] - centre
                fields[f"types_{number}"] = side["types"]
                fields[f"residues_{number}"] = side["residue_properties"]
                if "points" in side:
                    fields[f"points_{number}"] = side["points"] - centre
                    fields[f"normals_{number}"] = side["normals"]
                    fields[f"features_{number}"] = side["features"]
            self._items[index] = Data(**fields, name=c.name, num_nodes=len(fields["atoms_1"]))
        return self._items[index].clone()


def interface_labels(points, batch, partner_atoms, partner_batch, threshold: float = 3.0):
    """(N,) bool: a surface point is interface when an atom of the partner of the same complex
    (``partner_atoms`` (M, 3), ``partner_batch`` (M,)) lies within ``threshold`` angstroms of it."""
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    distance, _ = gdl.ops.get("knn", k=1)(points, partner_atoms, batch, partner_batch)
    return distance[:, 0] < threshold


def download_masif(destination, url: str = MASIF_ARCHIVE_URL) -> Path:
    """Download and extract the public MaSIF archive (PDB files and list files) into ``destination``.

    ``url`` may be a local ``file://`` URL. Returns ``destination``. Extraction refuses members
    that would land outside ``destination``.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "masif.tar.gz"
        with urllib.request.urlopen(url) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        with tarfile.open(archive) as tar:
            root = destination.resolve()
            for member in tar.getmembers():
                target = (destination / member.name).resolve()
                if root not in target.parents and target != root:
                    raise ValueError(f"{url}: archive member {member.name!r} escapes {destination}")
            tar.extractall(destination, filter="data")
    return destination


class ProteinComplexDataModule(L.LightningDataModule):
    """Train/val/test complexes of ``data_dir`` (the shipped sample by default; a list of folders
    pools their complexes, e.g. MaSIF's and Docking Benchmark 5.5's ``bound/``), split by PDB ID.

    With ``train_list``/``test_list`` (MaSIF ``*_ppi.txt`` files, paths relative to ``data_dir`` or
    absolute) those lists define the splits, and ``val_fraction`` of the training IDs validate.
    With ``cache_dir`` and ``surface_model`` (a DMaSIF with the training model's surface settings)
    the surfaces and fixed features come from a :class:`~gdl.data.protein_cache.ProteinCache` in
    ``cache_dir``; otherwise the task samples them at every step. ``hydrogens=False`` reads every
    file without its H and D atoms (the model's setting: ``DMaSIF(hydrogens=...)``).
    """

    def __init__(
        self,
        data_dir: str | list[str] | None = None,
        batch_size: int = 2,
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        train_list: str | None = None,
        test_list: str | None = None,
        num_workers: int = 0,
        unknown_elements: str = "warn",
        cache_dir: str | None = None,
        surface_model=None,
        hydrogens: bool = True,
    ):
        super().__init__()
        if (cache_dir is None) != (surface_model is None):
            raise ValueError("give both cache_dir and surface_model (cached surfaces), or neither (surfaces on the fly)")
        self.cache_dir, self.surface_model = cache_dir, surface_model
        self.cache: ProteinCache | None = None  # built in setup(), from surface_model's settings
        folders = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir or [SAMPLE_DIR])
        self.data_dirs = [Path(folder) for folder in folders]
        for folder in self.data_dirs:
            if not folder.is_dir():
                raise FileNotFoundError(f"data_dir not found: {folder}")
        self.data_dir = self.data_dirs[0]  # list files (train_list, test_list) are relative to it
        self.hydrogens = bool(hydrogens)
        self.batch_size = int(batch_size)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.train_list, self.test_list = train_list, test_list
        self.num_workers = int(num_workers)
        self.unknown_elements = unknown_elements
        self.splits: dict[str, list[Complex]] = {}

    def _list_path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.data_dir / path

    def setup(self, stage: str | None = None):
        if self.cache_dir and self.cache is None:
            self.cache = ProteinCache(
                self.cache_dir, self.surface_model, unknown_elements=self.unknown_elements, shipped=[SAMPLE_CACHE_DIR],
                hydrogens=self.hydrogens,
            )
        if self.splits:
            return
        if self.train_list or self.test_list:
            if not (self.train_list and self.test_list):
                raise ValueError("give both train_list and test_list, or neither")
            if len(self.data_dirs) > 1:
                raise ValueError("train_list and test_list need a single data_dir")
            train_all = complexes_from_list(self.data_dir, self._list_path(self.train_list))
            test = complexes_from_list(self.data_dir, self._list_path(self.test_list))
            train, val, _ = split_by_pdb_id(train_all, self.val_fraction, 0.0)
        else:
            train, val, test = split_by_pdb_id(pooled_complexes(self.data_dirs), self.val_fraction, self.test_fraction)
        self.splits = {"train": train, "val": val, "test": test}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = ProteinComplexes(self.splits[split], self.unknown_elements, self.cache, self.hydrogens)
        follow = ["atoms_1", "atoms_2"] + (["points_1", "points_2"] if self.cache else [])
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers, follow_batch=follow
        )

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
