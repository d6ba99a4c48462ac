"""Progress of long work: a bar in a terminal, a plain line every few seconds in a log or a pipe.

    with Progress(total=len(scales), what="prealign", unit="scale") as progress:
        for scale in scales:
            ...
            progress.advance(scale=scale)

In a terminal the bar is redrawn in place; elsewhere (a file, a pipe, a batch job's log) a line
``prealign: 3/8 scales (38%), scale 0.05, 1m02s elapsed, about 1m43s left`` is written at most every
``every`` seconds, and once at the end. The estimate is linear: elapsed / done x (total - done).
Only the standard library is used.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

Item = TypeVar("Item")

EVERY_VARIABLE = "GDL_PROGRESS_SECONDS"


def default_every() -> float:
    """Seconds between two progress lines outside a terminal: ``$GDL_PROGRESS_SECONDS``, else 60."""
    try:
        return max(0.0, float(os.environ.get(EVERY_VARIABLE, 60)))
    except ValueError:
        return 60.0


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def remaining(elapsed: float, done: float, total: float | None) -> float | None:
    """Linear estimate of the seconds left, or None when it cannot be made yet."""
    if not total or done <= 0 or elapsed <= 0:
        return None
    return elapsed / done * max(0.0, total - done)


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def announce(message: str, stream: TextIO | None = None) -> None:
    """Say what is about to happen, on a line of its own (flushed at once, so logs show it in time)."""
    print(message, file=stream or sys.stderr, flush=True)


class Progress:
    """Count ``total`` units of work (None: unknown) and show how far it is; see the module docstring."""

    def __init__(
        self,
        total: int | None,
        what: str,
        *,
        unit: str = "step",
        every: float | None = None,
        stream: TextIO | None = None,
        terminal: bool | None = None,
    ):
        self.total, self.what, self.unit = total, what, unit
        self.stream = stream or sys.stderr
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.every = default_every() if every is None else every
        self.done = 0
        self.details: dict[str, object] = {}
        self.start = time.monotonic()
        self._shown_at = -float("inf")
        self._closed = False

    def advance(self, count: int = 1, **details) -> None:
        """``count`` more units done; ``details`` (e.g. ``scale=0.05``) are shown with the count."""
        self.done += count
        self.details.update(details)
        now = time.monotonic()
        if now - self._shown_at >= (0.1 if self.terminal else self.every):
            self._show(now)

    def line(self, now: float | None = None) -> str:
        """The current state in one line."""
        elapsed = (now or time.monotonic()) - self.start
        units = self.unit if self.done == 1 and self.total in (None, 1) else f"{self.unit}s"
        count = f"{self.done}/{self.total} {units} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done} {units}"
        parts = [count, *(f"{name} {_short(value)}" for name, value in self.details.items()), f"{format_duration(elapsed)} elapsed"]
        left = remaining(elapsed, self.done, self.total)
        if left is not None and self.done < self.total:
            parts.append(f"about {format_duration(left)} left")
        return f"{self.what}: " + ", ".join(parts)

    def _show(self, now: float) -> None:
        self._shown_at = now
        if self.terminal:
            text = self.line(now)
            if self.total:
                filled = int(20 * min(1.0, self.done / self.total))
                text = f"{self.what} [{'#' * filled}{'.' * (20 - filled)}] " + text[len(self.what) + 2 :]
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the final state (and end the terminal line)."""
        if self._closed:
            return
        self._closed = True
        self._show(time.monotonic())
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def track(items: Iterable[Item], what: str, *, total: int | None = None, **options) -> Iterator[Item]:
    """Yield ``items`` while counting them with a :class:`Progress` (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(total, what, **options) as progress:
        for item in items:
            yield item
            progress.advance()


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
