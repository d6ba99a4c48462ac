"""Library output that a training run's reader does not need, dropped at the source.

Kept: what explains a pause (KeOps compiling a formula), what says why training stopped, warnings
about the user's own data or settings. Dropped, one by one:

- Lightning lines that state the obvious or advertise: "GPU available: False", "TPU available: False",
  the litlogger tip, "Seed set to" (the seed is in the run's config), "Restoring states from",
  "Restored all states from" and "Loaded model weights from" a checkpoint (``train.py`` names the
  checkpoint it resumes from or tests);
- library warnings that the user cannot act on: torch's ``LeafSpec`` deprecation through Lightning,
  and Lightning's advice to rebuild the callbacks a checkpoint was made with (``eval.py`` builds the
  experiment's own);

KeOps' "CUDA libraries not found" on a machine without CUDA is dropped where gdl imports KeOps
(``gdl.ops.core.backend.import_pykeops``); W&B's own banner is silenced by ``wandb_mode`` and its anonymous-setting warning by
``wandb_logger``; Lightning's duplicate of every line through Hydra's root console handler by
``configs/hydra/default.yaml``.
"""

from __future__ import annotations

import logging
import re
import warnings

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
