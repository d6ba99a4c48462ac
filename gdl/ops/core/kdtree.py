"""Exact nearest-neighbour and ball queries on the CPU through KD-tree libraries, per batch item.

For each batch item b, a tree is built on its source points y_b and queried with its points x_b:

    idx[i, r] = the r-th nearest y_j to x_i (same item), among those with |x_i - y_j|_p < bound,

exactly (no approximation), nearest first, -1 where fewer than k points qualify. Unbounded
euclidean search (p = 2) uses pykdtree (OpenMP, all cores); bounded searches (ball queries, whose
pruning cKDTree does better: 2x faster than pykdtree at 100k points, k = 64, about 32 within the
bound) and manhattan ones (p = 1) use ``scipy.spatial.cKDTree`` with ``workers=-1``. Only indices come back: callers recompute distances from them in torch, so
gradients are those of the dense formula. Inputs on another device are searched on the CPU and the
indices moved back. float16/bfloat16 coordinates are searched in float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gdl.ops.core.batching import BatchPair

LEAF_SIZE = 16


def _array(t: torch.Tensor) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return np.ascontiguousarray(t.numpy())


def _query(source: np.ndarray, queries: np.ndarray, k: int, p: int, bound: float) -> np.ndarray:
    """(m, k) indices into ``source`` (``len(source)`` where missing), nearest first."""
    if p == 2 and math.isinf(bound):
        from pykdtree.kdtree import KDTree

        _, idx = KDTree(source, leafsize=LEAF_SIZE).query(queries, k=k)
    else:
        from scipy.spatial import cKDTree

        tree = cKDTree(source, leafsize=LEAF_SIZE, balanced_tree=False, compact_nodes=False)
        _, idx = tree.query(queries, k=k, p=p, distance_upper_bound=bound, workers=-1)
    return np.asarray(idx).reshape(queries.shape[0], k)


def kdtree_search(
    x: torch.Tensor, y: torch.Tensor, pair: BatchPair, k: int, p: int = 2, bound: float = math.inf
) -> torch.Tensor:
    """(N, k) int64 indices into y of the k nearest points of the same item (p-norm), or -1.

    Items with fewer than k source points return all of them, then -1. ``bound``: only points at
    distance below it are returned (a ball query that prunes the tree search).
    """
    xs, ys = _array(x), _array(y)
    if xs.dtype != ys.dtype:
        xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    idx = np.full((xs.shape[0], k), -1, dtype=np.int64)
    for _, sx, sy in pair.item_slices():
        n_source = sy.stop - sy.start
        if sx.stop == sx.start or n_source == 0:
            continue
        k_item = min(k, n_source)
        found = _query(ys[sy], xs[sx], k_item, p, bound)
        np.add(found, sy.start, out=idx[sx, :k_item], casting="unsafe")  # one pass: cast and shift
        if not math.isinf(bound):
            idx[sx, :k_item][found == n_source] = -1  # missing neighbours
    return torch.from_numpy(idx).to(x.device)
