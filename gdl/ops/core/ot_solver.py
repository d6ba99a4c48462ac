"""Shared plumbing of the optimal transport operators, on top of GeomLoss' ``SamplesLoss``.

Conventions (GeomLoss'): the cost is C(x, y) = |x - y| for p = 1 and |x - y|^2 / 2 for p = 2, the
temperature is eps = blur^p and the marginal penalty rho = reach^p (reach None: balanced OT).
Entropic OT between alpha = sum_i a_i delta_{x_i} and beta = sum_j b_j delta_{y_j} has the plan

    P_ij = a_i b_j exp((f_i + g_j - C(x_i, y_j)) / eps)

for the (non-debiased) dual potentials f, g. GeomLoss batches only equal-size (B, N, D) tensors, so
ragged batches are solved one item at a time: items never interact.

Solvers: "tensorized" builds dense cost matrices (torch backend), "online" and "multiscale" keep
them symbolic with KeOps (linear memory; multiscale truncates the kernel on a voxel clustering).

Epsilon-scaling: GeomLoss anneals blur from the cloud's diameter down to ``blur`` by the factor
``scaling``. Coarse annealing is accurate for balanced OT but not for unbalanced OT: on 1,200
points translated by 0.27 (blur 0.01, reach 1) the median barycentric error is about 0.13 at
scaling 0.5 and 0.002 at 0.9. ``scaling=None`` therefore means 0.5 when balanced and 0.9 when
``reach`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gdl.ops.core.backend import import_pykeops, keops_status
from gdl.ops.core.batching import BatchPair, batch_pair
from gdl.ops.core.checks import (
    check_batch,
    check_choice,
    check_finite,
    check_flag,
    check_pair,
    check_points,
    check_positive,
    check_same_device_dtype,
)

SOLVERS = ("auto", "tensorized", "online", "multiscale")
KEOPS_SOLVERS = ("online", "multiscale")
BALANCED_SCALING = 0.5
UNBALANCED_SCALING = 0.9
# Largest dense cost matrix (entries) the tensorized solver builds; GeomLoss' own "auto" threshold.
TENSORIZED_MAX_ELEMENTS = 5000**2
# Above this many cost entries (and in D <= 3, p = 2), the KeOps solvers switch to multiscale, as
# in GeomLoss' own "auto". Measured on a KITTI pair of 8,192 points (robot_map, blur 0.05 m, reach
# 2 m, CPU): multiscale 41 s, online 102 s, barycentric EPE3D 0.17954 vs 0.17961 m.
MULTISCALE_MIN_ELEMENTS = TENSORIZED_MAX_ELEMENTS
# Relative tolerance on equal total masses in balanced OT.
MASS_RTOL = 1e-4


@dataclass(frozen=True)
class OTParams:
    """Checked parameters of a GeomLoss Sinkhorn solve."""

    p: int
    blur: float
    reach: float | None
    scaling: float
    debias: bool
    solver: str

    @property
    def eps(self) -> float:
        return self.blur**self.p

    @property
    def balanced(self) -> bool:
        return self.reach is None

    def describe(self) -> str:
        return (
            f"p={self.p}, blur={self.blur}, reach={self.reach}, scaling={self.scaling}, "
            f"debias={self.debias}, solver={self.solver!r}"
        )


def ot_params(p, blur, reach, scaling, debias, solver) -> OTParams:
    """Check the user's parameters; ``scaling=None`` resolves to the balanced/unbalanced default."""
    check_choice("p", p, (1, 2))
    blur = float(check_positive("blur", blur))
    if reach is not None:
        reach = float(check_positive("reach", reach))
    if scaling is None:
        scaling = BALANCED_SCALING if reach is None else UNBALANCED_SCALING
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not 0 < scaling < 1:
        raise ValueError(f"scaling must be a number in (0, 1) or None, got {scaling!r}")
    check_flag("debias", debias)
    check_choice("solver", solver, SOLVERS)
    return OTParams(int(p), blur, reach, float(scaling), debias, solver)


@dataclass(frozen=True)
class Measures:
    """Two checked weighted clouds and their item layout."""

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor  # (N,) non-negative masses
    b: torch.Tensor  # (M,)
    pair: BatchPair

    def items(self):
        """Yield ``(b, slice_x, slice_y)`` for every batch item."""
        return self.pair.item_slices()


def check_masses(name: str, mass, n: int, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(mass, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mass).__name__}")
    if mass.dim() != 1 or mass.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the points, got {tuple(mass.shape)}")
    check_same_device_dtype(name, mass, like)
    check_finite(name, mass)
    if bool((mass < 0).any()):
        raise ValueError(f"{name} must be non-negative, got {int((mass < 0).sum())} negative masses")
    return mass


