"""The preprocessing cache: computed once, keyed by file content and settings, corrupt entries rebuilt."""

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import gdl.ops
from gdl.data.protein_cache import ProteinCache
from gdl.data.proteins import SAMPLE_CACHE_DIR, SAMPLE_DIR, ProteinComplexes
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
    without_hydrogens = ProteinCache(tmp_path / "cache", DMaSIF(**SMALL), hydrogens=False)
    assert without_hydrogens.entry_path(pdb) != entry
    with pytest.raises(ValueError, match="hydrogens"):
        ProteinComplexes([], cache=without_hydrogens)
    shutil.copy(SAMPLE_DIR / "3E2U_E.pdb.gz", pdb)  # new content, same name
    assert cache.entry_path(pdb) != entry


def test_shipped_entries_are_read_and_new_ones_written_to_the_cache_folder(tmp_path, monkeypatch):
    pdb = tmp_path / "3EYD_D.pdb.gz"
    shutil.copy(SAMPLE_DIR / "3EYD_D.pdb.gz", pdb)
    shipped = tmp_path / "shipped"
    ProteinCache(shipped, DMaSIF(**SMALL)).get(pdb)
    before = {f.name for f in shipped.iterdir()}

    computed = []
    original = ProteinCache.compute
    monkeypatch.setattr(ProteinCache, "compute", lambda self, path: computed.append(path) or original(self, path))
    cache = ProteinCache(tmp_path / "cache", DMaSIF(**SMALL), shipped=[tmp_path / "absent", shipped])
    cache.get(pdb)
    assert computed == [] and not (tmp_path / "cache").exists()  # read from the shipped folder

    (shipped / cache.entry_path(pdb).name).write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        cache.get(pdb)
    assert computed == [pdb] and cache.entry_path(pdb).exists()  # rebuilt into the cache folder
    assert {f.name for f in shipped.iterdir()} == before  # the shipped folder is never written

    other = ProteinCache(tmp_path / "other", DMaSIF(**{**SMALL, "resolution": 2.0}), shipped=[shipped])
    other.get(pdb)  # other settings: the shipped entry does not apply
    assert computed == [pdb, pdb]


def test_shipped_sample_cache_is_what_the_default_model_computes():
    """The main job reads the sample proteins from gdl/samples/proteins/cache: every sample file has
    an entry at the settings of configs/model/dmasif.yaml, and it is the library's own result.
    After a change of those settings: python -m gdl.data.protein_cache --help."""
    model = instantiate(OmegaConf.load(Path(__file__).parents[2] / "configs" / "model" / "dmasif.yaml"))
    cache = ProteinCache(SAMPLE_CACHE_DIR, model)
    files = sorted(SAMPLE_DIR.glob("*.pdb.gz"))
    stale = [f.name for f in files if not cache.entry_path(f).exists()]
    assert not stale, f"no shipped cache entry at the default settings for {stale}: rebuild the sample cache"
    assert len(list(SAMPLE_CACHE_DIR.glob("*.pt"))) == len(files)  # no entries of other settings left behind
    smallest = min(files, key=lambda f: f.stat().st_size)
    shipped, computed = cache.get(smallest), cache.compute(smallest)
    for name in shipped:
        torch.testing.assert_close(shipped[name], computed[name], rtol=1e-5, atol=1e-5)
