"""dMaSIF: protein surfaces sampled from atoms, geometric and chemical features, convolutions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gdl.models.dmasif.features import ChemicalFeatures, CurvatureFeatures
from gdl.models.dmasif.heads import SearchHead, SiteHead
from gdl.models.dmasif.network import DMaSIFNetwork
from gdl.models.dmasif.surface import atoms_to_surface
from gdl.ops.checks import check_choice


@dataclass
class Surface:
    """Surface points of a batch of proteins: (N, 3) points and unit outward normals, (N,) batch."""

    points: torch.Tensor
    normals: torch.Tensor
    batch: torch.Tensor


class DMaSIF(nn.Module):
    """dMaSIF (Sverrisson et al., CVPR 2021) for interaction ``head`` ``"site"`` or ``"search"``.

    ``surface(atoms, atom_types, atom_batch)`` samples the surfaces (no learnable part);
    ``forward(surface, atoms, atom_types, atom_batch)`` returns a (N,) site logit, or the
    ``(binder, target)`` (N, embedding) pair for search. Curvatures at ``curvature_scales``
    and chemistry from the ``k_atoms`` nearest atoms feed ``layers`` quasi-geodesic convolutions of
    ``channels`` channels and window ``radius`` (angstroms).
    """

    def __init__(
        self,
        head: str = "site",
        channels: int = 16,
        layers: int = 3,
        radius: float = 9.0,
        hidden_units: int = 16,
        curvature_scales=(1.0, 2.0, 3.0, 5.0, 10.0),
        chemical_channels: int = 6,
        k_atoms: int = 16,
        resolution: float = 1.0,
        distance: float = 1.05,
        points_per_atom: int = 20,
        backend: str = "auto",
    ):
        super().__init__()
        self.head_kind = check_choice("head", head, ("site", "search"))
        self.resolution = float(resolution)
        self.distance = float(distance)
        self.points_per_atom = int(points_per_atom)
        self.backend = backend
        self.curvatures = CurvatureFeatures(curvature_scales)
        self.chemistry = ChemicalFeatures(out_channels=chemical_channels, k=k_atoms)
        in_channels = self.curvatures.out_channels + self.chemistry.out_channels
        self.network = DMaSIFNetwork(in_channels, channels, layers, radius, hidden_units)
        self.head = SiteHead(channels) if head == "site" else SearchHead(channels)

    @torch.no_grad()
    def surface(self, atoms, atom_types, atom_batch=None, generator=None) -> Surface:
        points, normals, batch = atoms_to_surface(
            atoms,
            atom_types,
            atom_batch,
            resolution=self.resolution,
            distance=self.distance,
            points_per_atom=self.points_per_atom,
            generator=generator,
            backend=self.backend,
        )
        return Surface(points, normals, batch)

    def features(self, surface: Surface, atoms, atom_types, atom_batch) -> torch.Tensor:
        """(N, F) input features: curvatures then chemistry."""
        if atom_batch is None:
            atom_batch = torch.zeros(atoms.shape[0], dtype=torch.int64, device=atoms.device)
        geometry = self.curvatures(surface.points, surface.normals, surface.batch)
        chemistry = self.chemistry(surface.points, surface.batch, atoms, atom_types, atom_batch)
        return torch.cat([geometry, chemistry], dim=1)

    def forward(self, surface: Surface, atoms, atom_types, atom_batch=None):
        features = self.features(surface, atoms, atom_types, atom_batch)
        descriptors = self.network(surface.points, surface.normals, features, surface.batch)
        return self.head(descriptors)
