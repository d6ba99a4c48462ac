"""Voxel grids: which voxel of side v each point falls in, and weighted means per voxel.

Voxels are the cells prod_d [k_d v, (k_d + 1) v) of a grid anchored at the origin, separately for
each batch item (items are never mixed).
"""

from __future__ import annotations

import torch


def voxel_index(x: torch.Tensor, voxel_size: float, batch: torch.Tensor | None = None):
    """``(voxels, voxel_of)``: the occupied voxels (V, D) as integer cells, preceded by the batch
    item when ``batch`` is given (V, D + 1), sorted by item then cell; and the voxel of each point (N,)."""
    cells = torch.floor(x.detach() / voxel_size)
    if not bool((cells.abs() < 2**62).all()):
        raise ValueError(f"voxel_size={voxel_size} is too small for coordinates of magnitude {float(x.abs().max()):.3g}")
    keys = cells.long()
    if batch is not None:
        keys = torch.cat([batch[:, None], keys], dim=1)
    return torch.unique(keys, dim=0, return_inverse=True)


def pool_weighted(x, values, weights, voxel_size: float, batch=None):
    """``(centroids, values_pooled, weights_pooled, batch_pooled)`` per occupied voxel V:
    W_V = sum_{j in V} w_j, and the w-weighted means of x (N, D) and values (N, E) over V (plain
    means where W_V = 0). Differentiable in x, values and weights."""
    voxels, voxel_of = voxel_index(x, voxel_size, batch)
    num_voxels = voxels.shape[0]
    pooled_weights = weights.new_zeros(num_voxels).index_add(0, voxel_of, weights)
    mean_weights = torch.where(pooled_weights[voxel_of] > 0, weights, torch.ones_like(weights))
    totals = mean_weights.new_zeros(num_voxels).index_add(0, voxel_of, mean_weights)[:, None]

    def mean(t):
        return t.new_zeros(num_voxels, t.shape[1]).index_add(0, voxel_of, mean_weights[:, None] * t) / totals

    batch_pooled = None if batch is None else voxels[:, 0].contiguous()
    return mean(x), mean(values), pooled_weights, batch_pooled
