"""Nadaraya-Watson kernel regression."""

from __future__ import annotations

import math

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair, require_nonempty_targets
from gdl.ops.core.checks import check_batch, check_pair, check_points, check_positive, check_values
from gdl.ops.core.kernels import LOG_ZERO, any_sqrt, check_kernel, check_sigmas, radial_kernel, safe_log
from gdl.ops.core.locality import check_truncate
from gdl.ops.core.registry import register
from gdl.ops.core.voxels import pool_weighted
from gdl.ops.core.window import sqnorm, window

LOG_DOMAIN_KERNELS = ("gaussian", "laplacian")


def log_kernel(kernel: str, sqdist, sigmas: tuple[float, ...]):
    """log k for gaussian / laplacian (sums over sigmas included), finite however far the points.

    With s the largest sigma and u = |x-y|^2 / 2 (gaussian) or |x-y| (laplacian):
    log sum_t exp(-u / t^p) = -u / s^p + log(1 + sum_{t != s} exp(-u (1/t^p - 1/s^p))),
    where every exponent of the second term is <= 0.
    """
    if kernel == "gaussian":
        u, power = sqdist / 2, 2
    else:
        u, power = any_sqrt(sqdist), 1
    largest = max(sigmas)
    log_k = -u / largest**power
    others = list(sigmas)
    others.remove(largest)
    if others:
        rest = None
        for sigma in others:
            term = (-u * (1 / sigma**power - 1 / largest**power)).exp()
            rest = term if rest is None else rest + term
        log_k = log_k + (1 + rest).log()
    return log_k


