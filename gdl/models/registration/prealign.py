"""Pre-alignment: robust-OT matching then a confidence-weighted rigid or affine fit, iterated
coarse to fine.

Starting from the translation that aligns the centroids (``start="centroids"``) or from the identity
(``start="identity"``: frames that share a coordinate system, such as consecutive lidar sweeps,
whose centroids move with what the sensor sees rather than with the sensor), at each blur scale s
(largest first) and iteration: match the warped source T(x) to the target by robust OT
(reach = ``reach_factor`` * s), then refit T = argmin_T sum_i w_i |T(x_i) - y_hat_i|^2 on the
original source (registry ``weighted_procrustes``) with the robust weights

    w_i = c_i / (1 + r_i^2 / tau^2)^2,   r_i = |T(x_i) - y_hat_i|,
    tau = max(``robust_factor`` * s, median of the item's r_i)

(Geman-McClure, its scale never below the typical residual so that a poor start still sees most
points; ``robust_factor=None``: w_i = c_i). They let the fit lock onto the dominant motion,
e.g. the static background of a lidar scene, instead of averaging it with moving objects. Coarse
scales see the whole scene and survive large motions; fine scales make the fit accurate. With
``rotation_search`` = R > 1 the first scale starts from R rotations about ``search_axis`` and keeps,
per batch item, the one with the lowest unbalanced matching cost
mean_i [c_i |T(x_i) - y_hat_i|^2 + reach^2 max(0, 1 - c_i)]. The fit uses at most ``num_points``
random points of each cloud (drawn from ``subset_seed``); ``weights_source`` / ``weights_target`` (e.g. vessel masses) are the
transport masses a_i, b_j, normalised per cloud (uniform when None). The fitted map applies exactly to
any other points (``fit(...).at(points)``).
"""

from __future__ import annotations

import math
import time

import torch

import gdl.ops
from gdl.models.registration.matching import RobustMatching, check_seed, item_masses, subset_pair
from gdl.models.registration.step import RegistrationStep
from gdl.ops.core.batching import num_items
from gdl.ops.core.checks import check_choice, check_positive
from gdl.progress import report


def apply_transform(x: torch.Tensor, linear: torch.Tensor, translation: torch.Tensor, batch=None) -> torch.Tensor:
    """x_i -> A_b x_i + t_b with (D, D) and (D,), or per-item (B, D, D) and (B, D)."""
    if linear.dim() == 2:
        linear, translation = linear[None], translation[None]
    index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if batch is None else batch
    return torch.einsum("nij,nj->ni", linear[index], x) + translation[index]


def geman_mcclure(residual: torch.Tensor, tau) -> torch.Tensor:
    """The robust weights 1 / (1 + r^2 / tau^2)^2 (tau a number or per-row (N,) scales)."""
    return 1 / (1 + (residual / tau) ** 2) ** 2


