"""Input features of dMaSIF surface points: multiscale curvatures and chemistry from the atoms.

Geometry: the registry's ``curvatures`` gives, at each scale, the mean and Gaussian curvatures
(H, K) of the surface around each point; scaled to dimensionless values (H r, K r^2) they are
rotation invariant and comparable across scales.

Chemistry: atoms start from their one-hot type t_k. One round of message passing among atoms,
h_k = t_k + sum_{l in kNN(k)} MLP([t_l, |a_k - a_l|]), then each surface point gathers its nearest
atoms, c_i = sum_{k in kNN(i)} MLP([h_k, |x_i - a_k|]).
"""

from __future__ import annotations

import torch
from torch import nn

import gdl.ops


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, outputs))


class CurvatureFeatures(nn.Module):
    """(N, 2 S) dimensionless curvatures [H r, K r^2] at each scale r of ``scales``; ``truncate``
    (None: exact) is the window cutoff as a multiple of each scale."""

    def __init__(
        self, scales=(1.0, 2.0, 3.0, 5.0, 10.0), reg: float = 0.01, backend: str = "auto", truncate: float | None = None
    ):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.curvatures = gdl.ops.get(
            "curvatures", scales=list(self.scales), reg=reg, backend=backend, truncate=truncate
        )
        self.register_buffer("scale_powers", torch.tensor([[s, s * s] for s in self.scales]), persistent=False)

    @property
    def out_channels(self) -> int:
        return 2 * len(self.scales)

    def forward(self, points, normals, batch):
        hk = self.curvatures(points, normals, batch)
        return (hk * self.scale_powers.to(hk.dtype)).flatten(1)


class ChemicalFeatures(nn.Module):
    """(N, out_channels) chemistry of each surface point from its ``k`` nearest atoms."""

    def __init__(self, atom_types: int = 6, out_channels: int = 6, k: int = 16, hidden: int = 16, backend: str = "auto"):
        super().__init__()
        self.k = k
        self.out_channels = out_channels
        self.atom_messages = _mlp(atom_types + 1, hidden, atom_types)
        self.point_messages = _mlp(atom_types + 1, hidden, out_channels)
        self.knn_atoms = gdl.ops.get("knn", k=k, exclude_self=True, backend=backend)
        self.knn_points = gdl.ops.get("knn", k=k, backend=backend)

    def forward(self, points, batch, atoms, atom_types, atom_batch):
        k_atoms = self.knn_atoms.k
        fewest = int(torch.bincount(atom_batch).min()) if atoms.shape[0] else 0
        if fewest <= k_atoms:
            raise ValueError(f"ChemicalFeatures needs more than k={k_atoms} atoms per protein, got {fewest}")
        types = atom_types.to(points.dtype)
        dist, idx = self.knn_atoms(atoms, batch_x=atom_batch)
        h = types + self.atom_messages(torch.cat([types[idx], dist[..., None]], -1)).sum(1)
        dist, idx = self.knn_points(points, atoms, batch, atom_batch)
        return self.point_messages(torch.cat([h[idx], dist[..., None]], -1)).sum(1)
