"""K nearest neighbours."""

from __future__ import annotations

import torch

from gdl.ops.core.backend import import_pykeops
from gdl.ops.core.base import Operator, row_chunks
from gdl.ops.core.batching import batch_pair, require_nonempty_targets
from gdl.ops.core.block_sparse import MAX_DIM, grid_knn
from gdl.ops.core.checks import (
    check_batch,
    check_choice,
    check_pair,
    check_points,
    check_positive,
    check_same_device_dtype,
)
from gdl.ops.core.kdtree import kdtree_search
from gdl.ops.core.registry import register

METRICS = ("euclidean", "manhattan", "cosine")
METHODS = ("auto", "brute", "grid", "kdtree")
# method="auto" on the CPU uses a KD-tree when D <= KDTREE_MAX_DIM: exact, and one to two orders of
# magnitude faster than any all-pairs search there (benchmarks/results/ops_cpu.json). On a GPU it
# uses the voxel grid when D <= 3 and the average item has at least GRID_MIN_POINTS query and
# source points (on a GPU brute force takes about a millisecond at 30k points), brute force otherwise.
KDTREE_MAX_DIM = 3
GRID_MIN_POINTS = 50_000


def pairwise_distance(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    """Row-wise d(x_i, y_i) for matching rows (..., D) -> (...), differentiable."""
    if metric == "euclidean":
        return torch.linalg.vector_norm(x - y, dim=-1)  # its gradient at x = y is 0, not NaN
    if metric == "manhattan":
        return (x - y).abs().sum(-1)
    return 1 - (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))


