"""Exact block-sparse K nearest neighbours of low-dimensional clouds (D <= 3) on a voxel grid.

Points are sorted by (batch item, voxel). With s the voxel side, L_p the metric (p = 2 euclidean,
p = 1 manhattan) and o = V - Q the offset of a source voxel V from a query voxel Q, in voxels:

1. r_Q is the smallest Chebyshev radius such that the (2 r_Q + 1)^D voxels around Q hold at least k
   source points of Q's item. Pass 1 reduces over them: every query point x of Q gets k candidates,
   and the distance d_k(x) to the farthest one bounds its true k-th neighbour distance from above.
2. R_Q = max_{x in Q} d_k(x). No point of V is within R_Q of a point of Q unless
       || s * max(|o| - 1, 0) ||_p <= R_Q      (the distance between the two voxel boxes),
   so pass 2 reduces over exactly those voxels and returns the exact k nearest neighbours.

Voxels that need a radius above ``MAX_RING`` in step 1, or a neighbourhood wider than ``MAX_WIDTH``
voxels in step 2, reduce over their whole batch item instead: the result is exact in every case.
Sorting by (item, voxel) keeps each column of voxels (fixed first D - 1 coordinates) contiguous, so
a neighbourhood is a set of contiguous ranges of sorted source points, found by binary search, and
becomes the KeOps block-sparse ``ranges`` of the reduction (one query voxel = one block of rows).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from gdl.ops.core.base import TORCH_BLOCK_ELEMENTS

MAX_DIM = 3
MAX_RING = 3
MAX_WIDTH = 8
PAD = MAX_WIDTH + 1  # empty voxels around the cloud: offsets never wrap into another column
KEY_LIMIT = 2**62
CELL_SIZE_SAMPLE = 2**18
# Relative and absolute (in voxel sides) slack on R_Q, covering float rounding of distances and voxels.
BOUND_SLACK = 1e-3


@dataclass(frozen=True)
class VoxelGrid:
    """Voxels of side ``size`` from ``origin``, PAD empty voxels on each side of every axis."""

    origin: torch.Tensor  # (D,) float64
    size: float
    shape: tuple[int, ...]  # voxels per axis, padding included

    def coords(self, points: torch.Tensor) -> torch.Tensor:
        """Integer voxel coordinates (N, D) of points, padding included."""
        return ((points.double() - self.origin) / self.size).floor().long() + PAD

    def keys(self, batch: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Lexicographic int64 keys of (item, voxel): item first, last axis fastest."""
        key = batch.clone()
        for axis, length in enumerate(self.shape):
            key = key * length + coords[:, axis]
        return key


def voxel_grid(x: torch.Tensor, y: torch.Tensor, num_items: int, cell_size: float) -> VoxelGrid:
    """A grid covering x and y whose keys fit in int64 (voxels grow until they do)."""
    lo = torch.minimum(x.min(0).values, y.min(0).values).double()
    hi = torch.maximum(x.max(0).values, y.max(0).values).double()
    size = cell_size
    while True:
        shape = tuple(int(n) + 1 + 2 * PAD for n in ((hi - lo) / size).floor().long().tolist())
        if num_items * math.prod(shape) < KEY_LIMIT:
            return VoxelGrid(lo, size, shape)
        size *= 2


def occupied_voxels(points: torch.Tensor, batch: torch.Tensor, size: float) -> int:
    grid = voxel_grid(points, points, int(batch.max()) + 1, size)
    return int(torch.unique(grid.keys(batch, grid.coords(points))).numel())


