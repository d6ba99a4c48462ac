"""dMaSIF: protein surfaces sampled from atoms, geometric and chemical features, convolutions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from gdl.models.dmasif.descriptors import DESCRIPTOR_CHANNELS, surface_descriptors
from gdl.models.dmasif.features import ChemicalFeatures, CurvatureFeatures
from gdl.models.dmasif.heads import SearchHead, SiteHead
from gdl.models.dmasif.network import DMaSIFNetwork
from gdl.models.dmasif.surface import atoms_to_surface
from gdl.ops.core.checks import check_choice

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# Default cutoffs of the windowed sums (see the class docstring).
SURFACE_TRUNCATE = 8.0
CURVATURE_TRUNCATE = 5.0
CONV_TRUNCATE = 3.0


@dataclass
class Surface:
    """Surface points of a batch of proteins: (N, 3) points, unit outward normals, (N,) batch, and
    the (N, F) fixed input features (curvatures, descriptors) when they have been computed."""

    points: torch.Tensor
    normals: torch.Tensor
    batch: torch.Tensor
    features: torch.Tensor | None = None

    def rotated(self, rotations: torch.Tensor) -> Surface:
        """The surface with item b turned by ``rotations[b]`` (B, 3, 3); features are invariant."""
        r = rotations[self.batch].to(self.points.dtype)
        turn = lambda v: torch.einsum("nij,nj->ni", r, v)  # noqa: E731
        return replace(self, points=turn(self.points), normals=turn(self.normals))


class DMaSIF(nn.Module):
    """dMaSIF (Sverrisson et al., CVPR 2021) for interaction ``head`` ``"site"`` or ``"search"``.

    ``surface(atoms, atom_types, atom_batch, residue_properties)`` samples the surfaces and computes
    their fixed input features (no learnable part; what a cache stores); ``forward(surface, atoms,
    atom_types, atom_batch)`` returns a (N,) site logit, or the ``(binder, target)`` (N, embedding)
    pair for search. Fixed features: curvatures at ``curvature_scales`` and, with ``descriptors``,
    the hand-made atom-environment descriptors of :mod:`~gdl.models.dmasif.descriptors` (burial,
    shape, residue hydropathy and charge); learned chemistry from the ``k_atoms`` nearest atoms
    (``chemical_channels``, 0 to leave it out); then ``layers`` quasi-geodesic convolutions of
    ``channels`` channels and window ``radius`` (angstroms). ``backend`` reaches every operator.
    ``hydrogens``: whether the structures it reads keep their H atoms (False: every reader of a
    structure for this model drops them, so protonated and X-ray files give the same surface).

    Windowed sums are truncated by default (``None``: exact), at cutoffs shown not to move the
    results (``benchmarks/dmasif_truncation.py``, 2027 atoms at 1 A): the surface's smooth distance
    sees the atoms within ``surface_truncate`` = 8 A (level set within 0.004 A of the exact one,
    5.7x faster), the curvatures the points within ``curvature_truncate`` = 5 scales and the
    convolutions those within ``conv_truncate`` = 3 ``radius`` (site logits within 1e-6).
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
        descriptors: bool = True,
        resolution: float = 1.0,
        distance: float = 1.05,
        points_per_atom: int = 20,
        backend: str = "auto",
        surface_truncate: float | None = SURFACE_TRUNCATE,
        curvature_truncate: float | None = CURVATURE_TRUNCATE,
        conv_truncate: float | None = CONV_TRUNCATE,
        hydrogens: bool = True,
    ):
        super().__init__()
        self.config = dict(
            head=head, channels=channels, layers=layers, radius=radius, hidden_units=hidden_units,
            curvature_scales=[float(s) for s in curvature_scales], chemical_channels=chemical_channels,
            k_atoms=k_atoms, descriptors=bool(descriptors), resolution=resolution, distance=distance,
            points_per_atom=points_per_atom, backend=backend, surface_truncate=surface_truncate,
            curvature_truncate=curvature_truncate, conv_truncate=conv_truncate, hydrogens=bool(hydrogens),
        )  # fmt: skip
        self.head_kind = check_choice("head", head, ("site", "search"))
        self.resolution = float(resolution)
        self.distance = float(distance)
        self.points_per_atom = int(points_per_atom)
        self.descriptors = bool(descriptors)
        self.hydrogens = bool(hydrogens)
        self.backend = backend
        self.surface_truncate = surface_truncate
        self.curvatures = (
            CurvatureFeatures(curvature_scales, backend=backend, truncate=curvature_truncate)
            if len(curvature_scales)
            else None
        )
        self.chemistry = ChemicalFeatures(out_channels=chemical_channels, k=k_atoms, backend=backend) if chemical_channels else None
        curvature_channels = self.curvatures.out_channels if self.curvatures is not None else 0
        self.fixed_channels = curvature_channels + (DESCRIPTOR_CHANNELS if self.descriptors else 0)
        if self.fixed_channels == 0:
            raise ValueError("DMaSIF needs input features: give curvature_scales or descriptors=True")
        in_channels = self.fixed_channels + (chemical_channels if chemical_channels else 0)
        self.input_norm = nn.BatchNorm1d(self.fixed_channels)
        self.network = DMaSIFNetwork(
            in_channels, channels, layers, radius, hidden_units, backend=backend, truncate=conv_truncate
        )
        self.head = SiteHead(channels) if head == "site" else SearchHead(channels)

    def surface_settings(self) -> dict:
        """Every setting that changes ``surface``'s output (the key of a preprocessing cache)."""
        keys = ("resolution", "distance", "points_per_atom", "curvature_scales", "descriptors", "surface_truncate", "curvature_truncate")
        return {k: self.config[k] for k in keys}

    @torch.no_grad()
    def surface(self, atoms, atom_types, atom_batch=None, residue_properties=None, generator=None) -> Surface:
        """Sample the surfaces of the proteins and compute their fixed features.

        ``residue_properties`` (M, 2) (:meth:`gdl.data.pdb.Atoms.residue_properties`) is needed
        when the model uses ``descriptors``.
        """
        if atom_batch is None:
            atom_batch = torch.zeros(atoms.shape[0], dtype=torch.int64, device=atoms.device)
        points, normals, batch = atoms_to_surface(
            atoms,
            atom_types,
            atom_batch,
            resolution=self.resolution,
            distance=self.distance,
            points_per_atom=self.points_per_atom,
            generator=generator,
            backend=self.backend,
            truncate=self.surface_truncate,
        )
        surface = Surface(points, normals, batch)
        return replace(surface, features=self.fixed_features(surface, atoms, atom_types, atom_batch, residue_properties))

    @torch.no_grad()
    def fixed_features(self, surface: Surface, atoms, atom_types, atom_batch=None, residue_properties=None):
        """(N, fixed_channels) rotation-invariant input features: curvatures, then descriptors."""
        if atom_batch is None:
            atom_batch = torch.zeros(atoms.shape[0], dtype=torch.int64, device=atoms.device)
        parts = [surface.points.new_zeros(len(surface.points), 0)]
        if self.curvatures is not None:
            parts.append(self.curvatures(surface.points, surface.normals, surface.batch))
        if self.descriptors:
            parts.append(
                surface_descriptors(
                    surface.points, surface.normals, surface.batch, atoms, atom_types, residue_properties, atom_batch
                )
            )
        return torch.cat(parts, dim=1)

    def features(self, surface: Surface, atoms, atom_types, atom_batch=None) -> torch.Tensor:
        """(N, F) network input: normalised fixed features, then learned chemistry."""
        if surface.features is None or surface.features.shape[1] != self.fixed_channels:
            got = None if surface.features is None else tuple(surface.features.shape)
            raise ValueError(
                f"surface.features must have shape ({len(surface.points)}, {self.fixed_channels}) "
                f"(DMaSIF.surface or fixed_features computes them), got {got}"
            )
        if atom_batch is None:
            atom_batch = torch.zeros(atoms.shape[0], dtype=torch.int64, device=atoms.device)
        parts = [self.input_norm(surface.features.to(surface.points.dtype))]
        if self.chemistry is not None:
            parts.append(self.chemistry(surface.points, surface.batch, atoms, atom_types, atom_batch))
        return torch.cat(parts, dim=1)

    def forward(self, surface: Surface, atoms, atom_types, atom_batch=None):
        features = self.features(surface, atoms, atom_types, atom_batch)
        descriptors = self.network(surface.points, surface.normals, features, surface.batch)
        return self.head(descriptors)

    @classmethod
    def from_pretrained(cls, name: str = "site", **overrides) -> DMaSIF:
        """The shipped model ``"site"`` or ``"search"`` (model cards: docs/guides/proteins.md), or a
        file written by :meth:`save_pretrained`; ``overrides`` change settings that do not touch
        the weights (e.g. ``backend``)."""
        path = PRETRAINED_DIR / f"{name}.pt" if name in ("site", "search") else Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained dMaSIF {name!r}: no file {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**{**state["config"], **overrides})
        model.load_state_dict(state["state_dict"])
        return model.eval()

    def save_pretrained(self, path, **card) -> None:
        """Write the settings, weights and ``card`` (metadata: data, metrics) to ``path``."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save({"config": self.config, "state_dict": state, "card": card}, path)
