"""Progress of a registration: one INFO line per step and scale on the ``gdl.registration`` logger.

    report("finetune", "scale 2/4 (blur 0.02)", start)  ->  "finetune: scale 2/4 (blur 0.02), 12.3 s"

The command line and the benchmarks show these lines (``show_progress``); a library user sees them
by configuring ``logging`` as usual.
"""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger("gdl.registration")


def report(step: str, message: str, start: float | None = None) -> None:
    """Log ``step: message`` and, when ``start`` (a ``time.perf_counter()``) is given, the elapsed seconds."""
    if logger.isEnabledFor(logging.INFO):
        elapsed = "" if start is None else f", {time.perf_counter() - start:.1f} s"
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
    """Print the registration progress lines (time-stamped) to stderr; a second call adds nothing."""
    if any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        return
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
