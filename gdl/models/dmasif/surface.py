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
windowed softmax and min reductions (:mod:`gdl.ops.core.window`) with one block per protein (ragged
batches). With ``truncate``, each point only sees the atoms within a cutoff.
"""

from __future__ import annotations

import math

import torch

import gdl.ops
from gdl.ops.core.backend import check_backend_name, resolve_backend
from gdl.ops.core.batching import batch_pair, require_nonempty_targets
from gdl.ops.core.checks import check_batch, check_points, check_positive
from gdl.ops.core.kernels import any_sqrt
from gdl.ops.core.locality import check_truncate
from gdl.ops.core.window import sqnorm, window

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


def smooth_distance(
    x, atoms, radii, batch_x=None, batch_atoms=None, backend: str = "auto", truncate: float | None = None
):
    """SDF(x) of the module docstring with sigma_k = ``radii`` (M,), shape (N,), differentiable in x
    and atoms. ``atoms_to_surface`` passes sigma_k = smoothness * radius_k / radius_H.

    ``truncate`` = t (None: every atom) sums over the atoms closer than c = t * L only, with
    L = max(1, max_k sigma_k) angstroms the longest decay length of the two soft minima
    (:mod:`gdl.ops.core.locality`). For a point within delta of its nearest atom, every dropped term is
    below exp(-(c - delta) / L) of that atom's: a surface point (delta about 3 A) with t = 10
    drops terms below e^-7 ~ 1e-3 each. Points with no atom within c get the exact value.
    """
    win = _atom_window(x, atoms, radii, batch_x, batch_atoms, backend, truncate)
    # Both soft minima in one softmax: log-weights -d_k [1 / sigma_k, 1, 1], values [1, sigma_k, 1].
    ones = torch.ones_like(radii)
    rates, columns = torch.stack([1 / radii, ones, ones], 1), torch.stack([ones, radii, ones], 1)
    return win.evaluate(
        lambda win: _soft_minima(*win.softmax(_log_weights, i=[x], j=[atoms, rates], values=columns))
    )


def _log_weights(x_i, a_j, rates_j):
    return -any_sqrt(sqnorm(x_i - a_j)) * rates_j


def _soft_minima(sums, shift):
    """-sigma * log-sum-exp from the softmax sums of :func:`smooth_distance`; NaN for empty windows."""
    visited = torch.isfinite(shift[:, 0])
    safe = torch.where(visited[:, None], sums, torch.ones_like(sums))
    lse = torch.where(visited, shift[:, 0], torch.zeros_like(shift[:, 0])) + safe[:, 0].log()
    sigma = safe[:, 1] / safe[:, 2]
    return torch.where(visited, -sigma * lse, torch.full_like(lse, math.nan))


def _atom_window(x, atoms, radii, batch_x, batch_atoms, backend, truncate):
    """The atoms within ``truncate`` decay lengths of each point (every atom of its protein when None)."""
    truncate = check_truncate(truncate)
    pair = batch_pair(batch_x, batch_atoms, x.shape[0], atoms.shape[0], "batch", "batch_atoms")
    require_nonempty_targets(pair, "atoms")
    backend = resolve_backend(backend, x.device)
    decay_length = 1.0 if truncate is None else max(1.0, float(radii.max()))
    return window(x, atoms, pair, batch_x, batch_atoms, backend, truncate, decay_length)


def van_der_waals_gap(
    x, atoms, radii, batch_x=None, batch_atoms=None, backend: str = "auto", truncate: float | None = None
):
    """(N,) min_k |x - a_k| - radius_k: negative inside a van der Waals sphere.

    ``truncate`` = t takes the minimum over the atoms closer than c = t * max(1, max radius)
    angstroms: exact wherever the gap is below c - max radius (always where it is negative);
    points with no atom within c get the exact value.
    """
    win = _atom_window(x, atoms, radii, batch_x, batch_atoms, backend, truncate)
    return win.evaluate(lambda win: win.min(_gap, i=[x], j=[atoms, radii[:, None]])[:, 0])


def _gap(x_i, a_j, r_j):
    return any_sqrt(sqnorm(x_i - a_j)) - r_j


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
