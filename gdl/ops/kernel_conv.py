"""Kernel convolution (kernel product)."""

from __future__ import annotations

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair
from gdl.ops.core.checks import check_batch, check_pair, check_points, check_values
from gdl.ops.core.kernels import check_kernel, check_sigmas, radial_kernel
from gdl.ops.core.locality import check_truncate
from gdl.ops.core.registry import register
from gdl.ops.core.window import sqnorm, window


@register("kernel_conv")
class KernelConv(Operator):
    r"""a_i = sum_j k(x_i, y_j) b_j over the points y_j of the same batch item as x_i.

    ``k`` is a radial kernel of :mod:`gdl.ops.core.kernels` (gaussian, laplacian, cauchy, energy,
    inverse_multiquadric), summed over the scales of ``sigma`` when it is a list. ``b`` has shape
    (M,) or (M, E) and ``a`` the matching (N,) or (N, E). Differentiable in x, y and b.

    ``truncate`` = t (None: the exact sum) drops the pairs farther apart than c = t * max(sigma)
    (:mod:`gdl.ops.core.locality`: block-sparse KeOps ranges, or a sparse pair list for the torch
    backend). Every dropped weight is below phi(c) of a peak phi(0) = 1 (per scale):

        gaussian              exp(-t^2 / 2)       t = 4: e^-8 ~ 3.4e-4,  t = 5: 3.7e-6
        laplacian             exp(-t)             t = 8: 3.4e-4,         t = 12: 6.1e-6
        cauchy                1 / (1 + t^2)       t = 54: 3.4e-4
        inverse_multiquadric  1 / sqrt(1 + t^2)   t = 2900: 3.4e-4

    so that |a_i - a_i^exact| <= phi(c) * sum_{|x_i - y_j| >= c} |b_j|. The last two tails are
    heavy: the dropped sum can be of the order of the kept one unless the far points are few, and
    truncating them is an approximation for clouds much larger than c, not a rounding. Where the
    clouds fit within c (or the cutoff skips few pairs), the plain exact reduction runs.
    ``kernel="energy"`` has no window and takes no ``truncate``.
    """

    def __init__(self, kernel: str = "gaussian", sigma=1.0, backend: str = "auto", truncate: float | None = None):
        super().__init__(backend)
        self.kernel = check_kernel(kernel)
        self.sigmas = check_sigmas(sigma)
        self.truncate = check_truncate(truncate)
        if self.kernel == "energy" and self.truncate is not None:
            raise ValueError("truncate needs a kernel that decays with distance, got kernel='energy'")

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel!r}, sigma={list(self.sigmas)}, truncate={self.truncate}, " + super().extra_repr()
        )

    def forward(self, x, y, b, batch_x=None, batch_y=None):
        check_points("x", x)
        check_points("y", y)
        check_pair(x, y)
        b2 = check_values("b", b, y.shape[0], y)
        check_batch("batch_x", batch_x, x.shape[0], x.device)
        check_batch("batch_y", batch_y, y.shape[0], y.device)
        pair = batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
        backend = self.backend_for(x.device)
        win = window(x, y, pair, batch_x, batch_y, backend, self.truncate, max(self.sigmas))
        a = win.sum(self._kernel, i=[x], j=[y], values=b2)
        return a if b.dim() == 2 else a[:, 0]

    def _kernel(self, x_i, y_j):
        return radial_kernel(self.kernel, sqnorm(x_i - y_j), self.sigmas)
