"""What a run prints and logs: library noise dropped at the source, W&B offline unless configured.

Kept: what explains a pause (KeOps compiling a formula), what says why training stopped, warnings
about the user's own data or settings. Dropped, one by one (:func:`quiet_libraries`):

- Lightning lines that state the obvious or advertise: "GPU available: False", "TPU available: False",
  the litlogger tip, "Seed set to" (the seed is in the run's config), "Restoring states from",
  "Restored all states from" and "Loaded model weights from" a checkpoint (``train.py`` names the
  checkpoint it resumes from or tests);
- library warnings that the user cannot act on: torch's ``LeafSpec`` deprecation through Lightning,
  and Lightning's advice to rebuild the callbacks a checkpoint was made with (``eval.py`` builds the
  experiment's own);
- W&B's console banner (:func:`choose_wandb_mode`) and its anonymous-setting warning
  (:class:`WandbLogger`).

Weights & Biases runs offline unless the user has configured W&B (:func:`choose_wandb_mode`):
``WANDB_MODE`` is set (respected as is), or an API key is available from ``WANDB_API_KEY`` or from
``wandb login`` (the ``api.wandb.ai`` entry of ``~/.netrc`` or ``$NETRC``). Offline runs are written
under the run folder and uploaded later with ``wandb sync``; ``train.py`` prints the run's folder or
address and the upload command itself.

Dropped elsewhere: KeOps' "CUDA libraries not found" on a machine without CUDA, where gdl imports
KeOps; Lightning's duplicate of every line through Hydra's root console handler, in
``configs/hydra/default.yaml``.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import warnings
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

_LIGHTNING_NOISE = re.compile(
    r"^(GPU available: False|TPU available: False|💡 Tip: .*litlogger|Seed set to |Loaded model weights from the checkpoint|Restoring states from the checkpoint path|Restored all states from the checkpoint)"
)
_LIBRARY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    # eval.py and resumed runs build their callbacks from the config, not from the checkpoint's
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided",
)


class _DropLightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _LIGHTNING_NOISE.match(record.getMessage())


def quiet_libraries() -> None:
    """Install the filters (idempotent); call once, before Lightning starts a run."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(existing, _DropLightningNoise) for existing in handler.filters):
                handler.addFilter(_DropLightningNoise())
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if not any(isinstance(existing, _DropLightningNoise) for existing in handler.filters):
                handler.addFilter(_DropLightningNoise())
    for message in _LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


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
    """Set ``WANDB_MODE`` to ``offline`` unless W&B is configured, silence W&B's banner (``WANDB_SILENT``,
    unless the user set it); return the mode in force."""
    os.environ.setdefault("WANDB_SILENT", "true")
    if not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "online" if _logged_in() else "offline"
    return os.environ["WANDB_MODE"]


class WandbLogger(LightningWandbLogger):
    """:class:`lightning.pytorch.loggers.WandbLogger` (same arguments and behaviour) without the W&B
    warning it causes on every run.

    Lightning 2.6 always passes ``anonymous=None`` to ``wandb.init``; W&B 0.2x/0.3x warns that "the
    anonymous setting has no effect" whenever the key is present. This logger leaves the key out
    unless the user asked for anonymous logging.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
