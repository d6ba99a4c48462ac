"""Hand-made, fixed descriptors of each surface point from the heavy atoms around it.

For a surface point x with outward normal n and the heavy atoms a_k within R of it:

- burial: the number of heavy atoms within r, divided by the count a full sphere of protein
  would hold (0.05 r^3 4 pi / 3 atoms at 0.05 heavy atoms per cubic angstrom), r in SHELLS;
- shape: the mean of <n, (a_k - x) / |a_k - x|> over the atoms within 6 and 10 angstroms
  (about -1/2 on a convex bump, towards 0 in a groove);
- chemistry: the mean hydropathy and the mean charge of the residues of the atoms within 6 and
  10 angstroms (each atom counts its residue), the fractions of N, O and S among the atoms within
  6 angstroms, and the hydropathy and charge of the nearest atom's residue;
- protrusion: |x - centroid| / radius of gyration of the protein's atoms.

All are functions of distances and of the normal's angle to atom directions: invariant to rigid
motions of the protein. Computed once per surface on the CPU with a KD-tree (no gradients).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

SHELLS = (5.0, 8.0, 11.0, 14.0)
NEAR, FAR = 6.0, 10.0
HEAVY_DENSITY = 0.05
HYDROGEN = 1  # column of H in gdl.data.pdb.ATOM_TYPES (C, H, O, N, S, SE)
DESCRIPTOR_CHANNELS = len(SHELLS) + 2 + 4 + 3 + 2 + 1


def _item_descriptors(x, n, atoms, types, properties) -> np.ndarray:
    heavy = types[:, HYDROGEN] < 0.5
    atoms, types, properties = atoms[heavy], types[heavy], properties[heavy]
    tree = cKDTree(atoms)
    pairs = cKDTree(x).sparse_distance_matrix(tree, max(SHELLS), output_type="coo_matrix")
    i, k, d = pairs.row, pairs.col, np.maximum(pairs.data, 1e-6)
    out = np.zeros((len(x), DESCRIPTOR_CHANNELS))

    def window_sum(values, radius):
        inside = d < radius
        return np.bincount(i[inside], weights=values[inside], minlength=len(x))

    ones = np.ones_like(d)
    column = 0
    for r in SHELLS:
        out[:, column] = window_sum(ones, r) / (HEAVY_DENSITY * 4 / 3 * np.pi * r**3)
        column += 1
    cosine = ((atoms[k] - x[i]) * n[i]).sum(1) / d
    counts = {r: np.maximum(window_sum(ones, r), 1) for r in (NEAR, FAR)}
    for r in (NEAR, FAR):
        out[:, column] = window_sum(cosine, r) / counts[r]
        column += 1
    for p in range(2):
        for r in (NEAR, FAR):
            out[:, column] = window_sum(properties[k, p], r) / counts[r]
            column += 1
    for element in (3, 2, 4):  # N, O, S
        out[:, column] = window_sum(types[k, element], NEAR) / counts[NEAR]
        column += 1
    _, nearest = tree.query(x)
    out[:, column : column + 2] = properties[nearest]
    column += 2
    centred = atoms - atoms.mean(0)
    gyration = np.sqrt((centred**2).sum(1).mean()) + 1e-6
    out[:, column] = np.linalg.norm(x - atoms.mean(0), axis=1) / gyration
    return out


def surface_descriptors(points, normals, batch, atoms, atom_types, residue_properties, atom_batch) -> torch.Tensor:
    """(N, DESCRIPTOR_CHANNELS) descriptors of the module docstring, in the dtype of ``points``.

    ``residue_properties`` (M, 2): hydropathy / 4.5 and charge of each atom's residue
    (:meth:`gdl.data.pdb.Atoms.residue_properties`); ``batch`` / ``atom_batch`` sorted item indices.
    """
    if residue_properties is None or residue_properties.shape != (atoms.shape[0], 2):
        shape = None if residue_properties is None else tuple(residue_properties.shape)
        raise ValueError(f"residue_properties must have shape ({atoms.shape[0]}, 2), got {shape}")
    as_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    x, n, a, t, p = map(as_np, (points, normals, atoms, atom_types, residue_properties))
    b, ab = batch.cpu().numpy(), atom_batch.cpu().numpy()
    out = np.zeros((len(x), DESCRIPTOR_CHANNELS))
    for item in np.unique(b):
        rows, cols = b == item, ab == item
        heavy = (t[cols, HYDROGEN] < 0.5).sum()
        if heavy == 0:
            raise ValueError(f"surface_descriptors: protein {item} has no heavy atom")
        out[rows] = _item_descriptors(x[rows], n[rows], a[cols], t[cols], p[cols])
    return torch.from_numpy(out).to(dtype=points.dtype, device=points.device)
