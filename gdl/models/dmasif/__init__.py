"""dMaSIF: learning on protein surfaces sampled from atoms (Sverrisson et al., CVPR 2021)."""

from gdl.models.dmasif.model import DMaSIF, Surface
from gdl.models.dmasif.surface import atom_radii, atoms_to_surface, smooth_distance, van_der_waals_gap

__all__ = ["DMaSIF", "Surface", "atoms_to_surface", "atom_radii", "smooth_distance", "van_der_waals_gap"]
