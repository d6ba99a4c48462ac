"""Radial kernels k(x, y) = phi(|x - y|^2), written once for dense tensors and KeOps LazyTensors.

    gaussian              exp(-|x-y|^2 / (2 sigma^2))
    laplacian             exp(-|x-y| / sigma)
    cauchy                1 / (1 + |x-y|^2 / sigma^2)
    energy                -|x-y|                     (sigma unused)
    inverse_multiquadric  1 / sqrt(1 + |x-y|^2 / sigma^2)

A list of sigmas sums the kernel over those scales.
"""

from __future__ import annotations

import torch

from gdl.ops.core.checks import check_choice

KERNELS = ("gaussian", "laplacian", "cauchy", "energy", "inverse_multiquadric")


def check_sigmas(sigma) -> tuple[float, ...]:
    sigmas = tuple(sigma) if isinstance(sigma, (list, tuple)) else (sigma,)
    if not sigmas or any(
        isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0 for s in sigmas
    ):
        raise ValueError(f"sigma must be a positive number or a non-empty list of them, got {sigma!r}")
    return tuple(float(s) for s in sigmas)


def check_kernel(kernel: str) -> str:
    return check_choice("kernel", kernel, KERNELS)


def safe_sqrt(t: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) gradient at 0, for dense tensors."""
    positive = t > 0
    return torch.where(positive, torch.where(positive, t, torch.ones_like(t)).sqrt(), torch.zeros_like(t))


# log(0) for empty masses and zero weights, as in GeomLoss: finite, so that 0 * log(0) stays 0 and
# exp(LOG_ZERO - shift) is exactly 0, never NaN.
LOG_ZERO = -100000.0


def safe_log(t: torch.Tensor) -> torch.Tensor:
    """log of non-negative values, LOG_ZERO (with a zero gradient) where they are 0."""
    positive = t > 0
    return torch.where(positive, torch.where(positive, t, torch.ones_like(t)).log(), torch.full_like(t, LOG_ZERO))


def any_sqrt(t):
    """sqrt of a dense tensor (zero gradient at 0) or of a LazyTensor."""
    # KeOps' Sqrt has a finite derivative at 0 (its Rsqrt returns 0 there); torch's does not.
    return safe_sqrt(t) if isinstance(t, torch.Tensor) else t.sqrt()


def radial_kernel(kernel: str, sqdist, sigmas: tuple[float, ...]):
    """phi(sqdist) for a dense tensor or a LazyTensor of squared distances."""
    if kernel == "energy":
        return -any_sqrt(sqdist)
    total = None
    for sigma in sigmas:
        if kernel == "gaussian":
            term = (-sqdist / (2 * sigma**2)).exp()
        elif kernel == "laplacian":
            term = (-any_sqrt(sqdist) / sigma).exp()
        elif kernel == "cauchy":
            term = 1 / (1 + sqdist / sigma**2)
        elif kernel == "inverse_multiquadric":
            term = 1 / any_sqrt(1 + sqdist / sigma**2)
        else:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        total = term if total is None else total + term
    return total


def dense_sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i - y_j|^2 as an (N, M) tensor, exact (no expansion cancellation), differentiable."""
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def lazy_sqdist(x: torch.Tensor, y: torch.Tensor):
    """|x_i - y_j|^2 as a symbolic (N, M) KeOps LazyTensor."""
    from gdl.ops.core.backend import import_pykeops

    LazyTensor = import_pykeops().LazyTensor
    return ((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)
