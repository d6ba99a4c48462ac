"""The quasi-geodesic convolution of dMaSIF: a filter MLP of local coordinates in a surface window."""

from __future__ import annotations

from functools import partial

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair
from gdl.ops.core.checks import check_positive
from gdl.ops.core.locality import check_truncate
from gdl.ops.orientation_field import OrientationField, check_surface, quasi_geodesic_window
from gdl.ops.core.registry import register
from gdl.ops.core.window import matvec, window


@register("quasi_geodesic_conv")
class QuasiGeodesicConv(Operator):
    r"""Trainable convolution on a sampled surface (Sverrisson et al., CVPR 2021).

    The frames (u_i, v_i) are first rotated by the submodule ``orientation``, an
    :class:`~gdl.ops.orientation_field.OrientationField` (a learned canonical direction: the output
    does not depend on the input frames' rotation in the tangent plane). With F_i = [u'_i; v'_i; n_i],

        X_ij = F_i (x_j - x_i) / radius                                  local coordinates,
        w_ij = exp(-|x_j - x_i|^2 (2 - <n_i, n_j>)^2 / radius^2)          quasi-geodesic window,
        h_ij = W_2 relu(W_1 X_ij + c_1) + c_2                             filter MLP, 3 -> H -> H,
        g_j  = leaky_relu(W_in features_j + c_in)                         input transform, C_in -> H,
        out_i = W_out (sum_j w_ij h_ij * g_j) + c_out                      H -> C_out,

    over the points j of the batch item of i; H = ``hidden_units``. The factor (2 - <n_i, n_j>)^2
    (1 for parallel normals, up to 9 for opposite ones) keeps the two sides of a thin gap apart.
    The KeOps backend evaluates the filter MLP inside the reduction (linear memory).

    ``truncate`` = t (None: every pair) drops the pairs farther apart than t * radius, here and in
    the orientation field (:mod:`gdl.ops.core.locality`: block-sparse KeOps ranges, a pair list for
    the torch backend). As (2 - <n_i, n_j>)^2 >= 1, every dropped window weight is below
    exp(-t^2) (t = 3: 1.2e-4, t = 2.5: 1.9e-3); the filter values h_ij are bounded by the MLP
    on |X_ij| <= t. Where an item fits within the cutoff, the plain exact sum runs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        radius: float,
        hidden_units: int = 16,
        backend: str = "auto",
        truncate: float | None = None,
    ):
        super().__init__(backend)
        self.in_channels = check_positive("in_channels", in_channels, integer=True)
        self.out_channels = check_positive("out_channels", out_channels, integer=True)
        self.radius = float(check_positive("radius", radius))
        self.hidden_units = check_positive("hidden_units", hidden_units, integer=True)
        self.truncate = check_truncate(truncate)
        self.orientation = OrientationField(in_channels, radius, hidden_units, backend=backend, truncate=truncate)
        self.filter_in = torch.nn.Linear(3, hidden_units)
        self.filter_out = torch.nn.Linear(hidden_units, hidden_units)
        self.input_transform = torch.nn.Linear(in_channels, hidden_units)
        self.output = torch.nn.Linear(hidden_units, out_channels)

    def reset_parameters(self):
        self.orientation.reset_parameters()
        for layer in (self.filter_in, self.filter_out, self.input_transform, self.output):
            layer.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, radius={self.radius}, "
            f"hidden_units={self.hidden_units}, truncate={self.truncate}, " + super().extra_repr()
        )

    def forward(self, x, normals, frames, features, batch=None):
        features = check_surface(x, normals, frames, features, self.in_channels, batch)
        pair = batch_pair(batch, batch, x.shape[0], x.shape[0], "batch", "batch")
        frames = self.orientation(x, normals, frames, features, batch)
        basis = torch.cat([frames, normals[:, None, :]], 1)  # (N, 3, 3), rows u', v', n
        g = torch.nn.functional.leaky_relu(self.input_transform(features), 0.2)
        win = window(x, x, pair, batch, batch, self.backend_for(x.device), self.truncate, self.radius)
        filters = (self.filter_in.weight, self.filter_in.bias, self.filter_out.weight, self.filter_out.bias)
        aggregated = win.sum(
            partial(_filtered_terms, radius=self.radius),
            i=[x, normals, basis.reshape(-1, 9)],
            j=[x, normals, g],
            params=filters,
            width=self.hidden_units,
        )
        return self.output(aggregated)


def _filtered_terms(x_i, n_i, basis_i, x_j, n_j, g_j, w1, c1, w2, c2, radius: float):
    """w_ij h_ij * g_j, with h_ij = W_2 relu(W_1 X_ij + c_1) + c_2 and X_ij = F_i (x_j - x_i) / radius."""
    d, w = quasi_geodesic_window(x_i, n_i, x_j, n_j, radius)
    local = matvec(basis_i, d) / radius
    h = matvec(w2, (matvec(w1, local) + c1).relu()) + c2
    return w * h * g_j
