"""Protein surfaces from atoms: a level set of a smooth distance function, sampled by points.

For atoms a_k with smoothing scales sigma_k, the smooth distance of a point x is

    SDF(x) = - sigma(x) * log sum_k exp(-|x - a_k| / sigma_k),
    sigma(x) = sum_k exp(-|x - a_k|) sigma_k / sum_k exp(-|x - a_k|)   (a soft nearest scale),

a soft minimum of the distances to the atom centres (angstroms). The scales follow the atom radii,
sigma_k = smoothness * radius_k / radius_H (the dMaSIF convention: smoothness 0.5, so 0.5 for H and
0.86 for SE). The surface is the level set SDF = r (``distance``, angstroms, 1.05 by default): with
protonated atoms it lies a fraction of an angstrom outside the van der Waals spheres (the soft
minimum over crowded atoms is smaller than the nearest distance). Points drawn around every atom are
moved onto it by Newton steps along grad SDF, points off the level set are dropped, a voxel grid of
side ``resolution`` thins them, points trapped inside the protein (inside a van der Waals sphere, or
in a closed cavity: marching outward along grad SDF does not take them away from the atoms) are
dropped, and the normals are grad SDF / |grad SDF|, which points outward. The sums over atoms are
KeOps log-sum-exp, soft-max and min reductions with one block per protein (ragged batches); the torch
backend computes the same sums densely in chunks. With ``truncate``, each point only sees the atoms
within a cutoff (:mod:`gdl.ops.locality`: block-sparse KeOps ranges, a pair list for torch).
"""

from __future__ import annotations

import math

import torch

import gdl.ops
from gdl.ops.backend import check_backend_name, import_pykeops, resolve_backend
from gdl.ops.base import row_chunks
from gdl.ops.batching import batch_pair, require_nonempty_targets
from gdl.ops.checks import check_batch, check_points, check_positive
from gdl.ops.locality import StreamingSoftmax, check_truncate, local_pairs

# Van der Waals radii (angstroms) of the atom types C, H, O, N, S, SE of gdl.data.pdb.ATOM_TYPES.
ATOM_RADII = (1.70, 1.10, 1.52, 1.55, 1.80, 1.90)
# Outward march that tells surface points from points trapped in closed cavities: ESCAPE_STEPS steps
# of ESCAPE_STEP angstroms along grad SDF; a point is kept when SDF has grown by at least
# ESCAPE_GAIN times the length marched (about 1 for a point that can leave the protein).
ESCAPE_STEPS, ESCAPE_STEP, ESCAPE_GAIN = 4, 1.0, 0.5


def atom_radii(atom_types: torch.Tensor) -> torch.Tensor:
    """(M,) radius of each atom from its one-hot (or soft) type over the six atom types."""
    radii = torch.tensor(ATOM_RADII, dtype=atom_types.dtype, device=atom_types.device)
    return atom_types @ radii


def _lazy_atom_distances(x, atoms, per_atom):
    """KeOps LazyTensors |x_i - a_j| (N, M) and ``per_atom`` values (M,) as a j-variable."""
    LazyTensor = import_pykeops().LazyTensor
    x_i = LazyTensor(x[:, None, :].contiguous())
    a_j = LazyTensor(atoms[None, :, :].contiguous())
    return ((x_i - a_j) ** 2).sum(-1).sqrt(), LazyTensor(per_atom[None, :, None].contiguous())


