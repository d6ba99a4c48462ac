"""Local linear kernel regression: the value at each query of a kernel-weighted affine fit."""

from __future__ import annotations

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.checks import check_points, check_values
from gdl.ops.nadaraya_watson import NadarayaWatson
from gdl.ops.core.registry import register


@register("local_linear")
class LocalLinear(Operator):
    r"""Local linear regression: at each query, the value of the kernel-weighted affine fit of the values around it.

    values_query_i = b_i, where (A_i, b_i) minimise

        sum_j w_j k(x_i, y_j) |v_j - b_i - A_i (y_j - x_i)|^2 + ridge * sigma^2 * W_i |A_i|_F^2,

    W_i = sum_j w_j k(x_i, y_j) (the penalty scales with the window's mass, like the fit term).

    With E_i the weighted averages of ``nadaraya_watson`` (weights w_j k(x_i, y_j), same kernel,
    sigma, truncation and batches), m_i = E_i[y], C_i = E_i[y y^T] - m_i m_i^T and
    R_i = E_i[v y^T] - E_i[v] m_i^T:

        b_i = E_i[v] + R_i (C_i + ridge * sigma^2 I)^-1 (x_i - m_i).

    Nadaraya-Watson (b_i = E_i[v]) is biased by the slope of v times the offset x_i - m_i of the
    points around x_i, which is large on uneven samplings (branch tips, points between two branches);
    the affine fit removes that first-order bias: with ``ridge`` = 0 it reproduces affine fields
    exactly wherever the neighbourhood spans the space. The ridge keeps the slope finite where it
    does not (points on one line or plane); with ``ridge`` = 0 the slope there is the minimum-norm
    one (pseudo-inverse), so an affine field is still reproduced along the line or plane. sigma is
    the largest of ``sigma``. Coordinates are centred on the mean source point before the moments
    are summed. Differentiable like ``nadaraya_watson``, whose checks and errors it shares.
    """

    def __init__(self, kernel: str = "gaussian", sigma=1.0, ridge: float = 0.1, backend: str = "auto", truncate: float | None = None):
        super().__init__(backend)
        self.average = NadarayaWatson(kernel, sigma, backend, truncate)
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0:
            raise ValueError(f"ridge must be a non-negative number, got {ridge!r}")
        self.ridge = float(ridge)
        self.sigmas = self.average.sigmas

    def extra_repr(self) -> str:
        return f"ridge={self.ridge}, " + self.average.extra_repr()

    def forward(self, x_query, x_src, values, weights=None, batch_query=None, batch_src=None):
        check_points("x_query", x_query)
        check_points("x_src", x_src)
        v = check_values("values", values, x_src.shape[0], x_src)
        centre = x_src.detach().mean(0) if x_src.shape[0] else x_src.new_zeros(x_src.shape[1])
        x, y = x_query - centre, x_src - centre
        n, d, e = y.shape[0], y.shape[1], v.shape[1]
        moments = torch.cat([y, (y[:, :, None] * y[:, None, :]).reshape(n, d * d), v, (v[:, :, None] * y[:, None, :]).reshape(n, e * d)], 1)
        averages = self.average(x, y, moments, weights, batch_query, batch_src)
        m, yy, mean_v, vy = averages.split([d, d * d, e, e * d], dim=1)
        covariance = yy.reshape(-1, d, d) - m[:, :, None] * m[:, None, :]
        cross = vy.reshape(-1, e, d) - mean_v[:, :, None] * m[:, None, :]
        if self.ridge > 0:
            regularised = covariance + self.ridge * max(self.sigmas) ** 2 * torch.eye(d, dtype=x.dtype, device=x.device)
            slope = torch.linalg.solve(regularised, cross.transpose(1, 2)).transpose(1, 2)
        else:
            slope = cross @ torch.linalg.pinv(covariance, hermitian=True)
        out = mean_v + (slope @ (x - m)[:, :, None])[:, :, 0]
        return out if values.dim() == 2 else out[:, 0]
