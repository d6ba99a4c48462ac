"""Kernel linear systems (splines, kriging) by conjugate gradient on the symbolic kernel matrix."""

from __future__ import annotations

import warnings

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.checks import check_batch, check_points, check_values
from gdl.ops.kernel_conv import KernelConv
from gdl.ops.core.kernels import check_kernel, check_sigmas
from gdl.ops.core.registry import register


def conjugate_gradient(matvec, b: torch.Tensor, tol: float, max_iter: int):
    """Solve A a = b column by column for a symmetric positive definite A given by ``matvec``.

    Stops when every column's residual satisfies |b - A a| <= tol |b|. Returns (a, residuals, iters).
    """
    a = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(0)
    target = (tol * b.norm(dim=0)) ** 2
    iters = 0
    while iters < max_iter and bool((rr > target).any()):
        ap = matvec(p)
        pap = (p * ap).sum(0)
        step = torch.where(rr > target, rr / pap, torch.zeros_like(rr))
        a = a + step * p
        r = r - step * ap
        rr_new = (r * r).sum(0)
        p = r + (rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny)) * p
        rr = rr_new
        iters += 1
    return a, rr.sqrt() / b.norm(dim=0).clamp_min(torch.finfo(b.dtype).tiny), iters


class _KernelSolve(torch.autograd.Function):
    """a = (alpha Id + K_xx)^{-1} b, differentiated implicitly.

    With g = (alpha Id + K_xx)^{-1} grad_a (the matrix is symmetric): grad_b = g and
    grad_x = d/dx [-(g . K_xx a)] with g and a held fixed.
    """

    @staticmethod
    def forward(ctx, x, b, batch, solver):
        with torch.no_grad():
            a = solver.solve(x, b, batch)
        ctx.save_for_backward(x, a)
        ctx.batch, ctx.solver = batch, solver
        return a

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_a):
        x, a = ctx.saved_tensors
        solver, batch = ctx.solver, ctx.batch
        g = solver.solve(x, grad_a.contiguous(), batch)
        grad_x = None
        if ctx.needs_input_grad[0]:
            with torch.enable_grad():
                x_ = x.detach().requires_grad_(True)
                energy = -(g * solver.kernel_product(x_, a, batch)).sum()
                (grad_x,) = torch.autograd.grad(energy, x_)
        return grad_x, g if ctx.needs_input_grad[1] else None, None, None


@register("kernel_solve")
class KernelSolve(Operator):
    r"""Solves (alpha Id + K_xx) a = b with K_xx[i, j] = k(x_i, x_j) for x_i, x_j in the same item.

    ``k`` is a positive definite radial kernel of :mod:`gdl.ops.core.kernels` (gaussian, laplacian,
    cauchy, inverse_multiquadric; sums over a list of ``sigma``), ``alpha >= 0`` the ridge. Conjugate
    gradient, one kernel product (:class:`gdl.ops.kernel_conv.KernelConv`, KeOps or chunked torch)
    per iteration, until |b - (alpha Id + K) a| <= tol |b| for every column of b or ``max_iter``
    iterations (then a warning). Differentiable in x and b by implicit differentiation: the
    backward pass solves the same system once more.
    """

    def __init__(
        self,
        kernel: str = "gaussian",
        sigma=1.0,
        alpha: float = 1e-3,
        tol: float = 1e-6,
        max_iter: int = 1000,
        backend: str = "auto",
    ):
        super().__init__(backend)
        self.kernel = check_kernel(kernel)
        if self.kernel == "energy":
            raise ValueError("kernel='energy' is not positive definite: kernel_solve needs another kernel")
        self.sigmas = check_sigmas(sigma)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.alpha, self.tol, self.max_iter = float(alpha), float(tol), max_iter
        self.conv = KernelConv(kernel=kernel, sigma=list(self.sigmas), backend=backend)

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel!r}, sigma={list(self.sigmas)}, alpha={self.alpha}, tol={self.tol}, "
            f"max_iter={self.max_iter}, " + super().extra_repr()
        )

    def kernel_product(self, x, v, batch):
        """K_xx v (block diagonal over the batch items)."""
        return self.conv(x, x, v, batch, batch)

    def solve(self, x, b, batch):
        """The conjugate gradient solution of (alpha Id + K_xx) a = b, without autograd."""
        a, residuals, iters = conjugate_gradient(
            lambda v: self.alpha * v + self.kernel_product(x, v, batch), b, self.tol, self.max_iter
        )
        worst = float(residuals.max())
        if worst > self.tol:
            warnings.warn(
                f"kernel_solve: conjugate gradient stopped after {iters} iterations with relative "
                f"residual {worst:.2e} > tol={self.tol:.1e}; increase max_iter or alpha",
                RuntimeWarning,
                stacklevel=3,
            )
        return a

    def forward(self, x, b, batch=None):
        check_points("x", x)
        b2 = check_values("b", b, x.shape[0], x)
        check_batch("batch", batch, x.shape[0], x.device)
        a = _KernelSolve.apply(x, b2.contiguous(), batch, self)
        return a if b.dim() == 2 else a[:, 0]
