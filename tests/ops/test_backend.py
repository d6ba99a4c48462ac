"""KeOps probing: cached verdicts, forced backends and a crashing probe."""

import subprocess
import sys
import warnings

import pytest
import torch

import gdl.ops
from gdl.ops.core import backend


@pytest.fixture
def fresh_probe(tmp_path, monkeypatch):
    """No verdict in memory, an empty on-disk cache, and a counter of probe subprocesses."""
    monkeypatch.setenv("GDL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GDL_KEOPS", raising=False)
    monkeypatch.setattr(backend, "_verdicts", {})
    monkeypatch.setattr(backend, "_warned_fallback", set())
    calls = []
    real_probe = backend._run_probe

    def counting_probe(device):
        calls.append(device)
        return real_probe(device)

    monkeypatch.setattr(backend, "_run_probe", counting_probe)
    return calls


def test_verdict_is_cached_in_memory_and_on_disk(fresh_probe, monkeypatch):
    first = backend.keops_status("cpu")
    assert backend.keops_status("cpu") == first
    assert len(fresh_probe) == 1
    monkeypatch.setattr(backend, "_verdicts", {})  # a new process: only the disk cache remains
    assert backend.keops_status("cpu") == first
    assert len(fresh_probe) == 1
    assert first == (True, "ok")


def test_gdl_keops_0_forces_torch(monkeypatch):
    monkeypatch.setenv("GDL_KEOPS", "0")
    monkeypatch.setattr(backend, "_warned_fallback", set())
    assert backend.keops_status("cpu") == (False, "GDL_KEOPS=0")
    op = gdl.ops.get("kernel_conv", sigma=0.5)
    with pytest.warns(RuntimeWarning, match="GDL_KEOPS=0"):
        assert op.backend_for(torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="backend='keops' was requested"):
        gdl.ops.get("kernel_conv", backend="keops").backend_for(torch.device("cpu"))


def test_crashing_probe_warns_once_and_falls_back_to_torch(fresh_probe, monkeypatch, generator):
    monkeypatch.setattr(backend, "_PROBE_SCRIPT", "import os\nos.abort()\n")
    x = torch.rand(20, 3, generator=generator, dtype=torch.float64)
    b = torch.rand(20, 1, generator=generator, dtype=torch.float64)
    op = gdl.ops.get("kernel_conv", sigma=0.5, backend="auto")
    with pytest.warns(RuntimeWarning, match="KeOps does not work on cpu.*signal 6.*using the torch backend"):
        a = op(x, x, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = op(x, x, b)
    torch.testing.assert_close(a, torch.exp(-torch.cdist(x, x) ** 2 / 0.5) @ b)
    torch.testing.assert_close(again, a)
    assert len(fresh_probe) == 1
    with pytest.raises(RuntimeError, match="backend='keops' was requested on cpu.*KeOps probe failed"):
        gdl.ops.get("kernel_conv", sigma=0.5, backend="keops")(x, x, b)


def test_cxx_runtime_is_global_before_pykeops_is_imported():
    script = (
        "import sys, gdl.ops; from gdl.ops.core.backend import cxx_runtime_in_global_scope; "
        "assert cxx_runtime_in_global_scope(); print('pykeops' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
