"""Progress of long work, in lines a log or a pipe can keep: one format for every part of gdl.

- :func:`report` writes one INFO line per step on the ``gdl.progress`` logger, with the time
  elapsed since ``start``:

      report("finetune", "scale 2/4 (blur 0.02)", start)  ->  "finetune: scale 2/4 (blur 0.02), 12s"

  The registration steps, the ``gdl-register`` command and the benchmarks report this way; the
  command line and the benchmarks show the lines (:func:`show_progress`), a library user sees them by
  configuring ``logging`` as usual.
- The shared pieces, also used by the training progress lines (:mod:`gdl.training.callbacks`):
  durations (:func:`format_duration`), the linear estimate of the time left (:func:`remaining`),
  whether a stream is a terminal (:func:`is_terminal`), the interval between two lines
  (:func:`default_every`).

Only the standard library is used.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

logger = logging.getLogger(__name__)

EVERY_VARIABLE = "GDL_PROGRESS_SECONDS"


def default_every() -> float:
    """Seconds between two progress lines outside a terminal: ``$GDL_PROGRESS_SECONDS``, else 60."""
    try:
        return max(0.0, float(os.environ.get(EVERY_VARIABLE, 60)))
    except ValueError:
        return 60.0


def format_duration(seconds: float) -> str:
    """``0.4s``, ``4.2s``, ``42s``, ``3m05s``, ``1h02m`` (tenths of a second below ten seconds)."""
    seconds = max(0.0, float(seconds))
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def remaining(elapsed: float, done: float, total: float | None) -> float | None:
    """Linear estimate of the seconds left, elapsed / done x (total - done), or None when it cannot be made yet."""
    if not total or done <= 0 or elapsed <= 0:
        return None
    return elapsed / done * max(0.0, total - done)


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (where a bar can be redrawn in place)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def report(step: str, message: str, start: float | None = None) -> None:
    """Log ``step: message`` and, when ``start`` (a ``time.perf_counter()``) is given, the time elapsed since."""
    if logger.isEnabledFor(logging.INFO):
        elapsed = "" if start is None else f", {format_duration(time.perf_counter() - start)}"
        logger.info(f"{step}: {message}{elapsed}")


class StderrHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is at the time of each line."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def show_progress() -> None:
    """Print the :func:`report` lines (time-stamped) to stderr; a second call adds nothing."""
    if any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        return
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
