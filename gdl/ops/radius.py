"""Radius search: the neighbours within distance r, at most ``max_neighbors`` of them."""

from __future__ import annotations

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair, require_nonempty_targets
from gdl.ops.core.checks import check_batch, check_choice, check_pair, check_points, check_positive
from gdl.ops.core.kdtree import kdtree_search
from gdl.ops.knn import KDTREE_MAX_DIM, KNN, METHODS, gather_rows, pairwise_distance, sort_rows
from gdl.ops.core.registry import register


@register("radius")
class Radius(Operator):
    r"""The points y_j of the same batch item with |x_i - y_j| <= r, nearest first.

    Returns ``(dists, idx)`` of shape (N, max_neighbors): ``idx[i]`` lists the (at most
    ``max_neighbors``) nearest rows of y (of x when y is None, x_i itself included) within
    euclidean distance ``r`` of x_i, ``dists`` their distances |x_i - y_idx|, differentiable in
    x and y. Missing neighbours are padded with ``idx = -1`` and ``dist = +inf``.

    ``method="kdtree"`` is a ball query per batch item (:mod:`gdl.ops.core.kdtree`): a KD-tree search of
    the ``max_neighbors`` nearest points that prunes everything beyond r, on the CPU (other devices'
    points are copied there). ``"brute"`` and ``"grid"`` are the k-nearest-neighbour searches of
    :class:`gdl.ops.knn.KNN` (k = max_neighbors, or the size of a smaller batch item) followed by
    a mask beyond r. ``"auto"`` picks the KD-tree on the CPU for D <= 3, KNN's choice elsewhere.
    """

    def __init__(self, r: float, max_neighbors: int = 32, method: str = "auto", backend: str = "auto"):
        super().__init__(backend)
        self.r = float(check_positive("r", r))
        self.max_neighbors = check_positive("max_neighbors", max_neighbors, integer=True)
        self.method = check_choice("method", method, METHODS)

    def extra_repr(self) -> str:
        return f"r={self.r}, max_neighbors={self.max_neighbors}, method={self.method!r}, " + super().extra_repr()

    def forward(self, x, y=None, batch_x=None, batch_y=None):
        check_points("x", x)
        if y is None:
            if batch_y is not None:
                raise ValueError("batch_y was given without y: pass y, or only batch_x")
            y, batch_y = x, batch_x
        else:
            check_points("y", y)
            check_pair(x, y)
        check_batch("batch_x", batch_x, x.shape[0], x.device)
        check_batch("batch_y", batch_y, y.shape[0], y.device)
        pair = batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
        require_nonempty_targets(pair)

        use_tree = self.method == "kdtree" or (
            self.method == "auto" and x.device.type == "cpu" and x.shape[1] <= KDTREE_MAX_DIM
        )
        if use_tree:
            dists, idx = self._ball_query(x, y, pair)
        else:
            dists, idx = self._knn_then_mask(x, y, batch_x, batch_y, pair)
        outside = dists > self.r
        dists = dists.masked_fill(outside, float("inf"))
        idx = idx.masked_fill(outside, -1)
        return dists, idx

    def _ball_query(self, x, y, pair):
        # A bound a hair above r: the tree's rounding never drops a point that torch puts within r.
        with torch.no_grad():
            idx = kdtree_search(x, y, pair, self.max_neighbors, p=2, bound=self.r * (1 + 1e-5))
        found = idx >= 0
        dists = pairwise_distance(x[:, None, :], gather_rows(y, idx.clamp(min=0)), "euclidean")
        return sort_rows(dists.masked_fill(~found, float("inf")), idx)

    def _knn_then_mask(self, x, y, batch_x, batch_y, pair):
        dists = x.new_full((x.shape[0], self.max_neighbors), float("inf"))
        idx = torch.full((x.shape[0], self.max_neighbors), -1, dtype=torch.int64, device=x.device)
        # Items smaller than max_neighbors are searched with k = their size, in groups of equal k.
        k_items = pair.counts_y.clamp(max=self.max_neighbors)
        for k in k_items[pair.counts_x > 0].unique().tolist():
            items = (k_items == k) & (pair.counts_x > 0)
            rows_x = _rows_of(items, pair.start_x, pair.end_x).to(x.device)
            rows_y = _rows_of(items, pair.start_y, pair.end_y).to(y.device)
            sub_batch_x = None if batch_x is None else batch_x[rows_x]
            sub_batch_y = None if batch_y is None else batch_y[rows_y]
            knn = KNN(k=int(k), method=self.method, backend=self.backend)
            d, j = knn(x[rows_x], y[rows_y], sub_batch_x, sub_batch_y)
            dists[rows_x, :k] = d
            idx[rows_x, :k] = rows_y[j]
        return dists, idx


def _rows_of(items: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Row indices of the selected items, in order (CPU int64)."""
    ranges = [torch.arange(s, e) for s, e in zip(start[items].tolist(), end[items].tolist())]
    return torch.cat(ranges) if ranges else torch.zeros(0, dtype=torch.int64)
