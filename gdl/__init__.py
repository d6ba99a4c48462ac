"""gdl: geometric deep learning on point clouds and surfaces with KeOps and GeomLoss."""

__version__ = "0.1.0"
