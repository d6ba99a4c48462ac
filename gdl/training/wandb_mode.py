"""Weights & Biases runs offline unless the user has configured W&B.

Configured means: ``WANDB_MODE`` is set (respected as is), or an API key is available from
``WANDB_API_KEY`` or from ``wandb login`` (the ``api.wandb.ai`` entry of ``~/.netrc`` or
``$NETRC``). Offline runs are written under the run folder and uploaded later with ``wandb sync``.
W&B's console banner is silenced (``WANDB_SILENT``, unless the user set it): ``train.py`` prints the
run's folder or address and the upload command itself.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        hosts = netrc.netrc(path).hosts
    except (netrc.NetrcParseError, OSError):
        return False
    base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = base_url.split("://")[-1].split("/")[0].split(":")[0]
    return host in hosts


def choose_wandb_mode() -> str:
    """Set ``WANDB_MODE`` to ``offline`` unless W&B is configured; return the mode in force."""
    os.environ.setdefault("WANDB_SILENT", "true")
    if not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "online" if _logged_in() else "offline"
    return os.environ["WANDB_MODE"]