def choose_cell_size(y: torch.Tensor, batch_y: torch.Tensor, points_per_cell: float) -> float:
    """A voxel side such that occupied voxels hold about ``points_per_cell`` points of y on average.

    Occupancy grows like size^d for a cloud of intrinsic dimension d (1 for curves, 2 for surfaces,
    D for volumes); d is estimated from successive trials (secant steps in log-log scale).
    """
    m, dim = y.shape
    if m > CELL_SIZE_SAMPLE:  # a regular subsample, with the target scaled to match
        step = m // CELL_SIZE_SAMPLE
        y, batch_y = y[::step], batch_y[::step]
        points_per_cell = points_per_cell * y.shape[0] / m
    m = y.shape[0]
    extent = (y.max(0).values - y.min(0).values).double()
    span = float(extent.max())
    if span == 0 or points_per_cell >= m:
        return max(span, 1.0)
    volume = float(extent.clamp_min(span / m).prod())
    size = (volume * points_per_cell / m) ** (1 / dim)
    trials = []
    for _ in range(8):
        occupancy = m / occupied_voxels(y, batch_y, size)
        trials.append((math.log(size), math.log(occupancy)))
        if points_per_cell / 1.5 <= occupancy <= points_per_cell * 1.5:
            break
        intrinsic = float(dim)
        if len(trials) > 1 and trials[-1][0] != trials[-2][0]:
            slope = (trials[-1][1] - trials[-2][1]) / (trials[-1][0] - trials[-2][0])
            intrinsic = min(max(slope, 0.5), float(dim))
        size *= (points_per_cell / occupancy) ** (1 / intrinsic)
    return size


def column_offsets(width: int, dim: int, device) -> torch.Tensor:
    """All offsets (C, D - 1) of the voxel columns within Chebyshev distance ``width``."""
    columns = list(itertools.product(range(-width, width + 1), repeat=dim - 1))
    return torch.tensor(columns, dtype=torch.int64, device=device).reshape(len(columns), dim - 1)


def column_ranges(grid, keys_y, batch_q, coords_q, offsets, half_heights):
    """Ranges of sorted source points in the voxel columns around query voxels.

    For query voxel q and column offset c, the voxels (q[:-1] + c, q[-1] + h) for |h| <= half_heights[q, c]
    (skipped where negative). Returns (query voxel, start, end) of the non-empty ranges, sorted by query voxel.
    """
    num_q, num_c = half_heights.shape
    q = torch.arange(num_q, device=keys_y.device)[:, None].expand(num_q, num_c)
    column = coords_q[:, None, :-1] + offsets[None, :, :]
    keep = half_heights >= 0
    q, column, height = q[keep], column[keep], half_heights[keep]
    batch, last = batch_q[q], coords_q[q, -1]
    lower = torch.cat([column, (last - height)[:, None]], dim=1)
    upper = torch.cat([column, (last + height)[:, None]], dim=1)
    start = torch.searchsorted(keys_y, grid.keys(batch, lower), right=False)
    end = torch.searchsorted(keys_y, grid.keys(batch, upper), right=True)
    nonempty = end > start
    return q[nonempty], start[nonempty], end[nonempty]


@dataclass
class Neighbourhoods:
    """Ranges of sorted source points to reduce over, per query voxel (sorted by query voxel)."""

    voxel: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    @staticmethod
    def concat(parts):
        voxel = torch.cat([p.voxel for p in parts])
        order = torch.sort(voxel, stable=True).indices
        return Neighbourhoods(
            voxel[order], torch.cat([p.start for p in parts])[order], torch.cat([p.end for p in parts])[order]
        )

    def counts(self, num_voxels: int) -> torch.Tensor:
        return torch.zeros(num_voxels, dtype=torch.int64, device=self.voxel.device).index_add_(
            0, self.voxel, self.end - self.start
        )


def keops_ranges(voxel_rows: torch.Tensor, hoods: Neighbourhoods, voxels: torch.Tensor, n: int, m: int):
    """KeOps ranges for a reduction over j: rows of each voxel in ``voxels`` reduce over its ranges.

    Only the first three tensors are read by reductions over j; the last three (reductions over i)
    describe one dense block.
    """
    device = voxel_rows.device
    slices = torch.searchsorted(hoods.voxel, voxels, right=True)
    ranges_i = voxel_rows[voxels]
    redranges_j = torch.stack([hoods.start, hoods.end], dim=1)
    dense_j = torch.tensor([[0, m]], device=device)
    dense_i = torch.tensor([[0, n]], device=device)
    one = torch.ones(1, dtype=torch.int64, device=device)
    return tuple(t.to(torch.int32).contiguous() for t in (ranges_i, slices, redranges_j, dense_j, one, dense_i))


