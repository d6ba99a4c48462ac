"""Multiscale mean and Gaussian curvatures from a windowed fit of the shape operator."""

from __future__ import annotations

from functools import partial

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair
from gdl.ops.core.checks import check_batch, check_points, check_positive
from gdl.ops.core.locality import check_truncate
from gdl.ops.normals import check_unit_normals, gaussian_weight
from gdl.ops.core.registry import register
from gdl.ops.tangent_frames import tangent_basis
from gdl.ops.core.window import concat, outer, window


def _shape_terms(x_i, n_i, x_j, n_j, scale: float):
    """w_ij [1, d_ij d_ij^T, e_ij d_ij^T] (19 features), d_ij = x_j - x_i, e_ij = n_j - n_i."""
    d, e = x_j - x_i, n_j - n_i
    w = gaussian_weight(d, scale)
    return concat(w, w * outer(d, d), w * outer(e, d))


@register("curvatures")
class Curvatures(Operator):
    r"""Mean and Gaussian curvatures (H, K) at several scales, shape (N, S, 2).

    In the tangent frame (u_i, v_i) of :mod:`~gdl.ops.tangent_frames`, with p_ij = P_i (x_j - x_i)
    and q_ij = P_i (n_j - n_i) (P_i = [u_i; v_i], 2 x 3), the shape operator S_i (2 x 2) solves

        min_S  sum_j w_ij |S p_ij - q_ij|^2 / W_i + reg |S|^2 scale^2,
        w_ij = exp(-|x_i - x_j|^2 / (2 scale^2)),  W_i = sum_j w_ij,

    i.e. S_i = B_i (A_i + reg scale^2 I)^-1 with A_i = sum_j w_ij p p^T / W_i, B_i = sum_j w_ij q p^T / W_i.
    Then H = trace(sym S) / 2 and K = det(sym S). With outward normals a sphere of radius r gives
    H = 1/r, K = 1/r^2, a cylinder H = 1/(2r), K = 0 and a plane 0, 0. ``reg`` (relative to the
    window's second moment, about scale^2) damps unstable fits; it shrinks curvatures by about a
    factor 1 / (1 + reg). Invariant to rigid motions, differentiable in x and normals.

    ``truncate`` = t (None: every pair) drops, at each scale, the pairs farther apart than
    t * scale (:mod:`gdl.ops.core.locality`); each dropped weight is below exp(-t^2 / 2) of the peak
    (t = 4: 3.4e-4, t = 5: 3.7e-6), and
    each dropped term of a second moment below t^2 exp(-t^2 / 2) scale^2 (t = 4: 5.4e-3 scale^2,
    t = 5: 9.3e-5 scale^2): t = 5 keeps the fit within about 1e-4 of the exact one. Scales whose window covers an item run the plain sum.
    """

    def __init__(self, scales, reg: float = 0.01, backend: str = "auto", truncate: float | None = None):
        super().__init__(backend)
        self.truncate = check_truncate(truncate)
        scales = list(scales) if isinstance(scales, (list, tuple)) else [scales]
        if not scales:
            raise ValueError("scales must be a positive number or a non-empty list of them, got []")
        self.scales = [float(check_positive("scales", s)) for s in scales]
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg >= 0:
            raise ValueError(f"reg must be a non-negative number, got {reg!r}")
        self.reg = float(reg)

    def extra_repr(self) -> str:
        return f"scales={self.scales}, reg={self.reg}, truncate={self.truncate}, " + super().extra_repr()

    def forward(self, x, normals, batch=None):
        check_points("x", x, dim=3)
        check_unit_normals("normals", normals, x)
        check_batch("batch", batch, x.shape[0], x.device)
        pair = batch_pair(batch, batch, x.shape[0], x.shape[0], "batch", "batch")
        backend = self.backend_for(x.device)
        frames = tangent_basis(normals)  # (N, 2, 3)
        eye = torch.eye(2, dtype=x.dtype, device=x.device)
        results = []
        for scale in self.scales:
            win = window(x, x, pair, batch, batch, backend, self.truncate, scale)
            moments = win.sum(partial(_shape_terms, scale=scale), i=[x, normals], j=[x, normals], width=19)
            weight = moments[:, :1, None]
            dd = moments[:, 1:10].view(-1, 3, 3) / weight
            ed = moments[:, 10:].view(-1, 3, 3) / weight
            a = frames @ dd @ frames.transpose(1, 2) + self.reg * scale**2 * eye
            b = frames @ ed @ frames.transpose(1, 2)
            s = b @ _inverse_2x2(a)
            s = (s + s.transpose(1, 2)) / 2
            mean = (s[:, 0, 0] + s[:, 1, 1]) / 2
            gauss = s[:, 0, 0] * s[:, 1, 1] - s[:, 0, 1] * s[:, 1, 0]
            results.append(torch.stack([mean, gauss], -1))
        return torch.stack(results, 1)


def _inverse_2x2(a: torch.Tensor) -> torch.Tensor:
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    first_row = torch.stack([a[:, 1, 1], -a[:, 0, 1]], -1)
    second_row = torch.stack([-a[:, 1, 0], a[:, 0, 0]], -1)
    adjugate = torch.stack([first_row, second_row], -2)
    return adjugate / det[:, None, None]
