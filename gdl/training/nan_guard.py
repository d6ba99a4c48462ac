"""Stopping at the first non-finite training loss, before it reaches the weights."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback

from gdl.training.last_checkpoint import LastCheckpoint


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(Callback):
    """Raise :class:`NonFiniteLossError` when the loss about to be back-propagated is NaN or Inf.

    The check runs before the backward pass and the optimizer step, so the weights stay those of the
    last good step and checkpoints already written (``last.ckpt``) are never overwritten with NaNs.
    """

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if torch.isfinite(loss.detach()).all():
            return
        message = f"training loss is {loss.detach().flatten()[0].item()} at epoch {trainer.current_epoch}, step {trainer.global_step}; training stopped"
        saved = [Path(cb.path) for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint) and cb.path]
        saved = [path for path in saved if path.is_file()]
        message += f"; last good checkpoint: {saved[0]}" if saved else "; no checkpoint was saved before it"
        raise NonFiniteLossError(message)
