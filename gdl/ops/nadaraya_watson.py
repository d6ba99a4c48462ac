"""Nadaraya-Watson kernel regression."""

from __future__ import annotations

import math

import torch

from gdl.ops.backend import import_pykeops
from gdl.ops.base import Operator, row_chunks
from gdl.ops.batching import batch_pair, require_nonempty_targets
from gdl.ops.checks import check_batch, check_pair, check_points, check_values
from gdl.ops.kernels import (
    LOG_ZERO,
    any_sqrt,
    check_kernel,
    check_sigmas,
    dense_sqdist,
    lazy_sqdist,
    radial_kernel,
    safe_log,
)
from gdl.ops.locality import StreamingSoftmax, check_truncate, local_pairs
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

    ``truncate`` = t (None: every source point) averages over the source points closer than
    c = t * max(sigma) only (:mod:`gdl.ops.locality`). A dropped kernel value is below k(c) of the
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
    """

    def __init__(self, kernel: str = "gaussian", sigma=1.0, backend: str = "auto", truncate: float | None = None):
        super().__init__(backend)
        self.kernel = check_kernel(kernel)
        if self.kernel == "energy":
            raise ValueError("kernel='energy' takes negative values: nadaraya_watson needs a positive kernel")
        self.sigmas = check_sigmas(sigma)
        self.truncate = check_truncate(truncate)

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel!r}, sigma={list(self.sigmas)}, truncate={self.truncate}, " + super().extra_repr()
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
        if self.kernel in LOG_DOMAIN_KERNELS:
            # Weights join the exponent: sum_j exp(log w_j + log k_ij - shift_i) [v_j, 1].
            log_w = safe_log(w[:, 0])
            wv = torch.cat([v, torch.ones_like(v[:, :1])], dim=1).contiguous()
        else:
            log_w, wv = None, torch.cat([w * v, w], dim=1).contiguous()
        keops = self.backend_for(x_query.device) == "keops"
        local = None
        if self.truncate is not None:
            cutoff = self.truncate * max(self.sigmas)
            local = local_pairs(x_query, x_src, pair, batch_query, batch_src, cutoff)
        if local is None:
            out = self._average(x_query, x_src, log_w, wv, pair, keops)
        else:
            out = self._truncated_average(x_query, x_src, log_w, wv, local, keops)
            # Rows without a positively weighted source point in their window: computed exactly.
            empty = ~torch.isfinite(out.detach()).all(1)
            if bool(empty.any()):
                rows = empty.nonzero()[:, 0]
                sub_batch = None if batch_query is None else batch_query[rows]
                sub_pair = batch_pair(sub_batch, batch_src, rows.numel(), x_src.shape[0], "batch_query", "batch_src")
                out = out.index_put((rows,), self._average(x_query[rows], x_src, log_w, wv, sub_pair, keops))
        return out if values.dim() == 2 else out[:, 0]

    def _average(self, x, y, log_w, wv, pair, keops):
        ranges = pair.keops_ranges(x.device) if pair.num_items > 1 else None
        sums = self._keops(x, y, log_w, wv, ranges)[0] if keops else self._dense(x, y, log_w, wv, pair)
        return sums[:, :-1] / sums[:, -1:]

    def _truncated_average(self, x, y, log_w, wv, local, keops):
        """The average over the pairs of ``local``; NaN rows where no positive weight is in the window."""
        if keops:
            p, q = local.perm_x, local.perm_y
            sorted_log_w = None if log_w is None else log_w[q]
            sums, shift = self._keops(x[p], y[q], sorted_log_w, wv[q].contiguous(), local.keops_ranges())
            sums = sums[local.inverse_x]
            shift = None if shift is None else shift[local.inverse_x]
        else:
            sums, shift = self._sparse(x, y, log_w, wv, local)
        # Empty windows have no mass; a window of zero weights only has a maximum of about LOG_ZERO.
        valid = sums[:, -1:].detach() > 0
        if shift is not None:
            valid = valid & (shift > LOG_ZERO / 2)[:, None]
        out = sums[:, :-1] / torch.where(valid, sums[:, -1:], torch.ones_like(sums[:, -1:]))
        return torch.where(valid, out, torch.full_like(out, math.nan))

    def _keops(self, x, y, log_w, wv, ranges):
        """Sums (N, E + 1), and the shift (N,) of the log domain (None for the other kernels)."""
        sqdist = lazy_sqdist(x, y)
        shift = None
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
            shift = shift[:, 0]
        else:
            e_ij = radial_kernel(self.kernel, sqdist, self.sigmas)
        if ranges is not None:
            e_ij.ranges = ranges
        return e_ij @ wv, shift

    def _sparse(self, x, y, log_w, wv, local):
        if log_w is not None:
            softmax = StreamingSoftmax(x.shape[0], wv.shape[1], wv)
            for i, j in local.pairs(x, y):
                sqdist = ((x[i] - y[j]) ** 2).sum(-1)
                softmax.add(i, log_w[j] + log_kernel(self.kernel, sqdist, self.sigmas), wv[j])
            return softmax.sums, softmax.shift
        sums = wv.new_zeros(x.shape[0], wv.shape[1])
        for i, j in local.pairs(x, y):
            k = radial_kernel(self.kernel, ((x[i] - y[j]) ** 2).sum(-1), self.sigmas)
            sums = sums.index_add(0, i, k[:, None] * wv[j])
        return sums, None

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