def ranged_topk(x, y, voxel_rows, hoods, voxels, k, p, backend):
    """Indices (N, k) into y of the k nearest, for the rows of ``voxels`` (other rows undefined)."""
    if backend == "keops":
        from gdl.ops.core.backend import import_pykeops

        LazyTensor = import_pykeops().LazyTensor
        x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
        d_ij = ((x_i - y_j) ** 2).sum(-1) if p == 2 else (x_i - y_j).abs().sum(-1)
        d_ij.ranges = keops_ranges(voxel_rows, hoods, voxels, x.shape[0], y.shape[0])
        return d_ij.argKmin(k, dim=1).long()
    return _ranged_topk_dense(x, y, voxel_rows, hoods, voxels, k, p)


def _ranged_topk_dense(x, y, voxel_rows, hoods, voxels, k, p):
    """The torch version: rows against their voxel's candidates, padded, voxels of similar counts together."""
    device = x.device
    idx = torch.zeros(x.shape[0], k, dtype=torch.int64, device=device)
    lengths = hoods.end - hoods.start
    total = int(lengths.sum())
    range_offset = torch.cumsum(lengths, 0) - lengths
    flat_y = torch.repeat_interleave(hoods.start - range_offset, lengths) + torch.arange(total, device=device)
    count = hoods.counts(voxel_rows.shape[0])
    voxel_offset = torch.cumsum(count, 0) - count
    voxels = voxels[torch.sort(count[voxels], stable=True).indices]
    sizes = voxel_rows[voxels, 1] - voxel_rows[voxels, 0]
    for first, last in _chunks_by_width(sizes.tolist(), count[voxels].tolist()):
        width = int(count[voxels[last - 1]])
        chunk = voxels[first:last]
        slot = torch.arange(width, device=device)
        cand = flat_y[(voxel_offset[chunk, None] + slot).clamp_max(total - 1)]
        cand = cand.masked_fill(slot >= count[chunk, None], -1)
        chunk_sizes = sizes[first:last]
        num_rows = int(chunk_sizes.sum())
        row_offset = torch.cumsum(chunk_sizes, 0) - chunk_sizes
        rows = torch.repeat_interleave(voxel_rows[chunk, 0] - row_offset, chunk_sizes) + torch.arange(
            num_rows, device=device
        )
        cand = torch.repeat_interleave(cand, chunk_sizes, dim=0)
        diff = x[rows, None, :] - y[cand.clamp_min(0)]
        d = (diff**2).sum(-1) if p == 2 else diff.abs().sum(-1)
        d = d.masked_fill(cand < 0, math.inf)
        idx[rows] = cand.gather(1, d.topk(k, dim=1, largest=False, sorted=True).indices)
    return idx


def _chunks_by_width(sizes: list[int], widths: list[int]) -> list[tuple[int, int]]:
    """Consecutive groups of voxels (non-decreasing widths) whose padded block stays under the budget."""
    bounds, first, rows = [], 0, 0
    for i, (size, width) in enumerate(zip(sizes, widths)):
        if i > first and (rows + size) * width > TORCH_BLOCK_ELEMENTS:
            bounds.append((first, i))
            first, rows = i, 0
        rows += size
    bounds.append((first, len(sizes)))
    return bounds


