"""Optimal transport cases: the sinkhorn operator per solver, raw GeomLoss and POT as peers.

Every case computes a Sinkhorn loss between N points uniform in the unit cube and N points of a
shifted cube (p = 2, blur 0.05, scaling 0.5: GeomLoss' defaults). gdl and raw ``SamplesLoss``
compute the same debiased divergence with the same solver, so their ratio is the wrapper's
overhead (checks, batching). POT's ``sinkhorn2`` (log-domain, dense float64 cost, same
eps = blur^2, non-debiased, its default 1,000 iterations at most) solves one entropic problem
without epsilon-scaling: a peer for time and memory, not for the value.
"""

from __future__ import annotations

import torch

from benchmarks.case import Case

BLUR, SCALING = 0.05, 0.5
# Largest N per solver that runs in reasonable time on a CPU (GPU: the online solver goes further).
TENSORIZED_MAX_N = 5000
ONLINE_MAX_N_CPU = 10_000
POT_MAX_N = 5000
MODES = ("forward", "forward+backward")
# Row names per solver ("x keops" ratios refer to gdl-keops, the online solver).
GDL_NAMES = {"tensorized": "gdl-torch", "online": "gdl-keops", "multiscale": "gdl-multiscale"}
GEOMLOSS_NAMES = {"tensorized": "geomloss-dense", "online": "geomloss-online", "multiscale": "geomloss-ms"}


def clouds(n: int, device: torch.device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(n)
    x = torch.rand(n, 3, generator=generator, dtype=dtype)
    y = torch.rand(n, 3, generator=generator, dtype=dtype) + torch.tensor([0.2, 0.1, 0.0], dtype=dtype)
    return x.to(device), y.to(device)


def timed_loss(loss_fn, n, device, mode, dtype=torch.float32):
    """setup(): build the clouds, return the function that computes (and differentiates) the loss."""

    def setup():
        x, y = clouds(n, device, dtype)
        x.requires_grad_(mode == "forward+backward")

        def run():
            value = loss_fn(x, y)
            if mode == "forward+backward":
                (grad,) = torch.autograd.grad(value.sum(), x)
                return grad
            return value.detach()

        return run

    return setup


def gdl_loss(solver: str):
    import gdl.ops

    backend = "torch" if solver == "tensorized" else "keops"
    return gdl.ops.get("sinkhorn", blur=BLUR, scaling=SCALING, solver=solver, backend=backend)


def geomloss_loss(solver: str):
    from gdl.ops.core.backend import import_pykeops

    import_pykeops()  # makes the C++ runtime global before GeomLoss imports pykeops
    from geomloss import SamplesLoss

    return SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=SCALING, backend=solver)


def pot_loss():
    import ot

    def loss(x, y):
        cost = torch.cdist(x, y) ** 2 / 2
        a = torch.full((x.shape[0],), 1 / x.shape[0], dtype=x.dtype, device=x.device)
        b = torch.full((y.shape[0],), 1 / y.shape[0], dtype=y.dtype, device=y.device)
        return ot.sinkhorn2(a, b, cost, reg=BLUR**2, method="sinkhorn_log", warn=False)

    return loss


def solver_skip(solver: str, n: int, device: torch.device) -> str | None:
    if solver == "tensorized" and n > TENSORIZED_MAX_N:
        return f"dense {n}x{n} cost matrices exceed the tensorized limit (N <= {TENSORIZED_MAX_N})"
    if solver == "online" and device.type == "cpu" and n > ONLINE_MAX_N_CPU:
        return f"online (quadratic time) beyond N = {ONLINE_MAX_N_CPU} takes minutes on a CPU"
    return None


def cases(device: torch.device, sizes: list[int]) -> list[Case]:
    out = []
    for n in sizes:
        for solver in ("tensorized", "online", "multiscale"):
            skip = solver_skip(solver, n, device)
            params = dict(solver=solver, blur=BLUR, scaling=SCALING, debias=True)
            implementation = GDL_NAMES[solver]
            for mode in MODES:
                out.append(
                    Case("sinkhorn", n, implementation, mode,
                         lambda s=solver, m=mode, k=n: timed_loss(gdl_loss(s), k, device, m)(),
                         skip, params)
                )
                out.append(
                    Case("sinkhorn", n, GEOMLOSS_NAMES[solver], mode,
                         lambda s=solver, m=mode, k=n: timed_loss(geomloss_loss(s), k, device, m)(),
                         skip, params)
                )
        try:
            import ot  # noqa: F401

            pot_skip = None if n <= POT_MAX_N else f"dense float64 {n}x{n} cost: out of reach for POT here"
        except ImportError:
            pot_skip = "POT is not installed"
        params = dict(blur=BLUR, eps=BLUR**2, debias=False, method="sinkhorn_log", dtype="float64")
        for mode in MODES:
            out.append(
                Case("sinkhorn", n, "pot", mode,
                     lambda m=mode, k=n: timed_loss(pot_loss(), k, device, m, torch.float64)(),
                     pot_skip, params)
            )
    return out