def _search_key(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Coordinates in which the metric's ranking is a plain reduction (unit vectors for cosine)."""
    return x / x.norm(dim=-1, keepdim=True) if metric == "cosine" else x


@register("knn")
class KNN(Operator):
    r"""The k nearest neighbours of each point x_i among the points y_j of the same batch item.

    Returns ``(dists, idx)`` of shape (N, k), sorted by increasing distance, where
    ``idx[i, r]`` indexes a row of y (of x when y is None) and ``dists[i, r] = d(x_i, y_idx[i, r])``
    for d one of

        euclidean  |x - y|_2 (not squared),   manhattan  |x - y|_1,
        cosine     1 - <x, y> / (|x| |y|).

    ``dists`` is differentiable with respect to x and y (the ranking itself is piecewise constant).
    With ``exclude_self`` (only when y is None) a point is never its own neighbour.

    ``method="brute"`` compares every pair of the same item; ``"grid"`` (D <= 3 only) is the exact
    block-sparse search of :mod:`gdl.ops.core.block_sparse`, which only visits the voxels that can hold
    a neighbour; ``"kdtree"`` is an exact KD-tree search per batch item (:mod:`gdl.ops.core.kdtree`:
    pykdtree, or scipy's cKDTree for manhattan; it runs on the CPU, other devices' points are
    copied there). ``"auto"`` picks the KD-tree on the CPU for D <= 3, and on a GPU the grid for
    large low-dimensional clouds, brute force otherwise. All methods return the same neighbours
    (up to ties). ``grid_cell_points`` is the average number of source points per occupied voxel of
    the grid (a speed knob only).
    """

    def __init__(
        self,
        k: int,
        metric: str = "euclidean",
        exclude_self: bool = False,
        method: str = "auto",
        grid_cell_points: int = 32,
        backend: str = "auto",
    ):
        super().__init__(backend)
        self.k = check_positive("k", k, integer=True)
        self.metric = check_choice("metric", metric, METRICS)
        self.exclude_self = bool(exclude_self)
        self.method = check_choice("method", method, METHODS)
        self.grid_cell_points = check_positive("grid_cell_points", grid_cell_points, integer=True)

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, metric={self.metric!r}, exclude_self={self.exclude_self}, "
            f"method={self.method!r}, " + super().extra_repr()
        )

    def method_for(self, x: torch.Tensor, y: torch.Tensor, num_items: int) -> str:
        """``"brute"``, ``"grid"`` or ``"kdtree"``: the search used for these inputs."""
        low_dim = x.shape[1] <= MAX_DIM
        if self.method == "grid" and not low_dim:
            raise ValueError(f"method='grid' needs points of dimension D <= {MAX_DIM}, got D = {x.shape[1]}")
        if self.method != "auto":
            return self.method
        if x.device.type == "cpu" and x.shape[1] <= KDTREE_MAX_DIM:
            return "kdtree"
        large = min(x.shape[0], y.shape[0]) >= GRID_MIN_POINTS * num_items
        return "grid" if low_dim and large else "brute"

    def forward(self, x, y=None, batch_x=None, batch_y=None):
        check_points("x", x)
        self_search = y is None
        if self_search:
            if batch_y is not None:
                raise ValueError("batch_y was given without y: pass y, or only batch_x")
            y, batch_y = x, batch_x
        else:
            if isinstance(y, torch.Tensor):  # devices first: values on another device are not read
                check_same_device_dtype("y", y, x)
            check_points("y", y)
            check_pair(x, y)
            if self.exclude_self:
                raise ValueError("exclude_self=True needs y=None (a search of x among itself)")
        check_batch("batch_x", batch_x, x.shape[0], x.device)
        check_batch("batch_y", batch_y, y.shape[0], y.device)
        if self.metric == "cosine":
            for name, t in (("x", x), ("y", y)):
                if bool((t.norm(dim=-1) == 0).any()):
                    raise ValueError(f"{name} has zero vectors: the cosine metric is undefined there")
        pair = batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
        require_nonempty_targets(pair)
        k_search = self.k + (1 if self.exclude_self else 0)
        too_small = ((pair.counts_x > 0) & (pair.counts_y < k_search)).nonzero().flatten().tolist()
        if too_small:
            b = too_small[0]
            raise ValueError(
                f"k={self.k} is larger than batch item {b}, which has {int(pair.counts_y[b])} points "
                f"to search{' besides the query point itself' if self.exclude_self else ''}"
            )
        method = self.method_for(x, y, pair.num_items)
        with torch.no_grad():
            xs = _search_key(x.detach(), self.metric).contiguous()
            ys = _search_key(y.detach(), self.metric).contiguous()
            p = 1 if self.metric == "manhattan" else 2  # cosine: euclidean on unit vectors
            if method == "kdtree":
                idx = kdtree_search(xs, ys, pair, k_search, p)
            elif method == "grid":
                backend = self.backend_for(x.device)
                idx = grid_knn(
                    xs, ys, _items(batch_x, x), _items(batch_y, y), k_search, p, backend, self.grid_cell_points
                )
            elif self.backend_for(x.device) == "keops":
                idx = self._indices_keops(xs, ys, pair, k_search)
            else:
                idx = self._indices_torch(xs, ys, pair, k_search)
            if self.exclude_self:
                idx = _drop_self(idx, torch.arange(x.shape[0], device=x.device))
        dists = pairwise_distance(x[:, None, :], gather_rows(y, idx), self.metric)
        return sort_rows(dists, idx)

    def _indices_keops(self, x, y, pair, k):
        LazyTensor = import_pykeops().LazyTensor
        x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
        if self.metric == "euclidean":
            d_ij = ((x_i - y_j) ** 2).sum(-1)
        elif self.metric == "manhattan":
            d_ij = (x_i - y_j).abs().sum(-1)
        else:
            d_ij = -(x_i * y_j).sum(-1)
        if pair.num_items > 1:
            d_ij.ranges = pair.keops_ranges(x.device)
        return d_ij.argKmin(k, dim=1).long()

    def _indices_torch(self, x, y, pair, k):
        idx = torch.empty(x.shape[0], k, dtype=torch.int64, device=x.device)
        for _, sx, sy in pair.item_slices():
            ys = y[sy]
            for rows in row_chunks(sx.stop - sx.start, ys.shape[0]):
                xq = x[sx][rows]
                if self.metric == "euclidean":
                    d = torch.cdist(xq, ys, compute_mode="donot_use_mm_for_euclid_dist")
                elif self.metric == "manhattan":
                    d = torch.cdist(xq, ys, p=1)
                else:
                    d = -xq @ ys.T
                idx[sx][rows] = d.topk(k, dim=1, largest=False, sorted=True).indices + sy.start
        return idx


def gather_rows(y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``y[idx]`` for an (N, k) index tensor, as one ``index_select`` (faster on the CPU)."""
    return y.index_select(0, idx.reshape(-1)).view(*idx.shape, y.shape[1])


def sort_rows(dists: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows by increasing distance: ties and rounding in a search may leave a few out of order;
    only those are sorted (out of place, so that autograd still sees the distances)."""
    unsorted = (dists[:, 1:] < dists[:, :-1]).any(dim=1).nonzero().flatten()
    if unsorted.numel() == 0:
        return dists, idx
    sorted_dists, order = dists[unsorted].sort(dim=1, stable=True)
    dists = dists.index_put((unsorted,), sorted_dists)
    return dists, idx.index_put((unsorted,), idx[unsorted].gather(1, order))


def _items(batch: torch.Tensor | None, points: torch.Tensor) -> torch.Tensor:
    return torch.zeros(points.shape[0], dtype=torch.int64, device=points.device) if batch is None else batch


def _drop_self(idx: torch.Tensor, self_index: torch.Tensor) -> torch.Tensor:
    """Remove each row's own index from k+1 neighbours (or its farthest one if it is absent)."""
    is_self = idx == self_index[:, None]
    is_self[:, -1] |= ~is_self.any(dim=1)
    keep = ~(is_self & (is_self.cumsum(dim=1) == 1))
    return idx[keep].view(idx.shape[0], idx.shape[1] - 1)
