"""Nadaraya-Watson kernel regression."""

from __future__ import annotations

import torch

from gdl.ops.backend import import_pykeops
from gdl.ops.base import Operator, row_chunks
from gdl.ops.batching import batch_pair, require_nonempty_targets
from gdl.ops.checks import check_batch, check_pair, check_points, check_values
from gdl.ops.kernels import any_sqrt, check_kernel, check_sigmas, dense_sqdist, lazy_sqdist, radial_kernel, safe_log
from gdl.ops.registry import register

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
    inverse_multiquadric (:mod:`gdl.ops.kernels`, summed over a list of ``sigma``). Gaussian and
    laplacian weights are computed as a softmax in the log domain, exp(log w_j k_ij - max_j log w_j
    k_ij), so that queries far from every positively weighted source point still get the weighted
    average of the nearest ones instead of 0/0. Differentiable in x_query, x_src, values and
    weights (the derivative in a weight that is exactly 0 is taken as 0).
    """

    def __init__(self, kernel: str = "gaussian", sigma=1.0, backend: str = "auto"):
        super().__init__(backend)
        self.kernel = check_kernel(kernel)
        if self.kernel == "energy":
            raise ValueError("kernel='energy' takes negative values: nadaraya_watson needs a positive kernel")
        self.sigmas = check_sigmas(sigma)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, sigma={list(self.sigmas)}, " + super().extra_repr()

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
        if self.kernel in LOG_DOMAIN_KERNELS:
            # Weights join the exponent: sum_j exp(log w_j + log k_ij - shift_i) [v_j, 1].
            log_w = safe_log(w[:, 0])
            wv = torch.cat([v, torch.ones_like(v[:, :1])], dim=1).contiguous()
        else:
            log_w, wv = None, torch.cat([w * v, w], dim=1).contiguous()
        if self.backend_for(x_query.device) == "keops":
            sums = self._keops(x_query, x_src, log_w, wv, pair)
        else:
            sums = self._dense(x_query, x_src, log_w, wv, pair)
        out = sums[:, :-1] / sums[:, -1:]
        return out if values.dim() == 2 else out[:, 0]

    def _keops(self, x, y, log_w, wv, pair):
        sqdist = lazy_sqdist(x, y)
        ranges = pair.keops_ranges(x.device) if pair.num_items > 1 else None
        if log_w is not None:
            LazyTensor = import_pykeops().LazyTensor
            log_wk = LazyTensor(log_w.contiguous()[None, :, None]) + log_kernel(self.kernel, sqdist, self.sigmas)
            with torch.no_grad():
                log_wk_const = LazyTensor(log_w.detach().contiguous()[None, :, None]) + log_kernel(
                    self.kernel, lazy_sqdist(x.detach(), y.detach()), self.sigmas
                )
                if ranges is not None:
                    log_wk_const.ranges = ranges
                shift = log_wk_const.max(dim=1)
            e_ij = (log_wk - LazyTensor(shift.contiguous()[:, None, :])).exp()
        else:
            e_ij = radial_kernel(self.kernel, sqdist, self.sigmas)
        if ranges is not None:
            e_ij.ranges = ranges
        return e_ij @ wv

    def _dense(self, x, y, log_w, wv, pair):
        blocks = []
        for _, sx, sy in pair.item_slices():
            xs, ys, wvs = x[sx], y[sy], wv[sy]
            for rows in row_chunks(xs.shape[0], ys.shape[0]):
                sqdist = dense_sqdist(xs[rows], ys)
                if log_w is not None:
                    log_wk = log_w[sy][None, :] + log_kernel(self.kernel, sqdist, self.sigmas)
                    e = (log_wk - log_wk.detach().max(dim=1, keepdim=True).values).exp()
                else:
                    e = radial_kernel(self.kernel, sqdist, self.sigmas)
                blocks.append(e @ wvs)
        return torch.cat(blocks, 0) if blocks else wv.new_zeros(0, wv.shape[1])
