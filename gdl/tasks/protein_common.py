"""Shared steps of the protein tasks: augmentation, surfaces of both sides, interface labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gdl.data.proteins import interface_labels
from gdl.models.dmasif import DMaSIF, Surface


def random_rotations(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """(n, 3, 3) rotations drawn uniformly (Haar measure) by QR of Gaussian matrices."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[torch.det(q) < 0, :, 0] *= -1
    return q.to(dtype=dtype, device=device)


@dataclass
class ComplexSurfaces:
    """Atoms, surfaces and interface labels of both sides of a batch of complexes."""

    atoms: tuple[torch.Tensor, torch.Tensor]
    types: tuple[torch.Tensor, torch.Tensor]
    atom_batch: tuple[torch.Tensor, torch.Tensor]
    surfaces: tuple[Surface, Surface]
    labels: tuple[torch.Tensor, torch.Tensor]


def complex_surfaces(model: DMaSIF, batch, threshold: float, rotate: bool) -> ComplexSurfaces:
    """Sample both sides' surfaces (after one random rotation per complex when ``rotate``) and label
    the points within ``threshold`` angstroms of the partner's surface as interface."""
    atoms = [batch.atoms_1, batch.atoms_2]
    atom_batch = (batch.atoms_1_batch, batch.atoms_2_batch)
    if rotate:
        rotations = random_rotations(batch.num_graphs, atoms[0].dtype, atoms[0].device)
        atoms = [torch.einsum("nij,nj->ni", rotations[b], a) for a, b in zip(atoms, atom_batch)]
    types = (batch.types_1, batch.types_2)
    surfaces = tuple(model.surface(a, t, b) for a, t, b in zip(atoms, types, atom_batch))
    labels = interface_labels(surfaces[0].points, surfaces[0].batch, surfaces[1].points, surfaces[1].batch, threshold)
    return ComplexSurfaces(tuple(atoms), types, atom_batch, surfaces, labels)


def log_surface(task, key: str, surface: Surface, values: torch.Tensor) -> None:
    """Log the first protein's surface coloured by ``values`` through the training media helper."""
    try:
        from gdl.tasks.media import log_point_cloud
    except ImportError:  # the media helper ships with the training stack
        return
    first = surface.batch == 0
    log_point_cloud(task, key, surface.points[first].detach().cpu(), values[first].detach().cpu())


def side_outputs(model: DMaSIF, sides: ComplexSurfaces) -> list[torch.Tensor]:
    """The model's output on each side's surface: site logits or search embeddings."""
    return [
        model(surface, atoms, types, atom_batch)
        for surface, atoms, types, atom_batch in zip(sides.surfaces, sides.atoms, sides.types, sides.atom_batch)
    ]
