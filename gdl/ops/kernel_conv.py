"""Kernel convolution (kernel product)."""

from __future__ import annotations

import torch

from gdl.ops.base import Operator, row_chunks
from gdl.ops.batching import batch_pair
from gdl.ops.checks import check_batch, check_pair, check_points, check_values
from gdl.ops.kernels import check_kernel, check_sigmas, dense_sqdist, lazy_sqdist, radial_kernel
from gdl.ops.registry import register


@register("kernel_conv")
class KernelConv(Operator):
    r"""a_i = sum_j k(x_i, y_j) b_j over the points y_j of the same batch item as x_i.

    ``k`` is a radial kernel of :mod:`gdl.ops.kernels` (gaussian, laplacian, cauchy, energy,
    inverse_multiquadric), summed over the scales of ``sigma`` when it is a list. ``b`` has shape
    (M,) or (M, E) and ``a`` the matching (N,) or (N, E). Differentiable in x, y and b.
    """

    def __init__(self, kernel: str = "gaussian", sigma=1.0, backend: str = "auto"):
        super().__init__(backend)
        self.kernel = check_kernel(kernel)
        self.sigmas = check_sigmas(sigma)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, sigma={list(self.sigmas)}, " + super().extra_repr()

    def forward(self, x, y, b, batch_x=None, batch_y=None):
        check_points("x", x)
        check_points("y", y)
        check_pair(x, y)
        b2 = check_values("b", b, y.shape[0], y)
        check_batch("batch_x", batch_x, x.shape[0], x.device)
        check_batch("batch_y", batch_y, y.shape[0], y.device)
        pair = batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
        if self.backend_for(x.device) == "keops":
            k_ij = radial_kernel(self.kernel, lazy_sqdist(x, y), self.sigmas)
            if pair.num_items > 1:
                k_ij.ranges = pair.keops_ranges(x.device)
            a = k_ij @ b2.contiguous()
        else:
            a = self._dense(x, y, b2, pair)
        return a if b.dim() == 2 else a[:, 0]

    def _dense(self, x, y, b, pair):
        blocks = []
        for _, sx, sy in pair.item_slices():
            xs, ys, bs = x[sx], y[sy], b[sy]
            for rows in row_chunks(xs.shape[0], ys.shape[0]):
                k = radial_kernel(self.kernel, dense_sqdist(xs[rows], ys), self.sigmas)
                blocks.append(k @ bs)
        return torch.cat(blocks, 0) if blocks else b.new_zeros(0, b.shape[1])
