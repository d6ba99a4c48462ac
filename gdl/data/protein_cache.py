"""An on-disk cache of preprocessed proteins: atoms, surface points, normals and fixed features.

Sampling a protein surface and its curvatures costs far more than a training step of the learned
layers, and none of it changes between epochs. :class:`ProteinCache` computes it once per PDB file
with a model's :meth:`~gdl.models.dmasif.DMaSIF.surface` and stores it in ``folder`` under a key
made of the file's SHA-256 and every setting that changes the result (the model's
``surface_settings()``, the random seed of the sampling, a format version). A changed file or
setting is a new key; an entry that cannot be read or fails its checks is computed again and
overwritten (writes go through a temporary file and an atomic rename). Read-only ``shipped``
folders (the entries of the sample proteins that come with gdl) are looked up after ``folder``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from gdl.data.pdb import read_pdb

FORMAT_VERSION = 1
FIELDS = ("atoms", "types", "residue_properties", "points", "normals", "features")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ProteinCache:
    """Preprocessed proteins in ``folder``, computed by ``model.surface`` (a DMaSIF).

    ``get(path)`` returns a dict of CPU tensors in the file's coordinates: ``atoms`` (M, 3),
    ``types`` (M, 6), ``residue_properties`` (M, 2), ``points`` (N, 3), ``normals`` (N, 3),
    ``features`` (N, F). The sampling of each file is seeded by ``seed`` and the file's hash, so a
    rebuilt entry is the same surface. An entry missing from ``folder`` is read from the first of the
    read-only ``shipped`` folders that holds it; new entries are always written to ``folder``.
    The files are read with or without their H and D atoms as ``model.hydrogens`` says (``hydrogens``
    overrides it); without them is a setting of the key.
    """

    def __init__(self, folder, model, seed: int = 0, unknown_elements: str = "warn", shipped=(), hydrogens: bool | None = None):
        self.folder = Path(folder)
        self.shipped = [Path(f) for f in shipped]
        self.model = model
        self.seed = int(seed)
        self.unknown_elements = unknown_elements
        self.hydrogens = model.hydrogens if hydrogens is None else bool(hydrogens)
        self.settings = {**model.surface_settings(), "seed": self.seed, "format": FORMAT_VERSION}
        if not self.hydrogens:  # only then, so that the entries read with hydrogens keep their keys
            self.settings["hydrogens"] = False

    def key(self, path) -> str:
        text = json.dumps({"file": file_sha256(path), **self.settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def entry_path(self, path) -> Path:
        return self.folder / f"{Path(path).name.split('.')[0]}-{self.key(path)}.pt"

    def get(self, path) -> dict[str, torch.Tensor]:
        entry = self.entry_path(path)
        for found in [entry, *(folder / entry.name for folder in self.shipped)]:
            if found.exists():
                try:
                    return self._load(found)
                except Exception as error:  # noqa: BLE001 - any unreadable entry is rebuilt
                    warnings.warn(f"protein cache entry {found} is unreadable ({error}); computing it again", stacklevel=2)
                    break
        data = self.compute(path)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(handle)
        try:
            torch.save({**data, "settings": json.dumps(self.settings, sort_keys=True)}, tmp)
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return data

    def compute(self, path) -> dict[str, torch.Tensor]:
        """Read ``path`` and compute its surface and fixed features (no cache involved)."""
        atoms = read_pdb(path, unknown=self.unknown_elements, hydrogens=self.hydrogens)
        properties = atoms.residue_properties()
        seed = int(file_sha256(path)[:8], 16) ^ self.seed
        generator = torch.Generator().manual_seed(seed)
        surface = self.model.surface(atoms.coords, atoms.types, None, properties, generator=generator)
        return {
            "atoms": atoms.coords,
            "types": atoms.types,
            "residue_properties": properties,
            "points": surface.points.cpu(),
            "normals": surface.normals.cpu(),
            "features": surface.features.cpu(),
        }

    def _load(self, entry: Path) -> dict[str, torch.Tensor]:
        data = torch.load(entry, map_location="cpu", weights_only=True)
        if data.get("settings") != json.dumps(self.settings, sort_keys=True):
            raise ValueError("settings differ from the key")
        missing = [f for f in FIELDS if not isinstance(data.get(f), torch.Tensor)]
        if missing:
            raise ValueError(f"missing fields {missing}")
        m, n = len(data["atoms"]), len(data["points"])
        shapes = {"types": (m, 6), "residue_properties": (m, 2), "normals": (n, 3)}
        for name, shape in shapes.items():
            if tuple(data[name].shape) != shape:
                raise ValueError(f"{name} has shape {tuple(data[name].shape)}, expected {shape}")
        if data["features"].shape[0] != n or not all(torch.isfinite(data[f]).all() for f in FIELDS):
            raise ValueError("features do not match the points, or values are not finite")
        return {f: data[f] for f in FIELDS}


def main(argv=None) -> None:
    """Fill a cache folder with the entries of some PDB files, at a pretrained model's settings."""
    import argparse

    from gdl.models.dmasif import DMaSIF

    parser = argparse.ArgumentParser(
        prog="python -m gdl.data.protein_cache",
        description="Preprocess PDB files into a protein cache folder (the shipped sample cache: "
        "python -m gdl.data.protein_cache gdl/samples/proteins/*.pdb.gz --cache-dir gdl/samples/proteins/cache)",
    )
    parser.add_argument("files", nargs="+", help="PDB files (.pdb or .pdb.gz)")
    parser.add_argument("--cache-dir", required=True, help="folder the entries are written to")
    parser.add_argument("--model", default="site", help="surface settings of this pretrained model: site, search or a file")
    args = parser.parse_args(argv)
    cache = ProteinCache(args.cache_dir, DMaSIF.from_pretrained(args.model))
    for path in args.files:
        data = cache.get(path)
        print(f"{cache.entry_path(path)}: {len(data['atoms'])} atoms, {len(data['points'])} surface points", flush=True)


if __name__ == "__main__":
    main()
