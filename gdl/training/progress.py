"""Training progress: Rich's bar in a terminal, plain lines in a log or a pipe.

Outside a terminal a bar cannot be redrawn, so :class:`LogProgress` writes lines instead: one at the
end of each epoch with its metrics, and, within a long epoch (or validation, or test), one every
``every_seconds``:

    epoch 3/9, batch 12/40, 2m05s elapsed, about 9m10s left
    epoch 3/9 done: train/loss 3.04, val/loss 2.00, val/epe3d 0.853; 2m48s elapsed, about 6m32s left

Epochs are numbered from 0 as everywhere in a run (Lightning's counter, the ``epoch_003.ckpt`` names,
the logs): "epoch 3/9" is the fourth of ten. The estimate is linear in the training batches still to
run, timed from the end of the first batch (which includes one-time work such as KeOps compilation;
validation time is included pro rata), so it appears from the second batch on.
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

from gdl.progress import default_every, format_duration, is_terminal, remaining


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
        self._first_batch_end = 0.0

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
            since_first = time.monotonic() - self._first_batch_end
            left = remaining(since_first, self._batches_done - 1, self._batches_done - 1 + left_total)
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

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches_done += 1
        if self._batches_done == 1:
            self._first_batch_end = time.monotonic()
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
