"""Voxel-grid subsampling."""

from __future__ import annotations

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.checks import check_batch, check_points, check_positive, check_values
from gdl.ops.core.registry import register
from gdl.ops.core.voxels import pool_weighted


@register("grid_subsample")
class GridSubsample(Operator):
    r"""One point per occupied voxel: the mean of the points (and features) of each voxel.

    Voxels are the cells prod_d [k_d v, (k_d + 1) v) of a grid of side v = ``voxel_size`` anchored at
    the origin, separately for each batch item (items are never mixed; :mod:`gdl.ops.core.voxels`). Returns
    ``(x_sub, batch_sub, features_sub)`` sorted by item, then by voxel index;
    ``batch_sub`` (``features_sub``) is None when ``batch`` (``features``) is None. The means are
    differentiable in x and features.

    Grouping points by voxel is a sort, not a kernel reduction: both backends run the same torch
    code; ``backend`` is accepted for uniformity.
    """

    def __init__(self, voxel_size: float, backend: str = "auto"):
        super().__init__(backend)
        self.voxel_size = float(check_positive("voxel_size", voxel_size))

    def extra_repr(self) -> str:
        return f"voxel_size={self.voxel_size}, " + super().extra_repr()

    def forward(self, x, batch=None, features=None):
        check_points("x", x)
        check_batch("batch", batch, x.shape[0], x.device)
        feats = None if features is None else check_values("features", features, x.shape[0], x)
        values = x[:, :0] if feats is None else feats
        x_sub, features_sub, _, batch_sub = pool_weighted(x, values, torch.ones_like(x[:, 0]), self.voxel_size, batch)
        if feats is None:
            features_sub = None
        elif features.dim() == 1:
            features_sub = features_sub[:, 0]
        return x_sub, batch_sub, features_sub
