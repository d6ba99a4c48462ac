"""The git commit a run was started from, so that every logged run can be reproduced."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder) -> dict[str, str | bool | None]:
    """``{"commit": sha or None, "dirty": bool or None}`` for the repository holding ``folder``.

    ``dirty`` is True when tracked files differ from the commit, so the commit alone does not
    reproduce the run.
    """
    folder = Path(folder)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes) if changes is not None else None}
