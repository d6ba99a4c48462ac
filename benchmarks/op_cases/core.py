"""Benchmark cases of the core operators and their peers (raw KeOps, dense torch); knn, radius and
fps are in neighbours.py.

Points are uniform in the unit cube, float32, D = 3. Quadratic-cost rows (every pair visited) are
skipped above ``QUADRATIC_MAX_CPU`` points on CPU, dense rows above ``DENSE_MAX_BYTES`` of N^2
memory.
"""

from __future__ import annotations

import math

import torch

import gdl.ops
from gdl.ops.core.backend import import_pykeops

try:
    from benchmarks.case import Case
except ImportError:
    from case import Case

QUADRATIC_MAX_CPU = 10_000
DENSE_MAX_BYTES = 4 * 2**30
SIGMA = 0.1
K = 16


def points(n: int, device, seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=generator).to(device).requires_grad_(requires_grad)


def quadratic_skip(n: int, device) -> str | None:
    if device.type == "cpu" and n > QUADRATIC_MAX_CPU:
        return f"visits all n^2 pairs: skipped above {QUADRATIC_MAX_CPU} points on CPU"
    return None


def dense_skip(n: int, device, copies: int = 3) -> str | None:
    if copies * 4 * n * n > DENSE_MAX_BYTES:
        return f"dense n x n tensors need {copies * 4 * n * n / 2**30:.0f} GiB"
    return quadratic_skip(n, device)


def package_skip(name: str) -> str | None:
    try:
        __import__(name)
    except ImportError:
        return f"{name} is not installed"
    return None


def with_backward(forward, inputs):
    def run():
        out = forward()
        out.sum().backward()
        for t in inputs:
            t.grad = None

    return run


# --- kernel_conv -------------------------------------------------------------------------------
def kernel_conv_setup(n, device, implementation, backward):
    def setup():
        x, y = points(n, device, 0, backward), points(n, device, 1, backward)
        b = torch.randn(n, 1, generator=torch.Generator().manual_seed(2)).to(device).requires_grad_(backward)
        if implementation.startswith("gdl-"):
            op = gdl.ops.get("kernel_conv", kernel="gaussian", sigma=SIGMA, backend=implementation[4:])
            forward = lambda: op(x, y, b)  # noqa: E731
        elif implementation == "raw-keops":
            LazyTensor = import_pykeops().LazyTensor
            forward = lambda: (  # noqa: E731
                -((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1) / (2 * SIGMA**2)
            ).exp() @ b
        else:
            forward = lambda: torch.exp(-torch.cdist(x, y) ** 2 / (2 * SIGMA**2)) @ b  # noqa: E731
        return with_backward(forward, [x, y, b]) if backward else forward

    return setup


def kernel_conv_cases(device, sizes):
    cases = []
    for n in sizes:
        for mode, backward in (("forward", False), ("forward+backward", True)):
            for impl in ("gdl-keops", "gdl-torch", "raw-keops", "dense-torch"):
                if impl == "raw-keops" and backward:
                    continue
                if impl == "dense-torch":
                    skip = dense_skip(n, device, 4 if backward else 2)
                else:
                    skip = quadratic_skip(n, device)
                if impl.endswith("keops") and device.type == "cuda":
                    skip = None
                setup = kernel_conv_setup(n, device, impl, backward)
                cases.append(Case("kernel_conv", n, impl, mode, setup, skip, {"kernel": "gaussian", "sigma": SIGMA}))
    return cases


# --- the other core operators --------------------------------------------------------------------
def gdl_setup(n, device, name, params, call):
    def setup():
        op = gdl.ops.get(name, **params)
        inputs = call(n, device)
        return lambda: op(*inputs)

    return setup


def neighbourhood_radius(n: int, neighbours: int = K) -> float:
    """r such that a ball of radius r holds ``neighbours`` points of n uniform in the unit cube."""
    return (neighbours / (n * 4 / 3 * math.pi)) ** (1 / 3)


def random_values(n: int, device, columns: int = 1) -> torch.Tensor:
    return torch.randn(n, columns, generator=torch.Generator().manual_seed(3)).to(device)


def symbolic_skip(name: str, backend: str, n: int, device) -> str | None:
    """Why a row of kernel_solve or nadaraya_watson is not run here (None: it is)."""
    if device.type != "cpu":
        return None
    if name == "kernel_solve" and backend == "torch" and n > 1000:
        return "one dense kernel product per iteration: skipped above 1000 points on CPU"
    return quadratic_skip(n, device)


def other_cases(device, sizes):
    cases = []
    for n in sizes:
        specs = [
            (
                "kernel_solve",
                {"kernel": "gaussian", "sigma": SIGMA, "alpha": 1.0, "tol": 1e-3},
                lambda n, d: (points(n, d), random_values(n, d)),
            ),
            (
                "nadaraya_watson",
                {"kernel": "gaussian", "sigma": SIGMA},
                lambda n, d: (points(n, d, 1), points(n, d), random_values(n, d, 3)),
            ),
        ]
        for name, params, inputs in specs:
            for backend in ("keops", "torch"):
                setup = gdl_setup(n, device, name, {**params, "backend": backend}, inputs)
                skip = symbolic_skip(name, backend, n, device)
                cases.append(Case(name, n, f"gdl-{backend}", "forward", setup, skip, params))
        # One row: the same torch code runs for both backends.
        voxel = neighbourhood_radius(n, 8)
        grid_setup = gdl_setup(n, device, "grid_subsample", {"voxel_size": voxel}, lambda n, d: (points(n, d),))
        cases.append(Case("grid_subsample", n, "gdl-torch", "forward", grid_setup, None, {"voxel_size": voxel}))
    return cases


def cases(device, sizes):
    return kernel_conv_cases(device, sizes) + other_cases(device, sizes)