@register("nadaraya_watson")
class NadarayaWatson(Operator):
    r"""values_query_i = sum_j w_j k(x_i, y_j) v_j / sum_j w_j k(x_i, y_j), over the same batch item.

    x = ``x_query``, y = ``x_src``, v = ``values`` of shape (M,) or (M, E), w = ``weights`` (M,),
    non-negative (all ones when None). ``k`` is gaussian, laplacian, cauchy or
    inverse_multiquadric (:mod:`gdl.ops.core.kernels`, summed over a list of ``sigma``). Gaussian and
    laplacian weights are computed as a softmax in the log domain, exp(log w_j k_ij - max_j log w_j
    k_ij), so that queries far from every positively weighted source point still get the weighted
    average of the nearest ones instead of 0/0. Differentiable in x_query, x_src, values and
    weights (the derivative in a weight that is exactly 0 is taken as 0).

    ``truncate`` = t (None: every source point) averages over the source points closer than
    c = t * max(sigma) only (:mod:`gdl.ops.core.locality`). A dropped kernel value is below k(c) of the
    peak (gaussian exp(-t^2 / 2): t = 4: 3.4e-4; laplacian exp(-t); cauchy 1 / (1 + t^2);
    inverse_multiquadric 1 / sqrt(1 + t^2), see :class:`~gdl.ops.kernel_conv.KernelConv`), and a
    query whose window holds the mass W_i (sum of w_j k_ij) moves by at most
    2 max|v| D_i / (W_i + D_i), D_i the dropped mass: small where the window holds most of the
    mass, up to the spread of the values for a query whose sources all lie near the cutoff (keep
    t well above the distance from the queries to their sources, in units of sigma). A query
    whose window holds no positively weighted source point keeps today's rule: its row is
    computed exactly (the weighted average of the nearest points for gaussian and laplacian).
    The window is the set of pairs closer than c on the torch backend, and the voxel blocks
    visited on the KeOps backend (which may reach a little beyond c). Where the clouds fit within
    c, the plain exact reduction runs.

    ``pool`` = h (None: no pooling) first pools the source points per voxel V of side h
    (:mod:`gdl.ops.core.voxels`): the voxel's weight W_V = sum_{j in V} w_j, its point y_V and value
    v_V the w-weighted means over V, and the average runs over the voxels,
    sum_V W_V k(x_i, y_V) v_V / sum_V W_V k(x_i, y_V) (the binned estimator). It takes k(x_i, y_j) as
    k(x_i, y_V) for |y_j - y_V| <= sqrt(D) h: for the gaussian, log k moves by at most
    |y_j - y_V| (|x_i - y_V| + |y_j - y_V| / 2) / sigma^2, so that h = sigma / 2 about averages the
    values over each voxel before smoothing (on an OT residual over 8,192 lung-vessel points,
    sigma = 40 mm: 4 % of the exact average's size at h = sigma / 4, 11 % at sigma / 2, where the
    sum runs over 12 times fewer points). Wide kernels over dense clouds gain the most.
    """

    def __init__(
        self, kernel: str = "gaussian", sigma=1.0, backend: str = "auto", truncate: float | None = None, pool: float | None = None
    ):
        super().__init__(backend)
        self.kernel = check_kernel(kernel)
        if self.kernel == "energy":
            raise ValueError("kernel='energy' takes negative values: nadaraya_watson needs a positive kernel")
        self.sigmas = check_sigmas(sigma)
        self.truncate = check_truncate(truncate)
        self.pool = None if pool is None else float(check_positive("pool", pool))

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel!r}, sigma={list(self.sigmas)}, truncate={self.truncate}, pool={self.pool}, "
            + super().extra_repr()
        )

    def forward(self, x_query, x_src, values, weights=None, batch_query=None, batch_src=None):
        check_points("x_query", x_query)
        check_points("x_src", x_src)
        check_pair(x_query, x_src, "x_query", "x_src")
        v = check_values("values", values, x_src.shape[0], x_src)
        if weights is not None:
            w = check_values("weights", weights, x_src.shape[0], x_src)
            if w.shape[1] != 1 or weights.dim() != 1:
                raise ValueError(f"weights must have shape ({x_src.shape[0]},), got {tuple(weights.shape)}")
            if bool((w < 0).any()):
                raise ValueError("weights must be non-negative")
        else:
            w = torch.ones_like(v[:, :1])
        check_batch("batch_query", batch_query, x_query.shape[0], x_query.device)
        check_batch("batch_src", batch_src, x_src.shape[0], x_src.device)
        pair = batch_pair(
            batch_query, batch_src, x_query.shape[0], x_src.shape[0], "batch_query", "batch_src"
        )
        require_nonempty_targets(pair, "x_src")
        if weights is not None:
            for b, _, sy in pair.item_slices():
                if pair.counts_x[b] > 0 and not bool((w[sy] > 0).any()):
                    raise ValueError(f"weights are all zero in batch item {b}")
        if self.pool is not None:
            x_src, v, pooled_weights, batch_src = pool_weighted(x_src, v, w[:, 0], self.pool, batch_src)
            w = pooled_weights[:, None]
            pair = batch_pair(batch_query, batch_src, x_query.shape[0], x_src.shape[0], "batch_query", "batch_src")
        if self.kernel in LOG_DOMAIN_KERNELS:
            # Weights join the exponent: sum_j exp(log w_j + log k_ij - shift_i) [v_j, 1].
            log_w = safe_log(w)
            wv = torch.cat([v, torch.ones_like(v[:, :1])], dim=1).contiguous()
        else:
            log_w, wv = None, torch.cat([w * v, w], dim=1).contiguous()
        backend = self.backend_for(x_query.device)
        win = window(x_query, x_src, pair, batch_query, batch_src, backend, self.truncate, max(self.sigmas))
        out = win.evaluate(lambda win: self._average(win, x_query, x_src, log_w, wv))
        return out if values.dim() == 2 else out[:, 0]

    def _average(self, win, x, y, log_w, wv):
        """The average over the window; NaN rows where a truncated window holds no positive weight."""
        if log_w is None:
            sums = win.sum(self._kernel, i=[x], j=[y], values=wv)
        else:
            sums, shift = win.softmax(self._log_weight, i=[x], j=[y, log_w], values=wv)
        if not win.truncated:
            return sums[:, :-1] / sums[:, -1:]
        # Empty windows have no mass; a window of zero weights only has a maximum of about LOG_ZERO.
        valid = sums[:, -1:].detach() > 0
        if log_w is not None:
            valid = valid & (shift > LOG_ZERO / 2)
        out = sums[:, :-1] / torch.where(valid, sums[:, -1:], torch.ones_like(sums[:, -1:]))
        return torch.where(valid, out, torch.full_like(out, math.nan))

    def _kernel(self, x_i, y_j):
        return radial_kernel(self.kernel, sqnorm(x_i - y_j), self.sigmas)

    def _log_weight(self, x_i, y_j, log_w_j):
        return log_w_j + log_kernel(self.kernel, sqnorm(x_i - y_j), self.sigmas)
