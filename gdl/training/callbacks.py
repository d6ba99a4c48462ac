"""The Lightning callbacks a run adds: its progress display, and a stop at the first non-finite loss.

Progress (:func:`progress_bar`): Rich's bar in a terminal, plain lines in a log or a pipe. Outside
a terminal a bar cannot be redrawn, so :class:`LogProgress` writes lines instead: one at the end of
each epoch with its metrics, and, within a long epoch (or validation, or test), one every
``every_seconds``:

    epoch 3/9, batch 12/40, 2m05s elapsed, about 9m10s left
    epoch 3/9 done: train/loss 3.04, val/loss 2.00, val/epe3d 0.853; 2m48s elapsed, about 6m32s left

Epochs are numbered from 0 as everywhere in a run (Lightning's counter, the ``epoch_003.ckpt`` names,
the logs): "epoch 3/9" is the fourth of ten. The estimate is linear in the training batches still to
run. The first epoch of a run holds one-time work (KeOps compiles its formulas on their first batch,
training and validation alike), so the time per batch comes from the last full epoch after it
(validation included pro rata) or, until there is one, from the training batches after the first
(validation left out); no estimate is shown before the second batch.

:class:`StopOnNonFiniteLoss` stops training at the first NaN or infinite training loss, before it
reaches the weights.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

from gdl.progress import default_every, format_duration, is_terminal, remaining
from gdl.training.checkpoints import LastCheckpoint
from gdl.training.errors import NonFiniteLossError


def progress_bar(every_seconds: float | None = None, terminal: bool | None = None) -> ProgressBar:
    """A :class:`RichProgressBar` when standard output is a terminal, else :class:`LogProgress`."""
    if terminal if terminal is not None else is_terminal(sys.stdout):
        return RichProgressBar()
    return LogProgress(every_seconds)


class LogProgress(ProgressBar):
    """Progress lines on standard output; ``every_seconds`` None: ``$GDL_PROGRESS_SECONDS`` or 60."""

    def __init__(self, every_seconds: float | None = None):
        super().__init__()
        self.every = default_every() if every_seconds is None else every_seconds
        self._enabled = True
        self._start = 0.0
        self._shown_at = 0.0
        self._batches_done = 0
        self._epoch_batches = 0
        self._batch_start = 0.0
        self._later_batches = (0.0, 0)  # seconds and count of the training batches after the first
        self._epoch_start = 0.0
        self._epochs_timed = 0
        self._last_epoch = (0.0, 0)  # seconds and batches of the last full epoch after the first
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        if self._enabled:
            print(text, flush=True)
            self._shown_at = time.monotonic()

    def _epochs(self, trainer) -> str:
        last = trainer.max_epochs
        return f"epoch {trainer.current_epoch}" + (f"/{last - 1}" if last is not None and last > 0 else "")

    def _timing(self, trainer) -> str:
        elapsed = time.monotonic() - self._start
        text = f"{format_duration(elapsed)} elapsed"
        per_epoch = self.total_train_batches
        if trainer.max_epochs is not None and trainer.max_epochs >= 0 and isinstance(per_epoch, int):
            done_before = trainer.current_epoch * per_epoch + self._epoch_batches
            left_total = trainer.max_epochs * per_epoch - done_before
            seconds, batches = self._last_epoch if self._last_epoch[1] else self._later_batches
            left = remaining(seconds, batches, batches + left_total)
            if left is not None and left_total > 0:
                text += f", about {format_duration(left)} left"
        return text

    def _due(self) -> bool:
        return time.monotonic() - self._shown_at >= self.every

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._shown_at = time.monotonic()
        self._batches_done = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_batches = 0
        self._epoch_start = time.monotonic()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._batches_done:
            seconds, count = self._later_batches
            self._later_batches = (seconds + time.monotonic() - self._batch_start, count + 1)
        self._batches_done += 1
        self._epoch_batches += 1
        if self._due():
            total = self.total_train_batches
            of = f"/{total}" if isinstance(total, int) else ""
            self._print(f"{self._epochs(trainer)}, batch {batch_idx + 1}{of}, {self._timing(trainer)}")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking or not self._due():
            return
        self.has_dataloader_changed(dataloader_idx)  # sets the loader whose batch count is shown
        total = self.total_val_batches_current_dataloader
        of = f"/{total}" if isinstance(total, int) else ""
        self._print(f"{self._epochs(trainer)}, validation batch {batch_idx + 1}{of}, {self._timing(trainer)}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epochs_timed:
            self._last_epoch = (time.monotonic() - self._epoch_start, self._epoch_batches)
        self._epochs_timed += 1
        metrics = trainer.callback_metrics
        shown = ", ".join(f"{name} {_short(metrics[name])}" for name in sorted(metrics) if name.startswith(("train/", "val/")))
        self._print(f"{self._epochs(trainer)} done" + (f": {shown}" if shown else "") + f"; {self._timing(trainer)}")

    def on_test_start(self, trainer, pl_module) -> None:
        self._test_start = self._shown_at = time.monotonic()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due():
            self.has_dataloader_changed(dataloader_idx)
            total = self.total_test_batches_current_dataloader
            of = f"/{total}" if isinstance(total, int) else ""
            self._print(f"testing, batch {batch_idx + 1}{of}, {format_duration(time.monotonic() - self._test_start)} elapsed")


def _short(value) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several values
        return str(value)


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
