"""KeOps builds shared by concurrent processes, and broken cached builds rebuilt on next use."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gdl.ops.core.keops_build import elf_complete

REPO = Path(__file__).resolve().parents[2]

# Two formulas, float64, compiled from scratch in an empty cache folder by every worker.
WORKER = r"""
import sys
import numpy as np
import torch
from gdl.ops.core.backend import import_pykeops

LazyTensor = import_pykeops().LazyTensor
g = torch.Generator().manual_seed(0)
x = torch.randn(300, 3, generator=g, dtype=torch.float64)
y = torch.randn(400, 3, generator=g, dtype=torch.float64)
b = torch.randn(400, 2, generator=g, dtype=torch.float64)
x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
smooth = (-0.37 * ((x_i - y_j) ** 2).sum(-1)).exp() @ b
nearest = ((x_i - y_j) ** 2).sum(-1).argKmin(4, dim=1)
np.savez(sys.argv[1], smooth=smooth.numpy(), nearest=nearest.numpy())
"""


def _start(cache: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, KEOPS_CACHE_FOLDER=str(cache), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen) -> str:
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return err


def _reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    y = torch.randn(400, 3, generator=g, dtype=torch.float64)
    b = torch.randn(400, 2, generator=g, dtype=torch.float64)
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return (torch.exp(-0.37 * d2) @ b).numpy(), d2.argsort(dim=1)[:, :4].numpy()


def _modules(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*/pykeops_cpp_*.so"))


@pytest.fixture(scope="module")
def concurrent_build(tmp_path_factory):
    """Three processes started at once on an empty cache folder, each building the same formulas."""
    root = tmp_path_factory.mktemp("keops_concurrent")
    cache = root / "cache"
    outs = [root / f"worker{i}.npz" for i in range(3)]
    processes = [_start(cache, out) for out in outs]
    for process in processes:
        _finish(process)
    return cache, [np.load(out) for out in outs]


@pytest.mark.slow
def test_concurrent_processes_build_once_and_agree(concurrent_build):
    cache, results = concurrent_build
    smooth, nearest = _reference()
    for result in results:
        np.testing.assert_array_equal(result["smooth"], results[0]["smooth"])
        np.testing.assert_array_equal(result["nearest"], results[0]["nearest"])
    np.testing.assert_allclose(results[0]["smooth"], smooth, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(results[0]["nearest"], nearest)
    modules = _modules(cache)
    assert len(modules) == 2 and all(elf_complete(m) for m in modules)
    assert not list(cache.glob("*/*.partial"))


@pytest.mark.slow
def test_truncated_cached_builds_are_rebuilt(concurrent_build, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(concurrent_build[0], cache)
    first, second = _modules(cache)
    first.write_bytes(b"")  # a build killed before the linker wrote anything
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])  # killed half-way
    tag = second.name.split(".")[0].removeprefix("pykeops_cpp_")
    next(cache.glob(f"*/{tag}.nfo")).unlink()  # the formula's description never written
    pickle_file = next(cache.glob("*/LoadKeOps_cpp_class_cache.pkl"))
    pickle_file.write_bytes(pickle_file.read_bytes()[:10])
    err = _finish(_start(cache, tmp_path / "again.npz"))
    assert "rebuilding" in err and "unreadable KeOps cache file" in err
    again = np.load(tmp_path / "again.npz")
    smooth, nearest = _reference()
    np.testing.assert_allclose(again["smooth"], smooth, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(again["nearest"], nearest)
    assert all(elf_complete(m) for m in _modules(cache)) and len(_modules(cache)) == 2
    # and the rebuilt cache now serves a fresh process without any rebuild
    err = _finish(_start(cache, tmp_path / "third.npz"))
    assert "rebuilding" not in err


@pytest.mark.slow
def test_elf_completeness_check(concurrent_build, tmp_path):
    module = _modules(concurrent_build[0])[0]
    assert elf_complete(module)
    data = module.read_bytes()
    for size in (0, 10, 64, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{size}.so"
        cut.write_bytes(data[:size])
        assert not elf_complete(cut), size
    assert not elf_complete(tmp_path / "missing.so")
