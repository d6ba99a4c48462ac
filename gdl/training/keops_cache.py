"""One KeOps build folder per process of a distributed run.

KeOps compiles each new formula on its first call, from inside whatever forward pass needs it, and
writes sources, shared libraries and an index into its cache folder; two processes compiling into
the same folder at once can leave it corrupt. A lock would have to wrap every KeOps call site (ours,
other operators', plugins'). Giving each process its own folder needs no cooperation from that code:
the cost is one compile per process and formula, the first time only, since the folder names are
stable (``<base>/<host>-rank<local rank>``) and reused by later runs.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BASE_VARIABLE = "GDL_KEOPS_CACHE_BASE"


def _default_base() -> Path:
    try:
        keops_version = version("keopscore")
    except PackageNotFoundError:
        keops_version = ""
    return Path.home() / ".cache" / f"keops{keops_version}"


def local_rank() -> int:
    """The rank of this process on its machine (Lightning's ``LOCAL_RANK``, or SLURM's)."""
    for variable in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def isolate_keops_cache(distributed: bool) -> Path:
    """Point ``KEOPS_CACHE_FOLDER`` at this process's own folder when ``distributed``; return the folder in use.

    A single-process run keeps the user's folder. In a distributed run the base folder is the user's ``KEOPS_CACHE_FOLDER`` (or KeOps' default); it is kept in
    ``GDL_KEOPS_CACHE_BASE`` so that processes started by this one derive their folder from the
    same base. Must run before ``pykeops`` is imported, which reads the variable once.
    """
    if not distributed:
        return Path(os.environ.get("KEOPS_CACHE_FOLDER") or _default_base())
    base = os.environ.get(BASE_VARIABLE) or os.environ.get("KEOPS_CACHE_FOLDER") or str(_default_base())
    os.environ[BASE_VARIABLE] = base
    folder = Path(base) / f"{socket.gethostname()}-rank{local_rank()}"
    folder.mkdir(parents=True, exist_ok=True)
    if "keopscore" in sys.modules and os.environ.get("KEOPS_CACHE_FOLDER") != str(folder):
        warnings.warn(f"KeOps was imported before its cache folder was set to {folder}; it keeps its previous folder")
    os.environ["KEOPS_CACHE_FOLDER"] = str(folder)
    return folder
