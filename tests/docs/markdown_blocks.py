"""Fenced code blocks of the README and the docs pages, with their skip markers.

A block runs unless the line before its fence is ``<!-- skip: reason -->`` (the reason is required).
``python`` blocks of a page run in order in one namespace; ``bash`` blocks run in a shell; ``toml``
and ``yaml`` blocks are parsed; ``text`` blocks show output and are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = ("python", "bash")
PARSE = ("toml", "yaml")
SHOWN = ("text",)
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^`]*)$")
SKIP = re.compile(r"^\s*<!--\s*skip:(?P<reason>.*?)-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None  # the reason it is not run, or None

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``; raises ValueError on an unclosed fence, a block without a
    language or a skip marker without a reason."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, indent, fence = i, len(opening["indent"]), opening["fence"]
        language = opening["info"].strip().split(" ")[0]
        if not language:
            raise ValueError(f"{path}:{start + 1}: a code block needs a language (python, bash, text, ...)")
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: code block never closed")
        skip = SKIP.match(lines[start - 1]) if start else None
        if skip and not skip["reason"].strip():
            raise ValueError(f"{path}:{start}: a skip marker must say why, e.g. <!-- skip: trains for 30 min -->")
        blocks.append(Block(path, start + 1, language, "\n".join(body) + "\n", skip["reason"].strip() if skip else None))
        i += 1
    return blocks