def uniform_masses(start: torch.Tensor, end: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """1 / N_b for every point of an item with N_b points."""
    counts = end - start
    per_point = torch.repeat_interleave(counts, counts).to(device=like.device, dtype=like.dtype)
    return 1 / per_point


def check_measures(x, y, a, b, batch_x, batch_y, balanced: bool) -> Measures:
    """Check two (possibly batched) weighted clouds; omitted masses are uniform per item."""
    check_points("x", x)
    check_points("y", y)
    check_pair(x, y)
    check_batch("batch_x", batch_x, x.shape[0], x.device)
    check_batch("batch_y", batch_y, y.shape[0], y.device)
    pair = batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
    one_sided = ((pair.counts_x > 0) != (pair.counts_y > 0)).nonzero().flatten().tolist()
    if one_sided:
        raise ValueError(
            f"batch item(s) {one_sided[:10]} have points in only one of x and y: "
            "transport needs points on both sides"
        )
    a = uniform_masses(pair.start_x, pair.end_x, x) if a is None else check_masses("a", a, x.shape[0], x)
    b = uniform_masses(pair.start_y, pair.end_y, y) if b is None else check_masses("b", b, y.shape[0], y)
    for name, mass, start, end in (("a", a, pair.start_x, pair.end_x), ("b", b, pair.start_y, pair.end_y)):
        totals = item_sums(mass, start, end)
        empty = ((totals <= 0) & (end - start > 0).to(totals.device)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"{name} sums to zero on batch item(s) {empty[:10]}: there is no mass to transport"
            )
    if balanced:
        total_a = item_sums(a, pair.start_x, pair.end_x)
        total_b = item_sums(b, pair.start_y, pair.end_y)
        off = ((total_a - total_b).abs() > MASS_RTOL * torch.maximum(total_a, total_b)).nonzero()
        if off.numel():
            item = int(off[0])
            raise ValueError(
                f"balanced OT (reach=None) needs equal total masses, but on batch item {item} "
                f"a sums to {float(total_a[item]):.6g} and b to {float(total_b[item]):.6g}: "
                "normalise them or set reach for unbalanced OT"
            )
    return Measures(x, y, a, b, pair)


def item_sums(values: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Per-item sums of a (N,) vector laid out by item bounds (detached)."""
    cumulative = torch.cat([values.new_zeros(1), values.detach().cumsum(0)])
    return cumulative[end.to(values.device)] - cumulative[start.to(values.device)]


def choose_solver(params: OTParams, backend: str, resolved: str, measures: Measures) -> str:
    """The GeomLoss solver for these inputs.

    ``backend`` is what the user asked ("auto", "keops", "torch"), ``resolved`` the backend that
    works on the device. An explicit solver must agree with an explicit backend. With
    ``solver="auto"``: torch -> tensorized; keops -> online, or multiscale for large problems in
    D <= 3 with p = 2; auto -> like keops, but tensorized while the largest item's cost matrix
    has at most 5000^2 entries (GeomLoss' heuristic: dense is faster there).
    """
    solver = params.solver
    largest = int((measures.pair.counts_x * measures.pair.counts_y).max())
    if solver == "auto":
        if resolved == "torch" or (backend == "auto" and largest <= TENSORIZED_MAX_ELEMENTS):
            return "tensorized"
        big = largest > MULTISCALE_MIN_ELEMENTS and measures.x.shape[1] <= 3 and params.p == 2
        return "multiscale" if big else "online"
    if solver == "tensorized" and backend == "keops":
        raise ValueError("solver='tensorized' is the dense torch solver: it cannot run with backend='keops'")
    if solver in KEOPS_SOLVERS:
        if backend == "torch":
            raise ValueError(f"solver={solver!r} runs on KeOps: it cannot run with backend='torch'")
        works, reason = keops_status(measures.x.device)
        if not works:
            raise RuntimeError(f"solver={solver!r} needs KeOps, but on {measures.x.device} {reason}")
    return solver


def check_tensorized_size(params: OTParams, measures: Measures) -> None:
    """Refuse dense cost matrices beyond TENSORIZED_MAX_ELEMENTS entries, with the way out."""
    cx, cy = measures.pair.counts_x, measures.pair.counts_y
    sizes = cx * cy
    if params.debias:
        sizes = torch.maximum(sizes, torch.maximum(cx * cx, cy * cy))
    item = int(sizes.argmax())
    if int(sizes[item]) > TENSORIZED_MAX_ELEMENTS:
        raise ValueError(
            f"the tensorized (dense torch) solver would build a {int(sizes[item]):,}-entry cost matrix "
            f"for batch item {item} ({int(cx[item])} x {int(cy[item])} points), more than its limit of "
            f"{TENSORIZED_MAX_ELEMENTS:,}: use solver='online' or 'multiscale' (KeOps, linear memory)"
        )


def samples_loss(params: OTParams, solver: str, potentials: bool):
    """The GeomLoss ``SamplesLoss`` module computing one item."""
    import_pykeops()  # makes the C++ runtime global before GeomLoss imports pykeops
    from geomloss import SamplesLoss

    return SamplesLoss(
        "sinkhorn",
        p=params.p,
        blur=params.blur,
        reach=params.reach,
        scaling=params.scaling,
        debias=params.debias,
        potentials=potentials,
        backend=solver,
    )


def solve(params: OTParams, solver: str, measures: Measures, potentials: bool):
    """Per item: the loss (B,) tensor, or the potentials (f (N,), g (M,)) when ``potentials``."""
    if solver == "tensorized":
        check_tensorized_size(params, measures)
    loss = samples_loss(params, solver, potentials)
    x, y, a, b = measures.x, measures.y, measures.a, measures.b
    values, f_parts, g_parts = [], [], []
    for _, sx, sy in measures.items():
        if sx.stop == sx.start:
            values.append(x.new_zeros(()))
            continue
        out = loss(a[sx], x[sx], b[sy], y[sy])
        if potentials:
            f_parts.append(out[0].reshape(-1))
            g_parts.append(out[1].reshape(-1))
        else:
            values.append(out.reshape(()))
    if potentials:
        return torch.cat(f_parts), torch.cat(g_parts)
    return torch.stack(values)
