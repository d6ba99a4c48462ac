"""Truncated vs exact windowed reductions on a real lidar frame (KITTI), float32.

Gaussian kernel_conv and nadaraya_watson with sigma = 1 % of the bounding-box diagonal of N points
drawn from one KITTI frame (all of it at N = 100k), exact (KeOps) and with truncate = 4 (KeOps
block-sparse ranges; torch pair list). Each truncated row records, in ``params``, its largest
error relative to the exact sum on 256 sampled rows (float64 dense reference) and the fraction of
pairs within the cutoff (the work a perfect truncation keeps). Ratios are to the exact KeOps row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.case import Case

FRAME = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kitti_sceneflow" / "000000" / "pc1.npy"
TRUNCATE = 4.0
# Exact window sums are quadratic: beyond this N one call takes minutes on a CPU.
MAX_EXACT_N_CPU = 20_000
# The torch pair list is a reference, not a fast path (index arithmetic per candidate pair).
MAX_TORCH_N_CPU = 10_000
SAMPLED_ROWS = 256


def lidar(n: int, device: torch.device):
    """n points of the frame (fixed draw), values, weights, and sigma = 1 % of the diagonal."""
    points = torch.from_numpy(np.load(FRAME))
    generator = torch.Generator().manual_seed(n)
    if n < points.shape[0]:
        points = points[torch.randperm(points.shape[0], generator=generator)[:n]]
    values = torch.randn(points.shape[0], 1, generator=generator)
    weights = torch.rand(points.shape[0], generator=generator) + 0.1
    sigma = 0.01 * float((points.max(0).values - points.min(0).values).norm())
    return points.to(device), values.to(device), weights.to(device), sigma


def sampled_reference(operator: str, x, values, weights, sigma, rows):
    """Exact float64 results on ``rows`` and the fraction of their pairs within the cutoff."""
    x64, v64, w64 = x.double().cpu(), values.double().cpu(), weights.double().cpu()
    d2 = torch.cdist(x64[rows], x64) ** 2
    k = torch.exp(-d2 / (2 * sigma**2))
    within = float((d2 < (TRUNCATE * sigma) ** 2).double().mean())
    if operator == "kernel_conv":
        return k @ v64, within
    kw = k * w64
    return (kw @ v64) / kw.sum(1, keepdim=True), within


def cases(device: torch.device, sizes: list[int]) -> list[Case]:
    if not FRAME.is_file():
        return []
    import gdl.ops

    found = []
    for n in sorted(set(sizes)):
        for operator in ("kernel_conv", "nadaraya_watson"):
            for implementation, backend, truncate in (
                ("gdl-keops", "keops", None),
                ("gdl-keops-truncate4", "keops", TRUNCATE),
                ("gdl-torch-truncate4", "torch", TRUNCATE),
            ):

                def setup(n=n, operator=operator, backend=backend, truncate=truncate, params=None):
                    x, values, weights, sigma = lidar(n, device)
                    op = gdl.ops.get(operator, sigma=sigma, backend=backend, truncate=truncate)

                    def run():
                        if operator == "kernel_conv":
                            return op(x, x, values)
                        return op(x, x, values, weights)

                    if truncate is not None:
                        rows = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:SAMPLED_ROWS]
                        expected, within = sampled_reference(operator, x, values, weights, sigma, rows)
                        got = run()[rows].double().cpu()
                        error = float((got - expected).abs().max() / expected.abs().max())
                        params.update(relative_error=error, pairs_within_cutoff=within)
                    params.update(sigma=sigma, points=int(x.shape[0]))
                    return run

                skip = None
                if device.type == "cpu" and truncate is None and n > MAX_EXACT_N_CPU:
                    skip = f"exact window sums beyond N = {MAX_EXACT_N_CPU} take minutes on a CPU"
                if device.type == "cpu" and backend == "torch" and n > MAX_TORCH_N_CPU:
                    skip = f"the torch pair list beyond N = {MAX_TORCH_N_CPU} takes minutes on a CPU"
                case = Case(
                    operator=f"{operator}_lidar",
                    n=n,
                    implementation=implementation,
                    mode="forward",
                    setup=None,
                    skip=skip,
                    baseline="gdl-keops",
                    repeats=3 if n >= MAX_EXACT_N_CPU else None,
                )
                case.setup = lambda setup=setup, case=case: setup(params=case.params)
                found.append(case)
    return found
