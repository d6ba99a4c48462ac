"""Robust optimal-transport matching: each source point's image under the unbalanced OT plan.

With the plan P of the unbalanced entropic OT problem from (a, x) to (b, y) (registry ``robot_map``),
the match of x_i is the barycentre y_hat_i = sum_j P_ij y_j / sum_j P_ij and its confidence is the
mass it keeps, c_i = sum_j P_ij / a_i. Weights default to uniform over each batch item.
"""

from __future__ import annotations

import torch

import gdl.ops
from gdl.ops.core.batching import batch_pair, item_bounds, num_items


def item_masses(weights: torch.Tensor | None, n: int, batch: torch.Tensor | None, like: torch.Tensor, name: str = "weights"):
    """Transport masses: non-negative ``weights`` (N,) normalised to a unit mass per batch item,
    or uniform masses when ``weights`` is None."""
    if weights is None:
        return uniform_weights(n, batch, like)
    weights = torch.as_tensor(weights).to(like)
    if weights.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one mass per point, got {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    index = torch.zeros(n, dtype=torch.long, device=like.device) if batch is None else batch
    totals = like.new_zeros(num_items(batch)).index_add_(0, index, weights)
    if bool((totals[index] <= 0).any()):
        raise ValueError(f"{name}: every batch item needs a positive total mass")
    return weights / totals[index]


def uniform_weights(n: int, batch: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """1 / (points in the item) for every point: each item carries a unit mass."""
    if batch is None:
        return like.new_full((n,), 1.0 / n)
    counts = torch.bincount(batch).to(like.dtype)
    return 1.0 / counts[batch]


class RobustMatching(torch.nn.Module):
    """``(y_hat, confidence) = matching(x, y, batch_x, batch_y)`` by robust OT at scale ``blur``
    (``solver``: the GeomLoss solver of ``robot_map``). With ``warm_iterations``, ``match`` also
    takes and returns the OT potentials: a match of the same points a little moved refines them by
    that many Sinkhorn updates at ``blur`` instead of solving anew."""

    def __init__(self, blur: float, reach: float | None, scaling: float | None = None, backend: str = "auto",
                 solver: str = "auto", warm_iterations: int | None = None):
        super().__init__()
        self.blur, self.reach, self.warm = float(blur), reach, warm_iterations is not None
        warm = {} if warm_iterations is None else {"warm_iterations": warm_iterations}
        self.robot_map = gdl.ops.get("robot_map", blur=blur, reach=reach, scaling=scaling, solver=solver, backend=backend, **warm)

    def forward(self, x, y, batch_x=None, batch_y=None, a=None, b=None):
        return self.match(x, y, batch_x, batch_y, a, b)[:2]

    def match(self, x, y, batch_x=None, batch_y=None, a=None, b=None, start=None):
        """``(y_hat, confidence, potentials)``; ``start``: the potentials of the previous match of
        these points (used with ``warm_iterations``, ignored without)."""
        batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
        a = uniform_weights(x.shape[0], batch_x, x) if a is None else a
        b = uniform_weights(y.shape[0], batch_y, y) if b is None else b
        return self.robot_map.match(x, y, a, b, batch_x, batch_y, start if self.warm else None)


def random_subset(batch: torch.Tensor | None, n: int, num_points: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of at most ``num_points`` random points of each batch item (all of them when None),
    sorted, reproducible from ``seed``."""
    if num_points is None:
        return torch.arange(n) if batch is None else torch.arange(n, device=batch.device)
    generator = torch.Generator().manual_seed(seed)
    starts, ends = item_bounds(batch, n, num_items(batch))
    parts = [
        start + torch.randperm(end - start, generator=generator)[:num_points].sort().values
        for start, end in zip(starts.tolist(), ends.tolist())
    ]
    index = torch.cat(parts)
    return index if batch is None else index.to(batch.device)


def check_seed(name: str, value) -> int:
    """A seed: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def subset_pair(batch_source, n: int, batch_target, m: int, num_points: int | None, seed: int = 0):
    """``random_subset`` indices of a source of ``n`` points (from ``seed``) and of a target of ``m``
    points (from ``seed + 1``, so that the two draws are independent)."""
    return random_subset(batch_source, n, num_points, seed), random_subset(batch_target, m, num_points, seed + 1)