def smooth_distance(
    x, atoms, radii, batch_x=None, batch_atoms=None, backend: str = "auto", truncate: float | None = None
):
    """SDF(x) of the module docstring with sigma_k = ``radii`` (M,), shape (N,), differentiable in x
    and atoms. ``atoms_to_surface`` passes sigma_k = smoothness * radius_k / radius_H.

    ``truncate`` = t (None: every atom) sums over the atoms closer than c = t * L only, with
    L = max(1, max_k sigma_k) angstroms the longest decay length of the two soft minima
    (:mod:`gdl.ops.locality`). For a point within delta of its nearest atom, every dropped term is
    below exp(-(c - delta) / L) of that atom's: a surface point (delta about 3 A) with t = 10
    drops terms below e^-7 ~ 1e-3 each. Points with no atom within c get the exact value.
    """
    truncate = check_truncate(truncate)
    pair = batch_pair(batch_x, batch_atoms, x.shape[0], atoms.shape[0], "batch", "batch_atoms")
    require_nonempty_targets(pair, "atoms")
    keops = resolve_backend(backend, x.device) == "keops"
    local = None
    if truncate is not None:
        local = local_pairs(x, atoms, pair, batch_x, batch_atoms, truncate * _decay_length(radii))
    if local is None:
        if keops:
            return _keops_smooth_distance(x, atoms, radii, pair.keops_ranges(x.device) if pair.num_items > 1 else None)
        return _dense_smooth_distance(x, atoms, radii, pair)
    if keops:
        p, q = local.perm_x, local.perm_y
        sdf = _keops_smooth_distance(x[p], atoms[q], radii[q], local.keops_ranges())[local.inverse_x]
    else:
        sdf = _sparse_smooth_distance(x, atoms, radii, local)
    return _exact_where_empty(
        sdf, x, batch_x, lambda rows, batch: smooth_distance(x[rows], atoms, radii, batch, batch_atoms, backend)
    )


def _decay_length(radii: torch.Tensor) -> float:
    return max(1.0, float(radii.max()))


def _exact_where_empty(values, x, batch_x, exact):
    """``values`` with its non-finite rows (points whose window holds no atom) computed exactly."""
    empty = ~torch.isfinite(values.detach())
    if not bool(empty.any()):
        return values
    rows = empty.nonzero()[:, 0]
    return values.index_put((rows,), exact(rows, None if batch_x is None else batch_x[rows]))


def _keops_smooth_distance(x, atoms, radii, ranges):
    d_ij, s_j = _lazy_atom_distances(x, atoms, radii)
    log_sum = -d_ij / s_j
    soft_radius = -d_ij
    if ranges is not None:
        log_sum.ranges = soft_radius.ranges = ranges
    lse = log_sum.logsumexp(dim=1)[:, 0]
    sigma = soft_radius.sumsoftmaxweight(s_j, axis=1)[:, 0]
    return -sigma * lse