def rotation_about(axis: int, angle: float, dtype=torch.float32) -> torch.Tensor:
    """The 3 x 3 rotation by ``angle`` radians about coordinate axis ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    rotation = torch.eye(3, dtype=dtype)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


def item_means(values: torch.Tensor, batch: torch.Tensor | None, items: int) -> torch.Tensor:
    """Per-item means of (N, ...) values."""
    index = torch.zeros(values.shape[0], dtype=torch.long, device=values.device) if batch is None else batch
    total = values.new_zeros((items,) + values.shape[1:]).index_add_(0, index, values)
    count = values.new_zeros(items).index_add_(0, index, torch.ones_like(values[:, 0] if values.dim() > 1 else values))
    return total / count.clamp_min(1).view((items,) + (1,) * (values.dim() - 1))


def item_medians(values: torch.Tensor, batch: torch.Tensor | None, items: int) -> torch.Tensor:
    """Per-item (lower) medians of (N,) values; 0 for an empty item."""
    if batch is None:
        return values.median()[None]
    return torch.stack([values[batch == b].median() if bool((batch == b).any()) else values.new_zeros(()) for b in range(items)])


class AffineWarp:
    """A fitted per-item map T(x) = A_b x + t_b: ``displacement`` at the fitted points, ``at(points)`` anywhere."""

    def __init__(self, linear, translation, displacement):
        self.linear, self.translation, self.displacement = linear, translation, displacement

    def at(self, points, batch=None, initial=None):
        return apply_transform(points, self.linear, self.translation, batch) - points


class Prealign(RegistrationStep):
    """``displacement = prealign(source, target, batch_source, batch_target)`` = T(x) - x."""

    takes_masses = True

    def __init__(
        self,
        mode: str = "rigid",
        blurs=(1.0, 0.3, 0.1),
        reach_factor: float | None = 3.0,
        iterations: int = 2,
        rotation_search: int = 1,
        search_axis: int = 1,
        num_points: int | None = 2048,
        subset_seed: int = 0,
        scaling: float | None = None,
        robust_factor: float | None = None,
        start: str = "centroids",
        backend: str = "auto",
        solver: str = "auto",
    ):
        super().__init__()
        self.start = check_choice("start", start, ("centroids", "identity"))
        self.robust_factor = None if robust_factor is None else float(check_positive("robust_factor", robust_factor))
        self.mode = check_choice("mode", mode, ("rigid", "affine"))
        self.iterations = check_positive("iterations", iterations, integer=True)
        self.rotation_search = check_positive("rotation_search", rotation_search, integer=True)
        self.search_axis = check_choice("search_axis", search_axis, (0, 1, 2))
        self.num_points = None if num_points is None else check_positive("num_points", num_points, integer=True)
        self.subset_seed = check_seed("subset_seed", subset_seed)
        blurs = [float(check_positive("blurs", b)) for b in blurs]
        self.matchings = torch.nn.ModuleList(
            RobustMatching(b, reach_factor * b if reach_factor else None, scaling, backend, solver) for b in blurs
        )
        self.procrustes = gdl.ops.get("weighted_procrustes", mode=mode, backend=backend)

    def fit(self, source, target, batch_source=None, batch_target=None, weights_source=None, weights_target=None) -> AffineWarp:
        """The fitted map, with its displacement at the source points."""
        linear, translation = self.transform(source, target, batch_source, batch_target, weights_source, weights_target)
        return AffineWarp(linear, translation, apply_transform(source, linear, translation, batch_source) - source)

    def transform(self, source, target, batch_source=None, batch_target=None, weights_source=None, weights_target=None):
        """The fitted per-item (linear (B, 3, 3), translation (B, 3))."""
        items = num_items(batch_source, batch_target)
        a = item_masses(weights_source, source.shape[0], batch_source, source, "weights_source")
        b = item_masses(weights_target, target.shape[0], batch_target, target, "weights_target")
        i, j = subset_pair(batch_source, source.shape[0], batch_target, target.shape[0], self.num_points, self.subset_seed)
        x, bx = source[i], None if batch_source is None else batch_source[i]
        y, by = target[j], None if batch_target is None else batch_target[j]
        a, b = item_masses(a[i], len(i), bx, x), item_masses(b[j], len(j), by, y)
        mass = None if weights_source is None else a  # the fit weighs each match by its transported mass
        start = time.perf_counter()
        centre_x, centre_y = item_means(x, bx, items), item_means(y, by, items)
        best = None
        for k in range(self.rotation_search):
            rotation = rotation_about(self.search_axis, 2 * math.pi * k / self.rotation_search, x.dtype)
            linear = rotation.to(x.device).expand(items, 3, 3)
            translation = (
                centre_y - torch.einsum("bij,bj->bi", linear, centre_x) if self.start == "centroids" else torch.zeros_like(centre_y)
            )
            linear, translation, cost = self._refine(x, y, bx, by, (a, b, mass), linear, translation, self.matchings[:1], start)
            if best is None:
                best = [linear, translation, cost]
                continue
            better = cost < best[2]
            best = [
                torch.where(better[:, None, None], linear, best[0]),
                torch.where(better[:, None], translation, best[1]),
                torch.where(better, cost, best[2]),
            ]
        linear, translation, _ = self._refine(x, y, bx, by, (a, b, mass), best[0], best[1], self.matchings[1:], start)
        return linear, translation

    def _refine(self, x, y, bx, by, masses, linear, translation, matchings, start):
        cost = None
        a, b, mass = masses
        for matching in matchings:
            report("prealign", f"{self.mode} fit at blur {matching.blur:g} ({len(x)} -> {len(y)} points)", start)
            for _ in range(self.iterations):
                warped = apply_transform(x, linear, translation, bx)
                matched, confidence = matching(warped, y, bx, by, a, b)
                weights = confidence
                if self.robust_factor is not None:
                    residual = (warped - matched).norm(dim=1)
                    tau = item_medians(residual, bx, linear.shape[0]).clamp_min(self.robust_factor * matching.blur)
                    weights = confidence * geman_mcclure(residual, tau[0] if bx is None else tau[bx])
                linear, translation = self.procrustes(x, matched, weights if mass is None else weights * mass, bx)
                if linear.dim() == 2:
                    linear, translation = linear[None], translation[None]
                residual = ((apply_transform(x, linear, translation, bx) - matched) ** 2).sum(1)
                reach = matching.reach if matching.reach is not None else 0.0
                cost = item_means(confidence * residual + reach**2 * (1 - confidence).clamp_min(0), bx, linear.shape[0])
        return linear, translation, cost
