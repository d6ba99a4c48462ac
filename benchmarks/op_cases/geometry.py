"""Surface geometry cases: normals, tangent frames, curvatures, quasi-geodesic and point convolutions.

Every case runs on N points of a noisy unit sphere (float32) with windows of a few point
spacings (spacing = sqrt(4 pi / N)), so that a window holds about the same number of points at
every N. Peer: the curvature window sums written directly with pykeops LazyTensors ("raw-keops"),
whose ratio to gdl-keops curvatures is the wrapper's overhead (checks, frames, 2x2 solves).
"""

from __future__ import annotations

import math

import torch

from benchmarks.case import Case

# Every window sum is quadratic in time (KeOps included): beyond this N one call takes many
# minutes on a CPU. A GPU runs every case.
MAX_N_CPU = 20_000
CHANNELS, HIDDEN, K = 16, 16, 16


def surface(n: int, device: torch.device, channels: int = CHANNELS):
    """Points, outward unit normals, tangent frames and features on a noisy unit sphere."""
    from gdl.ops.tangent_frames import tangent_basis

    generator = torch.Generator().manual_seed(n)
    normals = torch.randn(n, 3, generator=generator)
    normals = normals / normals.norm(dim=1, keepdim=True)
    x = normals + 0.1 * spacing(n) * torch.randn(n, 3, generator=generator)
    features = torch.randn(n, channels, generator=generator)
    return [t.to(device) for t in (x, normals, tangent_basis(normals), features)]


def spacing(n: int) -> float:
    return math.sqrt(4 * math.pi / n)


def skip_on_cpu(n: int, device: torch.device) -> str | None:
    if device.type == "cpu" and n > MAX_N_CPU:
        return f"quadratic window sums beyond N = {MAX_N_CPU} take many minutes on a CPU"
    return None


def timed(make_op, call, n, device, mode):
    """setup(): build the operator and inputs, return the function that runs (and differentiates) it."""

    def setup():
        op = make_op().to(device)
        x, normals, frames, features = surface(n, device)
        x.requires_grad_(mode == "forward+backward")

        def run():
            out = call(op, x, normals, frames, features)
            if mode == "forward+backward":
                return torch.autograd.grad(out.sum(), [x, *op.parameters()])
            return out.detach()

        return run

    return setup


def raw_keops_curvature_sums(x, normals, scale):
    """sum_j w_ij [1, d d^T, e d^T] with d = x_j - x_i, e = n_j - n_i: the sums curvatures needs."""
    from gdl.ops.core.backend import import_pykeops

    LazyTensor = import_pykeops().LazyTensor
    d = LazyTensor(x[None, :, :]) - LazyTensor(x[:, None, :])
    e = LazyTensor(normals[None, :, :]) - LazyTensor(normals[:, None, :])
    w = (-(d**2).sum(-1) / (2 * scale**2)).exp()
    wd = w * d
    terms = w.concat(wd * d[0]).concat(wd * d[1]).concat(wd * d[2])
    return terms.concat(wd * e[0]).concat(wd * e[1]).concat(wd * e[2]).sum(dim=1)


def cases(device: torch.device, sizes: list[int]) -> list[Case]:
    import gdl.ops

    out = []
    for n in sizes:
        h = spacing(n)
        window, scales, radius = 2.5 * h, [2.5 * h, 5 * h], 3 * h
        out.append(
            Case("tangent_frames", n, "gdl", "forward",
                 timed(lambda: gdl.ops.get("tangent_frames"), lambda op, x, nrm, f, g: op(nrm), n, device,
                       "forward"))
        )
        for backend in ("keops", "torch"):
            skip = skip_on_cpu(n, device)
            implementation = f"gdl-{backend}"
            out.append(
                Case("normals", n, implementation, "forward",
                     timed(lambda b=backend: gdl.ops.get("normals", scale=window, backend=b),
                           lambda op, x, nrm, f, g: op(x), n, device, "forward"),
                     skip, dict(scale=window))
            )
            out.append(
                Case("curvatures", n, implementation, "forward",
                     timed(lambda b=backend: gdl.ops.get("curvatures", scales=scales, backend=b),
                           lambda op, x, nrm, f, g: op(x, nrm), n, device, "forward"),
                     skip, dict(scales=scales))
            )
            for mode in ("forward", "forward+backward"):
                params = dict(in_channels=CHANNELS, out_channels=CHANNELS, hidden_units=HIDDEN)
                out.append(
                    Case("quasi_geodesic_conv", n, implementation, mode,
                         timed(lambda b=backend: gdl.ops.get("quasi_geodesic_conv", radius=radius,
                                                             backend=b, **params),
                               lambda op, x, nrm, f, g: op(x, nrm, f, g), n, device, mode),
                         skip, dict(radius=radius, **params))
                )
                out.append(
                    Case("point_conv", n, implementation, mode,
                         timed(lambda b=backend: gdl.ops.get("point_conv", k=K, backend=b, **params),
                               lambda op, x, nrm, f, g: op(x, x, g), n, device, mode),
                         skip, dict(k=K, **params))
                )
        out.append(
            Case("curvatures", n, "raw-keops", "forward",
                 timed(lambda: torch.nn.Identity(),
                       lambda op, x, nrm, f, g: [raw_keops_curvature_sums(x, nrm, s) for s in scales][-1],
                       n, device, "forward"),
                 skip_on_cpu(n, device), dict(scales=scales, note="window sums only"))
        )
    return out
