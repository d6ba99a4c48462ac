"""Surface normals by windowed principal component analysis."""

from __future__ import annotations

from functools import partial

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair
from gdl.ops.core.checks import check_batch, check_finite, check_points, check_positive, check_same_device_dtype
from gdl.ops.core.locality import check_truncate
from gdl.ops.core.registry import register
from gdl.ops.core.window import concat, outer, sqnorm, window

# How far from 1 the length of a "unit" normal may be before it is rejected.
UNIT_TOLERANCE = 1e-3


def check_unit_normals(name: str, normals, x: torch.Tensor) -> torch.Tensor:
    """Finite unit vectors of shape (N, 3) on the device and dtype of the points ``x``."""
    if not isinstance(normals, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(normals).__name__}")
    if tuple(normals.shape) != (x.shape[0], 3):
        raise ValueError(f"{name} must have shape ({x.shape[0]}, 3) to match x, got {tuple(normals.shape)}")
    check_same_device_dtype(name, normals, x)
    check_finite(name, normals)
    error = (normals.detach().norm(dim=1) - 1).abs()
    if bool((error > UNIT_TOLERANCE).any()):
        worst = int(error.argmax())
        raise ValueError(
            f"{name} must be unit vectors: row {worst} has length {float(normals[worst].norm()):.6g} "
            f"({int((error > UNIT_TOLERANCE).sum())} rows off by more than {UNIT_TOLERANCE})"
        )
    return normals


def gaussian_weight(d, scale: float):
    """w = exp(-|d|^2 / (2 scale^2)) for offsets d = x_j - x_i (a windowed term, :mod:`gdl.ops.core.window`)."""
    return (-(1 / (2 * scale**2)) * sqnorm(d)).exp()


def _weight(x_i, x_j, scale: float):
    return gaussian_weight(x_j - x_i, scale)


def _moment_terms(x_i, x_j, scale: float):
    """w_ij [1, d_ij, d_ij d_ij^T] (13 features), d_ij = x_j - x_i."""
    d = x_j - x_i
    w = gaussian_weight(d, scale)
    return concat(w, w * d, w * outer(d, d))


@register("normals")
class Normals(Operator):
    r"""Unit normals n_i: the eigenvectors of the smallest eigenvalue of Gaussian-weighted local covariances.

    n_i is the eigenvector of the smallest eigenvalue of the local covariance

        C_i = sum_j w_ij (x_j - m_i)(x_j - m_i)^T / sum_j w_ij,   m_i = sum_j w_ij x_j / sum_j w_ij,
        w_ij = exp(-|x_i - x_j|^2 / (2 scale^2)),

    over the points j of the batch item of i (x of shape (N, 3)). Orientation: with ``orient_to``
    reference normals (N, 3), <n_i, orient_to_i> >= 0; with a viewpoint (3,),
    <n_i, orient_to - x_i> >= 0. Without it, the normals of each item first point away from the
    item's centroid, then each one takes the side of the window-weighted sum of its neighbours'
    normals (``smoothing_steps`` times), which makes a closed or gently curved surface consistent.
    Differentiable in x where the two smallest eigenvalues differ.

    ``truncate`` = t (None: every pair) drops the pairs farther apart than t * scale from every
    window sum (:mod:`gdl.ops.core.locality`); each dropped weight is below exp(-t^2 / 2) of the peak
    (t = 4: 3.4e-4, t = 5: 3.7e-6), and
    each dropped term of a second moment below t^2 exp(-t^2 / 2) scale^2 (t = 4: 5.4e-3 scale^2,
    t = 5: 9.3e-5 scale^2): t = 5 keeps the fit within about 1e-4 of the exact one. Where an item fits within the cutoff, the plain sum runs.
    """

    def __init__(
        self, scale: float, smoothing_steps: int = 3, backend: str = "auto", truncate: float | None = None
    ):
        super().__init__(backend)
        self.scale = float(check_positive("scale", scale))
        self.truncate = check_truncate(truncate)
        if isinstance(smoothing_steps, bool) or not isinstance(smoothing_steps, int) or smoothing_steps < 0:
            raise ValueError(f"smoothing_steps must be a non-negative integer, got {smoothing_steps!r}")
        self.smoothing_steps = smoothing_steps

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, smoothing_steps={self.smoothing_steps}, truncate={self.truncate}, "
            + super().extra_repr()
        )

    def forward(self, x, batch=None, orient_to=None):
        check_points("x", x, dim=3)
        check_batch("batch", batch, x.shape[0], x.device)
        if orient_to is not None:
            self._check_orient_to(orient_to, x)
        pair = batch_pair(batch, batch, x.shape[0], x.shape[0], "batch", "batch")
        win = window(x, x, pair, batch, batch, self.backend_for(x.device), self.truncate, self.scale)
        # m_i = sum_j w_ij [1, d_ij, d_ij d_ij^T], d_ij = x_j - x_i.
        moments = win.sum(partial(_moment_terms, scale=self.scale), i=[x], j=[x], width=13)
        weight, first, second = moments[:, :1], moments[:, 1:4], moments[:, 4:].view(-1, 3, 3)
        mean = first / weight
        covariance = second / weight[:, :, None] - mean[:, :, None] * mean[:, None, :]
        normals = torch.linalg.eigh(covariance).eigenvectors[:, :, 0]
        with torch.no_grad():
            sign = self._orientation(x, normals.detach(), batch, pair, win, orient_to)
        return normals * sign[:, None]

    @staticmethod
    def _check_orient_to(orient_to, x):
        if not isinstance(orient_to, torch.Tensor):
            raise TypeError(f"orient_to must be a torch.Tensor, got {type(orient_to).__name__}")
        if tuple(orient_to.shape) not in ((3,), (x.shape[0], 3)):
            raise ValueError(
                f"orient_to must be reference normals of shape ({x.shape[0]}, 3) or a viewpoint of "
                f"shape (3,), got {tuple(orient_to.shape)}"
            )
        check_same_device_dtype("orient_to", orient_to, x)
        check_finite("orient_to", orient_to)

    def _orientation(self, x, normals, batch, pair, win, orient_to):
        """+1 or -1 per point."""
        if orient_to is not None:
            target = orient_to - x if orient_to.dim() == 1 else orient_to
            return _sign((normals * target).sum(1))
        if batch is None:
            centroid = x.mean(0, keepdim=True)
        else:
            counts = pair.counts_x.to(x.device).clamp(min=1).to(x.dtype)[:, None]
            sums = torch.zeros(pair.num_items, 3, dtype=x.dtype, device=x.device).index_add_(0, batch, x)
            centroid = (sums / counts)[batch]
        sign = _sign((normals * (x - centroid)).sum(1))
        for _ in range(self.smoothing_steps):
            votes = win.sum(partial(_weight, scale=self.scale), i=[x], j=[x], values=normals * sign[:, None])
            sign = _sign((normals * votes).sum(1))
        return sign


def _sign(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t < 0, -torch.ones_like(t), torch.ones_like(t))
