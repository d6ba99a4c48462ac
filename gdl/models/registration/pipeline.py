"""``RegistrationPipeline``: any subset of pre-alignment, deep flow and fine-tuning, in that order.

Each step sees the source as warped by the previous ones and adds its displacement:

    u_0 = 0,   u <- u + step(x + u, y),   pipeline(x, y) = u     (x: (N, 3), y: (M, 3)).

Ragged batches: ``batch_source`` and ``batch_target`` as in the registry operators.
"""

from __future__ import annotations

import torch

from gdl.ops.batching import batch_pair
from gdl.ops.checks import check_batch, check_pair, check_points

STEPS = ("prealign", "flow", "finetune")


class RegistrationPipeline(torch.nn.Module):
    """Compose ``prealign``, ``flow`` and ``finetune`` modules (each optional, None skips it)."""

    def __init__(self, prealign=None, flow=None, finetune=None):
        super().__init__()
        self.prealign, self.flow, self.finetune = prealign, flow, finetune
        if not any(step is not None for step in (prealign, flow, finetune)):
            raise ValueError("RegistrationPipeline needs at least one of prealign, flow, finetune")

    @property
    def steps(self) -> list[str]:
        return [name for name in STEPS if getattr(self, name) is not None]

    def forward(self, source, target, batch_source=None, batch_target=None, timings: dict | None = None):
        check_points("source", source, dim=3)
        check_points("target", target, dim=3)
        check_pair(source, target, "source", "target")
        check_batch("batch_source", batch_source, source.shape[0], source.device)
        check_batch("batch_target", batch_target, target.shape[0], target.device)
        batch_pair(batch_source, batch_target, source.shape[0], target.shape[0], "batch_source", "batch_target")
        displacement = torch.zeros_like(source)
        for name in self.steps:
            start = _clock(source.device)
            step = getattr(self, name)
            displacement = displacement + step(source + displacement, target, batch_source, batch_target)
            if timings is not None:
                timings[name] = _clock(source.device) - start
        return displacement


def _clock(device: torch.device) -> float:
    import time

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
