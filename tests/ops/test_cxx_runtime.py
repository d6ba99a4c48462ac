"""Making the C++ runtime global before pykeops loads (the fix for KeOps' CUDA JIT crash).

Each check runs in a fresh Python process, whose global symbol scope this test process cannot spoil.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYMBOL = "_ZNSt8ios_base4InitC1Ev"  # std::ios_base::Init::Init(), exported by every libstdc++

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dlopen scopes are Linux-specific")


def run_fresh(code: str, env_extra: dict | None = None) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object, returned here."""
    prelude = (
        "import ctypes, json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        f"def visible():\n    return hasattr(ctypes.CDLL(None), {SYMBOL!r})\n"
    )
    env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def bare_interpreter_lacks_runtime() -> bool:
    return not run_fresh("print(json.dumps({'visible': visible()}))")["visible"]


def test_importing_gdl_loads_the_runtime_when_it_is_missing():
    if not bare_interpreter_lacks_runtime():
        pytest.skip("this Python links the C++ runtime itself: nothing to load")
    result = run_fresh(
        "import torch\n"
        "with_torch = visible()\n"
        "from gdl.ops.core import backend\n"
        "after_import = visible()\n"
        "reported = backend.cxx_runtime_in_global_scope()\n"
        "again = backend.ensure_cxx_runtime_global()\n"
        "print(json.dumps(dict(with_torch=with_torch, after_import=after_import, reported=reported, again=again)))\n"
    )
    # torch loads libstdc++ privately: its symbols are not global until gdl makes them so, once
    assert result == {"with_torch": False, "after_import": True, "reported": True, "again": False}


def test_no_op_when_the_runtime_is_already_global():
    result = run_fresh(
        "before = visible()\n"
        "from gdl.ops.core import backend\n"
        "loaded = backend.ensure_cxx_runtime_global()\n"
        "print(json.dumps(dict(before=before, loaded=loaded, after=visible())))\n",
        {"LD_PRELOAD": "libstdc++.so.6"},
    )
    assert result == {"before": True, "loaded": False, "after": True}


def test_import_pykeops_makes_the_runtime_global_first():
    if not bare_interpreter_lacks_runtime():
        pytest.skip("this Python links the C++ runtime itself: nothing to load")
    result = run_fresh(
        "import builtins\n"
        "from gdl.ops.core import backend\n"
        "seen = {}\n"
        "real_import = builtins.__import__\n"
        "def spy(name, *args, **kwargs):\n"
        "    if name.startswith('pykeops') and 'runtime' not in seen:\n"
        "        seen['runtime'] = visible()\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = spy\n"
        "module = backend.import_pykeops()\n"
        "builtins.__import__ = real_import\n"
        "print(json.dumps(dict(at_import=seen.get('runtime'), name=module.__name__, after=visible())))\n"
    )
    assert result == {"at_import": True, "name": "pykeops.torch", "after": True}


def test_does_nothing_off_linux():
    if not bare_interpreter_lacks_runtime():
        pytest.skip("this Python links the C++ runtime itself: nothing to observe")
    result = run_fresh(
        "import torch\n"
        "sys.platform = 'darwin'\n"
        "from gdl.ops.core import backend\n"
        "loaded = backend.ensure_cxx_runtime_global()\n"
        "result = dict(visible=visible(), loaded=loaded)\n"
        "sys.platform = 'linux'\n"
        "print(json.dumps(result))\n"
    )
    assert result == {"visible": False, "loaded": False}
