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
backend computes the same sums densely in chunks.
"""

from __future__ import annotations

import torch

import gdl.ops
from gdl.ops.backend import check_backend_name, import_pykeops, resolve_backend
from gdl.ops.base import row_chunks
from gdl.ops.batching import batch_pair, require_nonempty_targets
from gdl.ops.checks import check_batch, check_points, check_positive

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


def smooth_distance(x, atoms, radii, batch_x=None, batch_atoms=None, backend: str = "auto"):
    """SDF(x) of the module docstring with sigma_k = ``radii`` (M,), shape (N,), differentiable in x
    and atoms. ``atoms_to_surface`` passes sigma_k = smoothness * radius_k / radius_H."""
    pair = batch_pair(batch_x, batch_atoms, x.shape[0], atoms.shape[0], "batch", "batch_atoms")
    require_nonempty_targets(pair, "atoms")
    if resolve_backend(backend, x.device) == "keops":
        d_ij, s_j = _lazy_atom_distances(x, atoms, radii)
        log_sum = -d_ij / s_j
        soft_radius = -d_ij
        if pair.num_items > 1:
            log_sum.ranges = soft_radius.ranges = pair.keops_ranges(x.device)
        lse = log_sum.logsumexp(dim=1)[:, 0]
        sigma = soft_radius.sumsoftmaxweight(s_j, axis=1)[:, 0]
        return -sigma * lse
    out = []
    for _, sx, sa in pair.item_slices():
        xs, a, s = x[sx], atoms[sa], radii[sa]
        for rows in row_chunks(xs.shape[0], a.shape[0]):
            d = (xs[rows, None, :] - a[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
            sigma = (torch.softmax(-d, dim=1) * s).sum(1)
            out.append(-sigma * torch.logsumexp(-d / s, dim=1))
    return torch.cat(out) if out else x.new_zeros(0)


def van_der_waals_gap(x, atoms, radii, batch_x=None, batch_atoms=None, backend: str = "auto"):
    """(N,) min_k |x - a_k| - radius_k: negative inside a van der Waals sphere."""
    pair = batch_pair(batch_x, batch_atoms, x.shape[0], atoms.shape[0], "batch", "batch_atoms")
    require_nonempty_targets(pair, "atoms")
    if resolve_backend(backend, x.device) == "keops":
        d_ij, r_j = _lazy_atom_distances(x, atoms, radii)
        gap_ij = d_ij - r_j
        if pair.num_items > 1:
            gap_ij.ranges = pair.keops_ranges(x.device)
        return gap_ij.min(dim=1)[:, 0]
    out = []
    for _, sx, sa in pair.item_slices():
        xs, a, r = x[sx], atoms[sa], radii[sa]
        for rows in row_chunks(xs.shape[0], a.shape[0]):
            out.append((torch.cdist(xs[rows], a) - r).min(1).values)
    return torch.cat(out) if out else x.new_zeros(0)


def _value_and_gradient(x, atoms, radii, batch_x, batch_atoms, backend):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        sdf = smooth_distance(x, atoms, radii, batch_x, batch_atoms, backend)
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
):
    """Sample the surface SDF = distance of the module docstring.

    ``atoms`` (M, 3) in angstroms, ``atom_types`` (M, 6) one-hot over C, H, O, N, S, SE, ``batch``
    (M,) sorted protein index of each atom. ``distance`` is the level r (angstroms), ``smoothness``
    the scale of a hydrogen in the soft minimum, ``steps`` the number of Newton steps and ``margin``
    the largest |SDF - r| (angstroms) of a kept point. Returns ``(points, normals, batch)``: (N, 3) points about
    ``resolution`` apart, (N, 3) unit outward normals and the (N,) protein index of each point.
    Not differentiable (the sampling is random); gradients flow through the features computed on it.
    Works under ``torch.no_grad`` and ``torch.inference_mode`` (it needs grad SDF internally).
    """
    with torch.inference_mode(False):
        return _atoms_to_surface(
            atoms, atom_types, batch, resolution, distance, points_per_atom, steps, margin, smoothness, generator, backend
        )


def _atoms_to_surface(
    atoms, atom_types, batch, resolution, distance, points_per_atom, steps, margin, smoothness, generator, backend
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
        x = _newton_step(x, atoms, sigma, x_batch, batch, level, backend)

    # Keep the points on the level set, then thin to the resolution.
    sdf = smooth_distance(x, atoms, sigma, x_batch, batch, backend)
    on_level = (sdf - level).abs() < margin
    x, x_batch = x[on_level], x_batch[on_level]
    if x.shape[0] == 0:
        raise ValueError("atoms_to_surface: no surface point survived; check the atom coordinates")
    subsample = gdl.ops.get("grid_subsample", voxel_size=float(resolution))
    x, x_batch, _ = subsample(x, x_batch)

    # One last Newton step (averaging moved points off the level set).
    x = _newton_step(x, atoms, sigma, x_batch, batch, level, backend)

    # Drop points trapped inside: inside a van der Waals sphere, or in a closed cavity (marching
    # outward along grad SDF, the distance to the atoms stays small).
    inside = van_der_waals_gap(x, atoms, radii, x_batch, batch, backend) < 0
    walker = x
    for _ in range(ESCAPE_STEPS):
        _, grad = _value_and_gradient(walker, atoms, sigma, x_batch, batch, backend)
        walker = walker + ESCAPE_STEP * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    gain = smooth_distance(walker, atoms, sigma, x_batch, batch, backend) - level
    trapped = gain < ESCAPE_GAIN * ESCAPE_STEPS * ESCAPE_STEP
    keep = ~(inside | trapped)
    x, x_batch = x[keep], x_batch[keep]
    if x.shape[0] == 0:
        raise ValueError("atoms_to_surface: no surface point survived; check the atom coordinates")

    _, grad = _value_and_gradient(x, atoms, sigma, x_batch, batch, backend)
    normals = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x.detach(), normals.detach(), x_batch


def _newton_step(x, atoms, sigma, x_batch, batch, level, backend):
    sdf, grad = _value_and_gradient(x, atoms, sigma, x_batch, batch, backend)
    return x - ((sdf - level) / grad.pow(2).sum(-1).clamp_min(1e-6))[:, None] * grad
