"""Lightning's ``WandbLogger`` without the W&B warning it causes on every run.

Lightning 2.6 always passes ``anonymous=None`` to ``wandb.init``; W&B 0.2x/0.3x warns that "the
anonymous setting has no effect" whenever the key is present. This logger leaves the key out unless
the user asked for anonymous logging.
"""

from __future__ import annotations

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Same arguments and behaviour as :class:`lightning.pytorch.loggers.WandbLogger`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
