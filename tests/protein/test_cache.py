"""The preprocessing cache: computed once, keyed by file content and settings, corrupt entries rebuilt."""

import shutil
import warnings

import pytest
import torch

import gdl.ops
from gdl.data.protein_cache import ProteinCache
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import DMaSIF

pytestmark = pytest.mark.skipif("grid_subsample" not in gdl.ops.available(), reason="needs grid_subsample")
SMALL = dict(resolution=1.5, points_per_atom=10, curvature_scales=[])


def test_cache_reuses_rebuilds_and_keys_on_file_and_settings(tmp_path, monkeypatch):
    pdb = tmp_path / "3EYD_D.pdb.gz"
    shutil.copy(SAMPLE_DIR / "3EYD_D.pdb.gz", pdb)
    cache = ProteinCache(tmp_path / "cache", DMaSIF(**SMALL))
    first = cache.get(pdb)
    assert first["points"].shape[1] == 3 and first["features"].shape == (len(first["points"]), 16)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    computed = []
    original = ProteinCache.compute
    monkeypatch.setattr(ProteinCache, "compute", lambda self, path: computed.append(path) or original(self, path))
    again = cache.get(pdb)  # read back, not computed
    assert computed == [] and all(torch.equal(first[k], again[k]) for k in first)

    entry = cache.entry_path(pdb)
    entry.write_bytes(entry.read_bytes()[:100])  # a truncated entry is rebuilt, with a warning
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = cache.get(pdb)
    assert computed == [pdb] and torch.equal(rebuilt["points"], first["points"])  # same seed, same surface
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get(pdb)

    other_setting = ProteinCache(tmp_path / "cache", DMaSIF(**{**SMALL, "resolution": 2.0}))
    assert other_setting.entry_path(pdb) != entry
    other_seed = ProteinCache(tmp_path / "cache", DMaSIF(**SMALL), seed=1)
    assert other_seed.entry_path(pdb) != entry
    shutil.copy(SAMPLE_DIR / "3E2U_E.pdb.gz", pdb)  # new content, same name
    assert cache.entry_path(pdb) != entry
