"""Farthest point sampling."""

from __future__ import annotations

import math

import torch

from gdl.ops.base import Operator
from gdl.ops.batching import item_bounds, num_items
from gdl.ops.checks import check_batch, check_points, check_positive
from gdl.ops.registry import register


@register("fps")
class FPS(Operator):
    r"""Farthest point sampling: greedy indices s_1, s_2, ... in each batch item, with

        s_{t+1} = argmax_i min_{u <= t} |x_i - x_{s_u}|

    starting from the item's first point (with ``random_start``, a uniformly random one drawn
    from torch's global generator). Each item
    of n_b points gets ``ceil(ratio * n_b)`` samples, or ``n`` samples (give exactly one of the two).
    Returns int64 indices into x, item after item, each item's samples in the order chosen.

    The greedy loop is sequential with O(n_b) work per step, the same for both backends: it always
    runs in torch (all batch items advance together), ``backend`` is accepted for uniformity.
    """

    def __init__(
        self,
        ratio: float | None = None,
        n: int | None = None,
        random_start: bool = False,
        backend: str = "auto",
    ):
        super().__init__(backend)
        if (ratio is None) == (n is None):
            raise ValueError(f"give exactly one of ratio and n, got ratio={ratio!r}, n={n!r}")
        if ratio is not None:
            check_positive("ratio", ratio)
            if ratio > 1:
                raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
        else:
            check_positive("n", n, integer=True)
        self.ratio, self.n, self.random_start = ratio, n, bool(random_start)

    def extra_repr(self) -> str:
        size = f"ratio={self.ratio}" if self.ratio is not None else f"n={self.n}"
        return f"{size}, random_start={self.random_start}, " + super().extra_repr()

    def forward(self, x, batch=None):
        check_points("x", x)
        check_batch("batch", batch, x.shape[0], x.device)
        start, end = item_bounds(batch, x.shape[0], num_items(batch))
        counts = end - start
        present = counts > 0
        if self.n is not None:
            too_small = (present & (counts < self.n)).nonzero().flatten().tolist()
            if too_small:
                b = too_small[0]
                raise ValueError(
                    f"n={self.n} is larger than batch item {b}, which has {int(counts[b])} points"
                )
            samples = torch.where(present, self.n, 0)
        else:
            samples = torch.tensor([math.ceil(self.ratio * c) for c in counts.tolist()], dtype=torch.int64)
        start, counts, samples = start[present], counts[present], samples[present]

        # Items side by side in a padded (B, L) layout; padding never gets picked (distance -1).
        items, width = counts.shape[0], int(counts.max())
        column = torch.arange(width)
        valid = column[None, :] < counts[:, None]
        rows = torch.where(valid, start[:, None] + column[None, :], 0).to(x.device)
        valid = valid.to(x.device)
        points = x.detach()[rows]
        min_sqdist = torch.full(valid.shape, float("inf"), dtype=x.dtype, device=x.device)
        min_sqdist = min_sqdist.masked_fill(~valid, -1)
        if self.random_start:
            current = (torch.rand(items) * counts).long().clamp(max=counts - 1).to(x.device)
        else:
            current = torch.zeros(items, dtype=torch.int64, device=x.device)
        chosen = torch.empty(items, int(samples.max()), dtype=torch.int64, device=x.device)
        item_range = torch.arange(items, device=x.device)
        for t in range(chosen.shape[1]):
            chosen[:, t] = current
            sqdist = ((points - points[item_range, current][:, None, :]) ** 2).sum(-1)
            min_sqdist = torch.minimum(min_sqdist, sqdist)  # padding stays at -1
            current = min_sqdist.argmax(dim=1)
        keep = torch.arange(chosen.shape[1], device=x.device)[None, :] < samples.to(x.device)[:, None]
        return (chosen + start.to(x.device)[:, None])[keep]
