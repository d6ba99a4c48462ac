"""Ragged batches: sorted ``batch`` vectors (PyTorch Geometric style) and KeOps block-diagonal ranges.

Point i of x only interacts with points j of y such that ``batch_x[i] == batch_y[j]``. For KeOps
this is a block-sparse reduction: the rows of item b are ``[start_x[b], end_x[b])`` and they reduce
over the columns ``[start_y[b], end_y[b])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchPair:
    """The item layout of two clouds x (N points) and y (M points) sharing batch indices."""

    num_items: int
    start_x: torch.Tensor  # (B,) int64
    end_x: torch.Tensor
    start_y: torch.Tensor
    end_y: torch.Tensor

    @property
    def counts_x(self) -> torch.Tensor:
        return self.end_x - self.start_x

    @property
    def counts_y(self) -> torch.Tensor:
        return self.end_y - self.start_y

    def item_slices(self):
        """Yield ``(b, slice_x, slice_y)`` for every item, as Python slices."""
        for b, (sx, ex, sy, ey) in enumerate(
            zip(self.start_x.tolist(), self.end_x.tolist(), self.start_y.tolist(), self.end_y.tolist())
        ):
            yield b, slice(sx, ex), slice(sy, ey)

    def keops_ranges(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The 6-tuple of int32 ranges of a block-diagonal KeOps reduction."""
        b = self.num_items
        slices = torch.arange(1, b + 1, dtype=torch.int32, device=device)
        ranges_x = torch.stack([self.start_x, self.end_x], dim=1).to(device=device, dtype=torch.int32)
        ranges_y = torch.stack([self.start_y, self.end_y], dim=1).to(device=device, dtype=torch.int32)
        return ranges_x, slices, ranges_y, ranges_y, slices, ranges_x


def item_bounds(batch: torch.Tensor | None, n: int, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, end) int64 CPU tensors of each item's rows in a sorted batch vector."""
    if batch is None:
        counts = torch.tensor([n] + [0] * (num_items - 1), dtype=torch.int64)
    else:
        counts = torch.bincount(batch.cpu(), minlength=num_items)[:num_items]
    end = torch.cumsum(counts, 0)
    return end - counts, end


def num_items(*batches: torch.Tensor | None) -> int:
    sizes = [int(b.max()) + 1 for b in batches if b is not None and b.numel() > 0]
    return max(sizes, default=1)


def batch_pair(
    batch_x: torch.Tensor | None,
    batch_y: torch.Tensor | None,
    n: int,
    m: int,
    x_name: str = "batch_x",
    y_name: str = "batch_y",
) -> BatchPair:
    """Layout of x and y; both batch vectors must be given, or neither."""
    if (batch_x is None) != (batch_y is None):
        given, missing = (x_name, y_name) if batch_y is None else (y_name, x_name)
        raise ValueError(f"{given} was given but {missing} was not: give both batch vectors or neither")
    b = num_items(batch_x, batch_y)
    start_x, end_x = item_bounds(batch_x, n, b)
    start_y, end_y = item_bounds(batch_y, m, b)
    return BatchPair(b, start_x, end_x, start_y, end_y)


def require_nonempty_targets(pair: BatchPair, y_name: str = "y") -> None:
    """Every item that has query points must have at least one point in ``y``."""
    lonely = ((pair.counts_x > 0) & (pair.counts_y == 0)).nonzero().flatten().tolist()
    if lonely:
        raise ValueError(f"batch item(s) {lonely[:10]} have query points but no point in {y_name}")