def grid_knn(x, y, batch_x, batch_y, k, p, backend, points_per_cell):
    """Exact k nearest neighbours (indices (N, k) into y) of x among y, same item only, D <= 3.

    x, y: (N, D), (M, D) detached points; batch_x, batch_y: sorted int64 item vectors (every item with
    queries holds >= k points of y); p: 2 (euclidean) or 1 (manhattan); backend: "keops" or "torch".
    """
    device, dim = x.device, x.shape[1]
    num_items = int(torch.maximum(batch_x.max(), batch_y.max())) + 1
    grid = voxel_grid(x, y, num_items, choose_cell_size(y, batch_y, points_per_cell))
    coords_x, coords_y = grid.coords(x), grid.coords(y)
    keys_x, perm_x = torch.sort(grid.keys(batch_x, coords_x), stable=True)
    keys_y, perm_y = torch.sort(grid.keys(batch_y, coords_y), stable=True)
    xs, ys = x[perm_x].contiguous(), y[perm_y].contiguous()

    voxel_keys, voxel_sizes = torch.unique_consecutive(keys_x, return_counts=True)
    voxel_end = torch.cumsum(voxel_sizes, 0)
    voxel_rows = torch.stack([voxel_end - voxel_sizes, voxel_end], dim=1)
    first_row = voxel_rows[:, 0]
    batch_q, coords_q = batch_x[perm_x][first_row], coords_x[perm_x][first_row]
    item_start_y = torch.searchsorted(batch_y, torch.arange(num_items, device=device))
    item_end_y = torch.searchsorted(batch_y, torch.arange(num_items, device=device), right=True)
    num_voxels = voxel_keys.shape[0]

    def whole_item(voxels):
        return Neighbourhoods(voxels, item_start_y[batch_q[voxels]], item_end_y[batch_q[voxels]])

    def restrict(hoods, voxels, keep):
        mask = keep[hoods.voxel]
        return Neighbourhoods(voxels[hoods.voxel[mask]], hoods.start[mask], hoods.end[mask])

    # Pass 1: the smallest cube around each voxel holding k source points.
    pending = torch.arange(num_voxels, device=device)
    pass1 = []
    for ring in range(MAX_RING + 1):
        if pending.numel() == 0:
            break
        offsets = column_offsets(ring, dim, device)
        heights = torch.full((pending.numel(), offsets.shape[0]), ring, dtype=torch.int64, device=device)
        found = Neighbourhoods(*column_ranges(grid, keys_y, batch_q[pending], coords_q[pending], offsets, heights))
        enough = found.counts(pending.numel()) >= k
        pass1.append(restrict(found, pending, enough))
        pending = pending[~enough]
    exact = torch.zeros(num_voxels, dtype=torch.bool, device=device)
    exact[pending] = True
    pass1.append(whole_item(pending))
    all_voxels = torch.arange(num_voxels, device=device)
    idx = ranged_topk(xs, ys, voxel_rows, Neighbourhoods.concat(pass1), all_voxels, k, p, backend)

    # Pass 2: every voxel within the k-th candidate distance of the query voxel's box.
    refine = all_voxels[~exact]
    if refine.numel():
        diff = xs[:, None, :].double() - ys[idx].double()
        kth = (diff**2).sum(-1).sqrt() if p == 2 else diff.abs().sum(-1)
        row_voxel = torch.repeat_interleave(all_voxels, voxel_sizes)
        bound = torch.zeros(num_voxels, dtype=torch.float64, device=device)
        bound = bound.scatter_reduce(0, row_voxel, kth.max(dim=1).values, reduce="amax")
        bound = bound * (1 + BOUND_SLACK) + BOUND_SLACK * grid.size
        width = (bound / grid.size).floor().long() + 1
        too_wide = refine[width[refine] > MAX_WIDTH]
        pass2 = [whole_item(too_wide)]
        for w in width[refine].unique().tolist():
            if w > MAX_WIDTH:
                continue
            voxels = refine[width[refine] == w]
            offsets = column_offsets(w, dim, device)
            gaps = (offsets.abs() - 1).clamp_min(0).double() * grid.size  # (C, D - 1)
            radius = bound[voxels][:, None]
            if p == 2:
                left = radius**2 - (gaps**2).sum(-1)[None, :]
                reach = left.clamp_min(0).sqrt()
            else:
                left = radius - gaps.sum(-1)[None, :]
                reach = left.clamp_min(0)
            heights = torch.where(left >= 0, (reach / grid.size).floor().long() + 1, -1)
            found = column_ranges(grid, keys_y, batch_q[voxels], coords_q[voxels], offsets, heights)
            pass2.append(Neighbourhoods(voxels[found[0]], found[1], found[2]))
        refined = ranged_topk(xs, ys, voxel_rows, Neighbourhoods.concat(pass2), refine, k, p, backend)
        rows = torch.repeat_interleave(~exact, voxel_sizes)
        idx[rows] = refined[rows]

    result = torch.empty_like(idx)
    result[perm_x] = perm_y[idx]
    return result
