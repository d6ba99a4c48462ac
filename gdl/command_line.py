"""Command lines of gdl's tools (standard library only, so every layer's ``__main__`` may use it): help
texts without reStructuredText markup, and one ``error:`` line with exit status 1 for any bad input
(as ``train.py``), instead of argparse's 2."""

from __future__ import annotations

import argparse
import re
import sys


def plain(text: str | None) -> str:
    """``text`` without reStructuredText markup: code literals (``x`` -> x) and roles (:func:`f` -> f)."""
    return re.sub(r"``(.+?)``|:\w+:`(.+?)`", lambda match: match.group(1) or match.group(2), text or "")


def plural(count: int, noun: str) -> str:
    """``1 point``, ``12,000 points``."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors print ``error: <what>`` and exit with status 1."""

    def __init__(self, *args, description: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, description=plain(description), **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(1)
