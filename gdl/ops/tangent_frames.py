"""Orthonormal tangent frames of unit normals."""

from __future__ import annotations

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.checks import check_points
from gdl.ops.normals import check_unit_normals
from gdl.ops.core.registry import register


def tangent_basis(normals: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) frames (u, v) of unit normals (N, 3); see :class:`TangentFrames`."""
    nx, ny, nz = normals.unbind(-1)
    s = torch.where(nz < 0, -torch.ones_like(nz), torch.ones_like(nz))
    a = -1 / (s + nz)
    b = nx * ny * a
    u = torch.stack([1 + s * nx * nx * a, s * b, -s * nx], -1)
    v = torch.stack([b, s + ny * ny * a, -ny], -1)
    return torch.stack([u, v], -2)


@register("tangent_frames")
class TangentFrames(Operator):
    r"""An orthonormal basis (u_i, v_i) of the plane orthogonal to each unit normal n_i.

    With s = sign(n_z) (+1 at 0), a = -1 / (s + n_z), b = n_x n_y a (Duff et al., 2017):

        u = (1 + s n_x^2 a,  s b,  -s n_x),    v = (b,  s + n_y^2 a,  -n_y),

    so that (u, v, n) is a right-handed orthonormal frame. |s + n_z| >= 1: no division blows up
    near any axis. The frame is smooth in n on each side of the equator n_z = 0 and flips there
    (some discontinuity is unavoidable: a sphere has no continuous tangent vector field).
    Returns (N, 2, 3). Differentiable in the normals. No weights and no window: one formula for
    both backends.
    """

    def forward(self, normals):
        check_points("normals", normals, dim=3)
        check_unit_normals("normals", normals, normals)
        return tangent_basis(normals)
