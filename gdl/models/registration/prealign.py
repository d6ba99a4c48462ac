"""Pre-alignment: robust-OT matching then a confidence-weighted rigid or affine fit, iterated
coarse to fine.

At each blur scale s (largest first) and iteration: match the current warped source T(x) to the
target by robust OT (reach proportional to s), then refit T = argmin_T sum_i c_i |T(x_i) - y_hat_i|^2
on the original source (registry ``weighted_procrustes``). Coarse scales see the whole scene and
survive large motions; fine scales make the fit accurate. Rotation search: the first scale starts
from several rotations about ``search_axis`` and keeps the one whose matches fit best.
"""

from __future__ import annotations

import math

import torch

import gdl.ops
from gdl.models.registration.matching import RobustMatching
from gdl.ops.checks import check_choice, check_positive


def apply_transform(x: torch.Tensor, linear: torch.Tensor, translation: torch.Tensor, batch=None) -> torch.Tensor:
    """x_i -> A_b x_i + t_b with per-item (B, D, D) matrices and (B, D) translations."""
    if linear.dim() == 2:
        linear, translation = linear[None], translation[None]
    index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if batch is None else batch
    return torch.einsum("nij,nj->ni", linear[index], x) + translation[index]


def rotation_about(axis: int, angle: float, dtype=torch.float32) -> torch.Tensor:
    """The 3 x 3 rotation by ``angle`` radians about coordinate axis ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    rotation = torch.eye(3, dtype=dtype)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


class Prealign(torch.nn.Module):
    """``displacement = prealign(source, target, batch_source, batch_target)``: T(x) - x, T rigid or affine."""

    def __init__(
        self,
        mode: str = "rigid",
        blurs=(1.0, 0.3, 0.1),
        reach_factor: float = 3.0,
        iterations: int = 3,
        rotation_search: int = 1,
        search_axis: int = 1,
        scaling: float = 0.9,
        backend: str = "auto",
    ):
        super().__init__()
        self.mode = check_choice("mode", mode, ("rigid", "affine"))
        self.iterations = check_positive("iterations", iterations, integer=True)
        self.rotation_search = check_positive("rotation_search", rotation_search, integer=True)
        self.search_axis = check_choice("search_axis", search_axis, (0, 1, 2))
        blurs = [float(check_positive("blurs", b)) for b in blurs]
        self.matchings = torch.nn.ModuleList(
            RobustMatching(b, reach_factor * b if reach_factor else None, scaling, backend) for b in blurs
        )
        self.fit = gdl.ops.get("weighted_procrustes", mode=mode, backend=backend)

    def transform(self, source, target, batch_source=None, batch_target=None):
        """The fitted per-item (linear (B, 3, 3), translation (B, 3))."""
        centre_shift = self._centroid_shift(source, target, batch_source, batch_target)
        best = None
        for k in range(self.rotation_search):
            rotation = rotation_about(self.search_axis, 2 * math.pi * k / self.rotation_search, source.dtype)
            linear = rotation.to(source.device).expand(centre_shift.shape[0], 3, 3)
            translation = centre_shift - torch.einsum("bij,bj->bi", linear, self._centroids(source, batch_source, centre_shift.shape[0])) + self._centroids(source, batch_source, centre_shift.shape[0])
            linear, translation, residual = self._refine(source, target, batch_source, batch_target, linear, translation, self.matchings[:1])
            if best is None:
                best = [linear, translation, residual]
            else:
                better = residual < best[2]
                best[0] = torch.where(better[:, None, None], linear, best[0])
                best[1] = torch.where(better[:, None], translation, best[1])
                best[2] = torch.where(better, residual, best[2])
        linear, translation, _ = self._refine(source, target, batch_source, batch_target, best[0], best[1], self.matchings[1:])
        return linear, translation

    def forward(self, source, target, batch_source=None, batch_target=None):
        linear, translation = self.transform(source, target, batch_source, batch_target)
        return apply_transform(source, linear, translation, batch_source) - source

    def _refine(self, source, target, batch_source, batch_target, linear, translation, matchings):
        residual = None
        for matching in matchings:
            for _ in range(self.iterations):
                warped = apply_transform(source, linear, translation, batch_source)
                matched, confidence = matching(warped, target, batch_source, batch_target)
                linear, translation = self.fit(source, matched, confidence, batch_source)
                if linear.dim() == 2:
                    linear, translation = linear[None], translation[None]
                fitted = apply_transform(source, linear, translation, batch_source)
                residual = self._item_mean(confidence * ((fitted - matched) ** 2).sum(1), batch_source, linear.shape[0])
                residual = residual / self._item_mean(confidence, batch_source, linear.shape[0]).clamp_min(1e-12) - self._item_mean(confidence, batch_source, linear.shape[0])
        return linear, translation, residual

    @staticmethod
    def _item_mean(values, batch, num_items):
        index = torch.zeros(values.shape[0], dtype=torch.long, device=values.device) if batch is None else batch
        total = values.new_zeros(num_items).index_add_(0, index, values)
        count = values.new_zeros(num_items).index_add_(0, index, torch.ones_like(values))
        return total / count.clamp_min(1)

    def _centroids(self, x, batch, num_items):
        index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if batch is None else batch
        total = x.new_zeros(num_items, x.shape[1]).index_add_(0, index, x)
        count = x.new_zeros(num_items).index_add_(0, index, torch.ones_like(x[:, 0]))
        return total / count.clamp_min(1)[:, None]

    def _centroid_shift(self, source, target, batch_source, batch_target):
        num_items = max(int(batch_source.max()) + 1 if batch_source is not None else 1, int(batch_target.max()) + 1 if batch_target is not None else 1)
        return self._centroids(target, batch_target, num_items) - self._centroids(source, batch_source, num_items)
