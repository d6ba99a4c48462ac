"""Choosing between the KeOps and torch backends, and making KeOps safe to use.

KeOps compiles C++/CUDA code on first use and can crash the whole process (a segfault is not an
exception). Before gdl uses it on a device, a short KeOps reduction runs in a subprocess; its
verdict is cached in memory and on disk (``~/.cache/gdl``, keyed by versions and device), so the
probe runs once per machine and stack.

On stacks where Python does not link the C++ runtime itself (torch loads it privately), pykeops'
CUDA JIT crashes on its first reduction; loading ``libstdc++`` into the global symbol scope before
pykeops is imported fixes it. :func:`import_pykeops` does that once, only when the runtime is
missing from the global scope, when this module is imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from gdl.ops.core.keops_build import import_pykeops_safely

BACKENDS = ("auto", "keops", "torch")

_verdicts: dict[str, tuple[bool, str]] = {}
_warned_fallback: set[str] = set()

# A symbol every libstdc++ exports: present in the global scope iff the runtime is loaded there.
_CXX_RUNTIME_SYMBOL = "_ZNSt8ios_base4InitC1Ev"


def cxx_runtime_in_global_scope() -> bool:
    """Whether the C++ standard library's symbols are visible to later ``dlopen`` calls."""
    try:
        return hasattr(ctypes.CDLL(None), _CXX_RUNTIME_SYMBOL)
    except OSError:
        return True  # no dlopen-style loader (not Linux): nothing to fix


def ensure_cxx_runtime_global() -> bool:
    """Load ``libstdc++`` with ``RTLD_GLOBAL`` when it is not yet global. Returns True if loaded."""
    if not sys.platform.startswith("linux") or cxx_runtime_in_global_scope():
        return False
    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


# Before any operator module (or a library such as GeomLoss) imports pykeops.
ensure_cxx_runtime_global()


_KEOPS_NO_CUDA = "CUDA libraries not found or could not be loaded"


def import_pykeops():
    """Import ``pykeops.torch`` after making the C++ runtime global, with its formula builds made
    safe for concurrent processes (:mod:`gdl.ops.core.keops_build`); returns the module. On a machine
    without CUDA, KeOps' note that it found no CUDA libraries is dropped: the CPU is the only choice."""
    if "pykeops" in sys.modules:
        return import_pykeops_safely()
    ensure_cxx_runtime_global()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return import_pykeops_safely()
    finally:
        lines = printed.getvalue().splitlines(keepends=True)
        drop = not torch.cuda.is_available()
        sys.stdout.write("".join(line for line in lines if line.strip() and not (drop and _KEOPS_NO_CUDA in line)))
        sys.stdout.flush()


def device_key(device: torch.device | str) -> str:
    """``cpu`` or ``cuda:<name>``: the granularity at which KeOps either works or does not."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{torch.cuda.get_device_name(index)}"
    return device.type


_PROBE_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {gdl_parent!r})
from gdl.ops.core.backend import import_pykeops
LazyTensor = import_pykeops().LazyTensor
device = torch.device({device!r})
x = torch.randn(200, 3, device=device)
y = torch.randn(300, 3, device=device)
b = torch.randn(300, 2, device=device)
K = (-((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)).exp()
a = K @ b
dense = torch.exp(-torch.cdist(x, y) ** 2) @ b
error = (a - dense).abs().max().item()
assert error < 1e-3 * (1 + dense.abs().max().item()), f"KeOps result off by {{error}}"
print("KEOPS_OK")
"""


def _cache_file(key: str) -> Path:
    try:
        keops_version = version("pykeops")  # read without importing pykeops
    except PackageNotFoundError:
        keops_version = "missing"
    stack = f"{sys.executable}|{torch.__version__}|{keops_version}|{key}"
    digest = hashlib.sha1(stack.encode()).hexdigest()[:16]
    root = Path(os.environ.get("GDL_CACHE_DIR", Path.home() / ".cache" / "gdl"))
    return root / f"keops_probe_{digest}.json"


def _run_probe(device: torch.device) -> tuple[bool, str]:
    gdl_parent = str(Path(__file__).resolve().parents[3])
    script = _PROBE_SCRIPT.format(gdl_parent=gdl_parent, device=str(device))
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        return False, "the KeOps probe timed out after 900 s"
    if done.returncode == 0 and "KEOPS_OK" in done.stdout:
        return True, "ok"
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    how = f"exit code {done.returncode}" if done.returncode > 0 else f"signal {-done.returncode}"
    return False, f"the KeOps probe failed ({how}): {' | '.join(tail)}"


def keops_status(device: torch.device | str) -> tuple[bool, str]:
    """(works, reason) for KeOps on ``device``; probed in a subprocess once, then cached.

    ``GDL_KEOPS=0`` forces the torch backend everywhere; ``GDL_KEOPS=1`` trusts KeOps unprobed.
    """
    forced = os.environ.get("GDL_KEOPS")
    if forced in ("0", "1"):
        return forced == "1", f"GDL_KEOPS={forced}"
    device = torch.device(device)
    key = device_key(device)
    if key in _verdicts:
        return _verdicts[key]
    cache = _cache_file(key)
    verdict = None
    if cache.exists():
        try:
            stored = json.loads(cache.read_text())
            verdict = (bool(stored["works"]), str(stored["reason"]))
        except (ValueError, KeyError):
            verdict = None
    if verdict is None:
        verdict = _run_probe(device)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"works": verdict[0], "reason": verdict[1], "device": key}))
        except OSError:
            pass
    _verdicts[key] = verdict
    return verdict


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Turn ``"auto" | "keops" | "torch"`` into the backend actually used on ``device``."""
    if backend == "torch":
        return "torch"
    works, reason = keops_status(device)
    if backend == "keops":
        if not works:
            raise RuntimeError(f"backend='keops' was requested on {device}, but {reason}")
        return "keops"
    if not works:
        key = device_key(device)
        if key not in _warned_fallback:
            _warned_fallback.add(key)
            warnings.warn(
                f"gdl.ops: KeOps does not work on {key} ({reason}); using the torch backend",
                RuntimeWarning,
                stacklevel=3,
            )
        return "torch"
    return "keops"


def check_backend_name(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend
