"""Truncated windowed reductions: sums over the pairs of points closer than a cutoff.

A windowed operator sums w(x_i, y_j) f_j over the points y_j of the batch item of x_i, with a
weight w that decays with |x_i - y_j| on a window scale sigma. With ``truncate`` = t, the pairs
farther apart than the cutoff c = t * sigma are dropped: the caller states the bound on what a
dropped weight can be (gaussian exp(-t^2 / 2), ...).

Both clouds are cut into voxels of side ``CELL_FRACTION * c`` (a grid shared by x and y, see
:mod:`gdl.ops.core.block_sparse`) and sorted by (batch item, voxel). Two voxels interact when the
distance between their boxes is below c, so every pair closer than c is visited and batch items
never mix:

- KeOps backend: the interacting voxels are the block-sparse ``ranges`` of the reduction over the
  sorted points (one block of rows per voxel, both directions: the reduction over j for the
  forward pass, over i for the gradients in y). Whole blocks are visited, so some pairs a little
  farther than c are summed too. :mod:`gdl.ops.core.window` permutes the inputs with ``perm_x`` /
  ``perm_y`` and the output back with ``inverse_x``; autograd flows through the permutations.
- torch backend: :meth:`LocalPairs.pairs` lists exactly the pairs (i, j) closer than c, in chunks
  of bounded size, for gathers and ``index_add`` (never an N x M block).

When truncation cannot save much (the clouds fit in the cutoff, or the interacting voxels hold
more than ``FALLBACK_FRACTION`` of the pairs of the batch items), :func:`local_pairs` returns
None and the plain (exact) reduction runs: then truncation costs a bounding box, or a sort, and
nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gdl.ops.core.base import TORCH_BLOCK_ELEMENTS
from gdl.ops.core.batching import BatchPair
from gdl.ops.core.block_sparse import PAD, Neighbourhoods, column_offsets, column_ranges, voxel_grid

# Voxel side as a fraction of the cutoff: a query voxel reaches ~37 columns of source voxels in 3-D,
# whose volume is about 3.5 times the cutoff ball's (a voxel of side c: 27 voxels, 6.4 times).
CELL_FRACTION = 0.5
# Above this fraction of the item pairs in the interacting voxels, the plain reduction is cheaper.
FALLBACK_FRACTION = 0.5


def check_truncate(truncate) -> float | None:
    """None, or a positive finite number (the cutoff as a multiple of the window scale)."""
    if truncate is None:
        return None
    if isinstance(truncate, bool) or not isinstance(truncate, (int, float)) or not (
        math.isfinite(truncate) and truncate > 0
    ):
        raise ValueError(
            f"truncate must be None (exact) or a positive finite number, a multiple of the window "
            f"scale, got {truncate!r}"
        )
    return float(truncate)


@dataclass
class LocalPairs:
    """The interacting voxels of x and y (points sorted by (batch item, voxel))."""

    perm_x: torch.Tensor  # (N,) sorted position -> index in x
    perm_y: torch.Tensor  # (M,)
    rows_x: torch.Tensor  # (Vx, 2) sorted rows of each voxel of x
    hoods_x: Neighbourhoods  # ranges of sorted y around each voxel of x
    rows_y: torch.Tensor  # (Vy, 2)
    hoods_y: Neighbourhoods  # ranges of sorted x around each voxel of y
    cutoff: float

    @property
    def inverse_x(self) -> torch.Tensor:
        """Index in the sorted x of each point of x: ``out = out_sorted[inverse_x]``."""
        inverse = torch.empty_like(self.perm_x)
        inverse[self.perm_x] = torch.arange(self.perm_x.numel(), device=self.perm_x.device)
        return inverse

    def keops_ranges(self) -> tuple[torch.Tensor, ...]:
        """The 6-tuple of int32 block-sparse ranges of a KeOps reduction over the sorted points."""
        slices_x = torch.cumsum(torch.bincount(self.hoods_x.voxel, minlength=self.rows_x.shape[0]), 0)
        slices_y = torch.cumsum(torch.bincount(self.hoods_y.voxel, minlength=self.rows_y.shape[0]), 0)
        tensors = (
            self.rows_x,
            slices_x,
            torch.stack([self.hoods_x.start, self.hoods_x.end], 1),
            self.rows_y,
            slices_y,
            torch.stack([self.hoods_y.start, self.hoods_y.end], 1),
        )
        return tuple(t.to(torch.int32).contiguous() for t in tensors)

    def pairs(self, x: torch.Tensor, y: torch.Tensor, budget: int = TORCH_BLOCK_ELEMENTS):
        """Yield (i, j): indices into x and y of the pairs with |x_i - y_j| < cutoff, in chunks of
        at most about 2 * ``budget`` candidate pairs."""
        device = x.device
        rows = self.rows_x[self.hoods_x.voxel]
        row_start, num_rows = rows[:, 0], rows[:, 1] - rows[:, 0]
        col_start, num_cols = self.hoods_x.start, self.hoods_x.end - self.hoods_x.start
        # Split (voxel, range) blocks larger than the budget into slabs of rows.
        slab = (budget // num_cols).clamp_min(1)
        pieces = (num_rows + slab - 1) // slab
        block = torch.repeat_interleave(torch.arange(pieces.numel(), device=device), pieces)
        piece = torch.arange(block.numel(), device=device) - torch.repeat_interleave(
            torch.cumsum(pieces, 0) - pieces, pieces
        )
        row_start = row_start[block] + piece * slab[block]
        num_rows = torch.minimum(slab[block], num_rows[block] - piece * slab[block])
        col_start, num_cols = col_start[block], num_cols[block]
        sizes = num_rows * num_cols
        # Consecutive slabs whose candidates start in the same multiple of the budget form a chunk.
        chunk = (torch.cumsum(sizes, 0) - sizes) // budget
        _, per_chunk = torch.unique_consecutive(chunk, return_counts=True)
        cutoff2 = self.cutoff**2
        first = 0
        for count in per_chunk.tolist():
            part = slice(first, first + count)
            first += count
            s, nc = sizes[part], num_cols[part]
            total = int(s.sum())
            entry = torch.repeat_interleave(torch.arange(count, device=device), s)
            local = torch.arange(total, device=device) - (torch.cumsum(s, 0) - s)[entry]
            i = self.perm_x[row_start[part][entry] + local // nc[entry]]
            j = self.perm_y[col_start[part][entry] + local % nc[entry]]
            with torch.no_grad():
                close = ((x[i] - y[j]) ** 2).sum(-1) < cutoff2
            yield i[close], j[close]


def local_pairs(
    x: torch.Tensor, y: torch.Tensor, pair: BatchPair, batch_x, batch_y, cutoff: float
) -> LocalPairs | None:
    """The voxels of x and y within ``cutoff`` of each other, or None where the plain reduction is
    as cheap (see the module docstring). x, y: (N, D), (M, D); ``pair`` their item layout."""
    with torch.no_grad():
        x, y = x.detach(), y.detach()
        lo = torch.minimum(x.min(0).values, y.min(0).values)
        hi = torch.maximum(x.max(0).values, y.max(0).values)
        if float((hi - lo).double().norm()) < cutoff:
            return None
        device, dim = x.device, x.shape[1]
        if batch_x is None:
            batch_x = torch.zeros(x.shape[0], dtype=torch.int64, device=device)
            batch_y = torch.zeros(y.shape[0], dtype=torch.int64, device=device)
        grid = voxel_grid(x, y, pair.num_items, CELL_FRACTION * cutoff)
        width = math.ceil(cutoff / grid.size)
        if width >= PAD:  # the grid had to grow beyond the cutoff: nothing to skip
            return None
        offsets = column_offsets(width, dim, device)
        gaps = (offsets.abs() - 1).clamp_min(0).double() * grid.size
        left = cutoff**2 - (gaps**2).sum(-1)
        # Height h of the column: the voxel at offset h along the last axis is within reach iff
        # (h - 1) * size < sqrt(left).
        heights = torch.where(left > 0, (left.clamp_min(0).sqrt() / grid.size).ceil().long(), -1)

        def side(points, batch):
            coords = grid.coords(points)
            keys, perm = torch.sort(grid.keys(batch, coords), stable=True)
            _, sizes = torch.unique_consecutive(keys, return_counts=True)
            end = torch.cumsum(sizes, 0)
            rows = torch.stack([end - sizes, end], 1)
            first = perm[rows[:, 0]]
            return keys, perm, rows, batch[first], coords[first]

        keys_x, perm_x, rows_x, batch_vx, coords_vx = side(x, batch_x)
        keys_y, perm_y, rows_y, batch_vy, coords_vy = side(y, batch_y)
        hoods_x = Neighbourhoods(
            *column_ranges(grid, keys_y, batch_vx, coords_vx, offsets, heights.expand(rows_x.shape[0], -1))
        )
        total = int((pair.counts_x * pair.counts_y).sum())
        if num_candidates(rows_x, hoods_x) > FALLBACK_FRACTION * total:
            return None
        hoods_y = Neighbourhoods(
            *column_ranges(grid, keys_x, batch_vy, coords_vy, offsets, heights.expand(rows_y.shape[0], -1))
        )
        return LocalPairs(perm_x, perm_y, rows_x, hoods_x, rows_y, hoods_y, cutoff)


def num_candidates(rows: torch.Tensor, hoods: Neighbourhoods) -> int:
    """Pairs visited by a block-sparse reduction: rows of each voxel times the points of its ranges."""
    rows = rows[hoods.voxel]
    return int(((rows[:, 1] - rows[:, 0]) * (hoods.end - hoods.start)).sum())

