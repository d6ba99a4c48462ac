"""The machinery under the operators of :mod:`gdl.ops`: the registry and the base class, backend
choice and the KeOps probe and build lock, input checks, ragged batches, radial kernels, the
windowed-reduction engine with its locality (voxel grids, block-sparse ranges, KD-trees) and the
optimal transport solver."""
