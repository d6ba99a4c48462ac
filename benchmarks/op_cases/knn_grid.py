"""KNN (k = 16, 3D, float32): gdl's block-sparse voxel-grid search against brute force and raw KeOps.

Two clouds of N points: uniform in the unit cube (a volume) and uniform on the unit sphere (a
surface, like scans and molecular surfaces). Implementations: ``gdl-keops-grid`` and
``gdl-torch-grid`` (method="grid"), ``gdl-keops-brute`` (method="brute") and ``raw-keops``, the
same brute-force search written directly as a pykeops ``argKmin`` (what the grid must beat).
All return exact neighbours; the grid's ratio to ``raw-keops`` is its speed-up.
"""

from __future__ import annotations

import torch

from benchmarks.case import Case

K = 16
CLOUDS = ("uniform", "sphere")
# Brute force compares N^2 pairs: beyond this many, skipped on a CPU (minutes per run).
CPU_MAX_PAIRS = 10**10
# The dense-chunked torch grid is a reference, not a fast path: only up to this N.
TORCH_GRID_MAX_N = 100_000


def make_cloud(kind: str, n: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(n)
    if kind == "uniform":
        x = torch.rand(n, 3, generator=generator)
    else:
        x = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=1)
    return x.to(device)


def gdl_knn(kind, n, device, method, backend):
    def setup():
        import gdl.ops

        x = make_cloud(kind, n, device)
        knn = gdl.ops.get("knn", k=K, method=method, backend=backend)
        return lambda: knn(x)

    return setup


def raw_keops(kind, n, device):
    def setup():
        from gdl.ops.core.backend import import_pykeops

        LazyTensor = import_pykeops().LazyTensor
        x = make_cloud(kind, n, device)
        x_i, x_j = LazyTensor(x[:, None, :]), LazyTensor(x[None, :, :])
        d_ij = ((x_i - x_j) ** 2).sum(-1)
        return lambda: d_ij.argKmin(K, dim=1)

    return setup


def cases(device: torch.device, sizes: list[int]) -> list[Case]:
    device = torch.device(device)
    out = []
    for kind in CLOUDS:
        for n in sizes:
            params = {"k": K, "cloud": kind, "dim": 3, "dtype": "float32"}
            brute_skip = (
                f"brute force: {n}^2 pairs is too many for a CPU"
                if device.type == "cpu" and n * n > CPU_MAX_PAIRS
                else None
            )
            torch_skip = f"the torch grid is a reference, run up to N = {TORCH_GRID_MAX_N}" if n > TORCH_GRID_MAX_N else None
            for implementation, setup, skip in (
                ("gdl-keops-grid", gdl_knn(kind, n, device, "grid", "keops"), None),
                ("gdl-torch-grid", gdl_knn(kind, n, device, "grid", "torch"), torch_skip),
                ("gdl-keops-brute", gdl_knn(kind, n, device, "brute", "keops"), brute_skip),
                ("raw-keops", raw_keops(kind, n, device), brute_skip),
            ):
                out.append(Case(f"knn-{kind}", n, implementation, "forward", setup, skip, dict(params)))
    return out
