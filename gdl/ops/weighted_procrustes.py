"""Weighted Procrustes: the rigid, similarity or affine transform that best maps x onto y."""

from __future__ import annotations

import torch

from gdl.ops.core.ot_solver import check_masses, item_sums
from gdl.ops.core.base import Operator
from gdl.ops.core.batching import item_bounds, num_items
from gdl.ops.core.checks import check_batch, check_choice, check_pair, check_points
from gdl.ops.core.registry import register

MODES = ("rigid", "similarity", "affine")


@register("weighted_procrustes")
class WeightedProcrustes(Operator):
    r"""argmin over (A, t) of sum_i w_i |A x_i + t - y_i|^2, for paired points x_i -> y_i.

    With weighted means mu_x, mu_y and the weighted cross-covariance
    S = sum_i w_i (y_i - mu_y)(x_i - mu_x)^T = U diag(sigma) V^T (SVD):

        rigid       A = R = U diag(1, ..., 1, det(U V^T)) V^T      (Kabsch, a rotation: det R = +1)
        similarity  A = s R,  s = tr(diag(sigma) diag(1, ..., det(U V^T))) / sum_i w_i |x_i - mu_x|^2
                    (Umeyama)
        affine      A = S (sum_i w_i (x_i - mu_x)(x_i - mu_x)^T)^{-1}  (weighted least squares)

    and t = mu_y - A mu_x. ``forward(x, y, w=None, batch=None) -> (A, t)``: (D, D) and (D,), or
    (B, D, D) and (B, D) with a ``batch`` vector (one transform per item). Weights are
    non-negative, uniform when omitted, with a positive sum per item; a zero weight removes a
    pair from the fit, a small one down-weights it. Differentiable in x, y and w (for rigid and similarity, wherever
    the singular values of S are distinct). There is no pairwise reduction: both backends run the
    same torch code.
    """

    def __init__(self, mode: str = "rigid", backend: str = "auto"):
        super().__init__(backend)
        self.mode = check_choice("mode", mode, MODES)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, " + super().extra_repr()

    def forward(self, x, y, w=None, batch=None):
        check_points("x", x)
        check_points("y", y)
        check_pair(x, y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x and y must be paired row by row, got {x.shape[0]} and {y.shape[0]} points")
        n, d = x.shape
        w = torch.ones(n, dtype=x.dtype, device=x.device) if w is None else check_masses("w", w, n, x)
        check_batch("batch", batch, n, x.device)
        items = num_items(batch)
        index = torch.zeros(n, dtype=torch.int64, device=x.device) if batch is None else batch
        start, end = item_bounds(batch, n, items)
        zero = (item_sums(w, start, end) <= 0).nonzero().flatten().tolist()
        if zero:
            raise ValueError(f"w sums to zero on batch item(s) {zero[:10]}: there is nothing to fit")

        def weighted_sum(values):  # per-item sums of (N, ...) values
            return values.new_zeros((items,) + values.shape[1:]).index_add(0, index, values)

        total = weighted_sum(w)
        mu_x = weighted_sum(w[:, None] * x) / total[:, None]
        mu_y = weighted_sum(w[:, None] * y) / total[:, None]
        xc, yc = x - mu_x[index], y - mu_y[index]
        cross = weighted_sum(w[:, None, None] * yc[:, :, None] * xc[:, None, :])  # (B, D, D)
        if self.mode == "affine":
            gram = weighted_sum(w[:, None, None] * xc[:, :, None] * xc[:, None, :])
            solution, info = torch.linalg.solve_ex(gram, cross.transpose(1, 2))
            singular = (info != 0).nonzero().flatten().tolist()
            if singular or not bool(torch.isfinite(solution).all()):
                raise ValueError(
                    f"affine fit is singular on batch item(s) {singular[:10] or 'some'}: the weighted "
                    f"points must span {d} dimensions (at least {d + 1} affinely independent points)"
                )
            transform = solution.transpose(1, 2)
        else:
            u, sigma, vh = torch.linalg.svd(cross)
            with torch.no_grad():
                signs = torch.ones(items, d, dtype=x.dtype, device=x.device)
                signs[:, -1] = torch.linalg.det(u @ vh).sign()
            transform = u @ (signs[:, :, None] * vh)
            if self.mode == "similarity":
                variance = weighted_sum(w * (xc**2).sum(-1))
                transform = ((sigma * signs).sum(-1) / variance)[:, None, None] * transform
        shift = mu_y - (transform @ mu_x[:, :, None])[:, :, 0]
        if batch is None:
            return transform[0], shift[0]
        return transform, shift
