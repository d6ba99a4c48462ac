"""Farthest point sampling."""

from __future__ import annotations

import math

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import item_bounds, num_items
from gdl.ops.core.checks import check_batch, check_choice, check_points, check_positive
from gdl.ops.core.registry import register

METHODS = ("auto", "greedy", "fpsample")


@register("fps")
class FPS(Operator):
    r"""Farthest point sampling: in each batch item, greedy indices, each the point farthest from those before.

    The indices s_1, s_2, ... of an item satisfy

        s_{t+1} = argmax_i min_{u <= t} |x_i - x_{s_u}|

    starting from the item's first point (with ``random_start``, a uniformly random one drawn
    from torch's global generator). Each item
    of n_b points gets ``ceil(ratio * n_b)`` samples, or ``n`` samples (give exactly one of the two).
    Returns int64 indices into x, item after item, each item's samples in the order chosen.

    ``method="greedy"`` runs the loop above in torch, all batch items advancing together (O(n_b)
    work per step, on any device; ``backend`` is accepted for uniformity). ``"fpsample"`` runs the
    compiled bucket-KD-tree FPS of the fpsample library ("QuickFPS", exact) on the CPU, item by
    item, on float32 coordinates: each item's samples are exactly the greedy sequence above (up to
    ties in float32 arithmetic), but from a start that fpsample chooses through its KD-tree, not the
    item's first point (deterministic for given points; with ``random_start`` uniformly random as
    above). ``"auto"`` picks fpsample on the CPU and the torch loop elsewhere.
    """

    def __init__(
        self,
        ratio: float | None = None,
        n: int | None = None,
        random_start: bool = False,
        method: str = "auto",
        backend: str = "auto",
    ):
        super().__init__(backend)
        self.method = check_choice("method", method, METHODS)
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
        return f"{size}, random_start={self.random_start}, method={self.method!r}, " + super().extra_repr()

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
        if self.random_start:
            first = (torch.rand(counts.shape[0]) * counts).long().clamp(max=counts - 1)
        else:
            first = torch.zeros(counts.shape[0], dtype=torch.int64)
        method = self.method
        if method == "auto":
            method = "fpsample" if x.device.type == "cpu" else "greedy"
        if method == "fpsample":
            return _fpsample(x, start, counts, samples, first)
        return _greedy(x, start, counts, samples, first)


def _fpsample(x, start, counts, samples, first):
    """Per item, fpsample's bucket FPS (KD-line tree of height ~log2(n_b / 128), at most 9)."""
    import fpsample
    import numpy as np

    points = x.detach().to("cpu", torch.float32).numpy()
    chosen = []
    for s, n, m, f in zip(start.tolist(), counts.tolist(), samples.tolist(), first.tolist()):
        if n < 2:
            chosen.append(np.full(m, s, dtype=np.int64))
            continue
        height = max(1, min(9, int(math.log2(n)) - 7))
        item = np.ascontiguousarray(points[s : s + n])
        chosen.append(fpsample.bucket_fps_kdline_sampling(item, m, h=height, start_idx=f).astype(np.int64) + s)
    return torch.from_numpy(np.concatenate(chosen)).to(x.device)


def _greedy(x, start, counts, samples, first):
    """The greedy loop in torch, items side by side."""
    # Items side by side in a padded (B, L) layout; padding never gets picked (distance -1).
    items, width = counts.shape[0], int(counts.max())
    column = torch.arange(width)
    valid = column[None, :] < counts[:, None]
    rows = torch.where(valid, start[:, None] + column[None, :], 0).to(x.device)
    valid = valid.to(x.device)
    points = x.detach()[rows]
    min_sqdist = torch.full(valid.shape, float("inf"), dtype=x.dtype, device=x.device)
    min_sqdist = min_sqdist.masked_fill(~valid, -1)
    current = first.to(x.device)
    chosen = torch.empty(items, int(samples.max()), dtype=torch.int64, device=x.device)
    item_range = torch.arange(items, device=x.device)
    for t in range(chosen.shape[1]):
        chosen[:, t] = current
        sqdist = ((points - points[item_range, current][:, None, :]) ** 2).sum(-1)
        min_sqdist = torch.minimum(min_sqdist, sqdist)  # padding stays at -1
        current = min_sqdist.argmax(dim=1)
    keep = torch.arange(chosen.shape[1], device=x.device)[None, :] < samples.to(x.device)[:, None]
    return (chosen + start.to(x.device)[:, None])[keep]
