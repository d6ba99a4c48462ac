"""One timed computation of the operator benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Case:
    """``setup()`` builds the inputs (not timed) and returns a zero-argument function to time.

    operator: the registry name (or a family name for peers), n: number of points,
    implementation: who computes it ("gdl-keops", "gdl-torch", "dense-torch", "raw-keops",
    "geomloss", "faiss", "pykdtree", "pot", ...), mode: "forward" or "forward+backward",
    skip: a reason not to run it here (too large for dense memory, missing package, ...).
    baseline: the implementation of the same operator, n and mode that ``ratio_to_baseline`` divides
    by (the peer to beat). repeats: overrides the run's number of repeats (long rows); warmup: False
    where a first call warms nothing up (no compilation, no cache). ``setup`` may record facts it
    checked (e.g. agreement with a peer) in ``params``, which are saved with the row.
    """

    operator: str
    n: int
    implementation: str
    mode: str
    setup: Callable[[], Callable[[], object]]
    skip: str | None = None
    params: dict = field(default_factory=dict)
    baseline: str | None = None
    repeats: int | None = None
    warmup: bool = True