def _dense_smooth_distance(x, atoms, radii, pair):
    out = []
    for _, sx, sa in pair.item_slices():
        xs, a, s = x[sx], atoms[sa], radii[sa]
        for rows in row_chunks(xs.shape[0], a.shape[0]):
            d = (xs[rows, None, :] - a[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
            sigma = (torch.softmax(-d, dim=1) * s).sum(1)
            out.append(-sigma * torch.logsumexp(-d / s, dim=1))
    return torch.cat(out) if out else x.new_zeros(0)


def _sparse_smooth_distance(x, atoms, radii, local):
    """The truncated SDF on the torch backend; NaN for points without pairs."""
    n = x.shape[0]
    log_sum, soft_radius = StreamingSoftmax(n, 1, x), StreamingSoftmax(n, 2, x)
    for i, j in local.pairs(x, atoms):
        d = (x[i] - atoms[j]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
        s = radii[j]
        log_sum.add(i, -d / s, torch.ones_like(d)[:, None])
        soft_radius.add(i, -d, torch.stack([s, torch.ones_like(s)], 1))
    visited = torch.isfinite(log_sum.shift)
    safe = torch.where(visited[:, None], log_sum.sums, torch.ones_like(log_sum.sums))[:, 0]
    lse = torch.where(visited, log_sum.shift, torch.zeros_like(log_sum.shift)) + safe.log()
    num, den = soft_radius.sums.unbind(1)
    sigma = num / torch.where(visited, den, torch.ones_like(den))
    return torch.where(visited, -sigma * lse, torch.full_like(lse, math.nan))


def van_der_waals_gap(
    x, atoms, radii, batch_x=None, batch_atoms=None, backend: str = "auto", truncate: float | None = None
):
    """(N,) min_k |x - a_k| - radius_k: negative inside a van der Waals sphere.

    ``truncate`` = t takes the minimum over the atoms closer than c = t * max(1, max radius)
    angstroms: exact wherever the gap is below c - max radius (always where it is negative);
    points with no atom within c get the exact value.
    """
    truncate = check_truncate(truncate)
    pair = batch_pair(batch_x, batch_atoms, x.shape[0], atoms.shape[0], "batch", "batch_atoms")
    require_nonempty_targets(pair, "atoms")
    keops = resolve_backend(backend, x.device) == "keops"
    local = None
    if truncate is not None:
        local = local_pairs(x, atoms, pair, batch_x, batch_atoms, truncate * _decay_length(radii))
    if local is None:
        if keops:
            return _keops_gap(x, atoms, radii, pair.keops_ranges(x.device) if pair.num_items > 1 else None)
        out = []
        for _, sx, sa in pair.item_slices():
            xs, a, r = x[sx], atoms[sa], radii[sa]
            for rows in row_chunks(xs.shape[0], a.shape[0]):
                out.append((torch.cdist(xs[rows], a) - r).min(1).values)
        return torch.cat(out) if out else x.new_zeros(0)
    if keops:
        p, q = local.perm_x, local.perm_y
        gap = _keops_gap(x[p], atoms[q], radii[q], local.keops_ranges())[local.inverse_x]
    else:
        gap = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
        for i, j in local.pairs(x, atoms):
            gap = gap.scatter_reduce(0, i, (x[i] - atoms[j]).norm(dim=-1) - radii[j], reduce="amin")
    return _exact_where_empty(
        gap, x, batch_x, lambda rows, batch: van_der_waals_gap(x[rows], atoms, radii, batch, batch_atoms, backend)
    )


def _keops_gap(x, atoms, radii, ranges):
    d_ij, r_j = _lazy_atom_distances(x, atoms, radii)
    gap_ij = d_ij - r_j
    if ranges is not None:
        gap_ij.ranges = ranges
    return gap_ij.min(dim=1)[:, 0]


def _value_and_gradient(x, atoms, radii, batch_x, batch_atoms, backend, truncate=None):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        sdf = smooth_distance(x, atoms, radii, batch_x, batch_atoms, backend, truncate)
        (grad,) = torch.autograd.grad(sdf.sum(), x)
    return sdf.detach(), grad


def atoms_to_surface(
    atoms: torch.Tensor,
    atom_types: torch.Tensor,
    batch: torch.Tensor | None = None,
    resolution: float = 1.0,
    distance: float = 1.05,
    points_per_atom: int = 20,
    steps: int = 4,
    margin: float = 0.2,
    smoothness: float = 0.5,
    generator: torch.Generator | None = None,
    backend: str = "auto",
    truncate: float | None = None,
):
    """Sample the surface SDF = distance of the module docstring.

    ``atoms`` (M, 3) in angstroms, ``atom_types`` (M, 6) one-hot over C, H, O, N, S, SE, ``batch``
    (M,) sorted protein index of each atom. ``distance`` is the level r (angstroms), ``smoothness``
    the scale of a hydrogen in the soft minimum, ``steps`` the number of Newton steps and ``margin``
    the largest |SDF - r| (angstroms) of a kept point. Returns ``(points, normals, batch)``: (N, 3) points about
    ``resolution`` apart, (N, 3) unit outward normals and the (N,) protein index of each point.
    Not differentiable (the sampling is random); gradients flow through the features computed on it.
    Works under ``torch.no_grad`` and ``torch.inference_mode`` (it needs grad SDF internally).
    ``truncate`` (None: every atom) is passed to :func:`smooth_distance` and
    :func:`van_der_waals_gap`: each point sees the atoms within ``truncate`` angstroms (times the
    largest smoothing scale when it exceeds 1 A).
    """
    with torch.inference_mode(False):
        return _atoms_to_surface(
            atoms,
            atom_types,
            batch,
            resolution,
            distance,
            points_per_atom,
            steps,
            margin,
            smoothness,
            generator,
            backend,
            truncate,
        )


def _atoms_to_surface(
    atoms,
    atom_types,
    batch,
    resolution,
    distance,
    points_per_atom,
    steps,
    margin,
    smoothness,
    generator,
    backend,
    truncate,
):
    check_points("atoms", atoms, dim=3)
    if not isinstance(atom_types, torch.Tensor) or atom_types.dim() != 2 or atom_types.shape != (
        atoms.shape[0],
        len(ATOM_RADII),
    ):
        shape = tuple(atom_types.shape) if isinstance(atom_types, torch.Tensor) else type(atom_types).__name__
        raise ValueError(f"atom_types must have shape ({atoms.shape[0]}, {len(ATOM_RADII)}), got {shape}")
    check_batch("batch", batch, atoms.shape[0], atoms.device)
    check_positive("resolution", resolution)
    check_positive("distance", distance)
    check_positive("points_per_atom", points_per_atom, integer=True)
    check_positive("smoothness", smoothness)
    check_backend_name(backend)
    check_truncate(truncate)
    atoms = atoms.detach().clone()  # a normal tensor, also when the input is an inference tensor
    dtype, device = atoms.dtype, atoms.device
    radii = atom_radii(atom_types.detach().clone().to(dtype))
    if batch is None:
        batch = torch.zeros(atoms.shape[0], dtype=torch.int64, device=device)
    batch = batch.clone()
    level = distance
    sigma = smoothness * radii / min(ATOM_RADII)

    # Draw points around each atom, about one radius plus the level away.
    noise = torch.randn(atoms.shape[0], points_per_atom, 3, generator=generator, dtype=dtype)
    x = (atoms[:, None, :] + (radii + level)[:, None, None] * noise.to(device) / 3**0.5).reshape(-1, 3)
    x_batch = batch.repeat_interleave(points_per_atom)

    # Newton steps onto the level set: x <- x - (SDF(x) - r) grad / |grad|^2.
    for _ in range(steps):
        x = _newton_step(x, atoms, sigma, x_batch, batch, level, backend, truncate)

    # Keep the points on the level set, then thin to the resolution.
    sdf = smooth_distance(x, atoms, sigma, x_batch, batch, backend, truncate)
    on_level = (sdf - level).abs() < margin
    x, x_batch = x[on_level], x_batch[on_level]
    if x.shape[0] == 0:
        raise ValueError("atoms_to_surface: no surface point survived; check the atom coordinates")
    subsample = gdl.ops.get("grid_subsample", voxel_size=float(resolution))
    x, x_batch, _ = subsample(x, x_batch)

    # One last Newton step (averaging moved points off the level set).
    x = _newton_step(x, atoms, sigma, x_batch, batch, level, backend, truncate)

    # Drop points trapped inside: inside a van der Waals sphere, or in a closed cavity (marching
    # outward along grad SDF, the distance to the atoms stays small).
    inside = van_der_waals_gap(x, atoms, radii, x_batch, batch, backend, truncate) < 0
    walker = x
    for _ in range(ESCAPE_STEPS):
        _, grad = _value_and_gradient(walker, atoms, sigma, x_batch, batch, backend, truncate)
        walker = walker + ESCAPE_STEP * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    gain = smooth_distance(walker, atoms, sigma, x_batch, batch, backend, truncate) - level
    trapped = gain < ESCAPE_GAIN * ESCAPE_STEPS * ESCAPE_STEP
    keep = ~(inside | trapped)
    x, x_batch = x[keep], x_batch[keep]
    if x.shape[0] == 0:
        raise ValueError("atoms_to_surface: no surface point survived; check the atom coordinates")

    _, grad = _value_and_gradient(x, atoms, sigma, x_batch, batch, backend, truncate)
    normals = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x.detach(), normals.detach(), x_batch


def _newton_step(x, atoms, sigma, x_batch, batch, level, backend, truncate):
    sdf, grad = _value_and_gradient(x, atoms, sigma, x_batch, batch, backend, truncate)
    return x - ((sdf - level) / grad.pow(2).sum(-1).clamp_min(1e-6))[:, None] * grad
