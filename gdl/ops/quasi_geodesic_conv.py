"""The quasi-geodesic convolution of dMaSIF: a filter MLP of local coordinates in a surface window."""

from __future__ import annotations

import torch

from gdl.ops.backend import import_pykeops
from gdl.ops.base import TORCH_BLOCK_ELEMENTS, Operator, row_chunks
from gdl.ops.batching import batch_pair
from gdl.ops.checks import check_positive
from gdl.ops.locality import check_truncate
from gdl.ops.orientation_field import (
    OrientationField,
    check_surface,
    lazy_quasi_geodesic_window,
    paired_quasi_geodesic_window,
    quasi_geodesic_pairs,
    quasi_geodesic_window,
)
from gdl.ops.registry import register


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
    the orientation field (:mod:`gdl.ops.locality`: block-sparse KeOps ranges, a pair list for
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
        local = quasi_geodesic_pairs(x, batch, pair, self.radius, self.truncate)
        keops = self.backend_for(x.device) == "keops"
        if local is not None and keops:
            p = local.perm_x
            aggregated = self._keops(x[p], normals[p], basis[p], g[p], local.keops_ranges())[local.inverse_x]
        elif local is not None:
            aggregated = self._sparse(x, normals, basis, g, local)
        elif keops:
            ranges = pair.keops_ranges(x.device) if pair.num_items > 1 else None
            aggregated = self._keops(x, normals, basis, g, ranges)
        else:
            aggregated = self._dense(x, normals, basis, g, pair)
        return self.output(aggregated)

    def _keops(self, x, normals, basis, g, ranges):
        LazyTensor = import_pykeops().LazyTensor
        d, w = lazy_quasi_geodesic_window(x, normals, self.radius)
        basis_i = LazyTensor(basis.reshape(-1, 9)[:, None, :].contiguous())
        local = basis_i.matvecmult(d) * LazyTensor(x.new_tensor([1 / self.radius]))
        w1 = LazyTensor(self.filter_in.weight.reshape(-1))
        c1 = LazyTensor(self.filter_in.bias.view(-1))
        w2 = LazyTensor(self.filter_out.weight.reshape(-1))
        c2 = LazyTensor(self.filter_out.bias.view(-1))
        h = w2.matvecmult((w1.matvecmult(local) + c1).relu()) + c2
        terms = w * h * LazyTensor(g[None, :, :].contiguous())
        if ranges is not None:
            terms.ranges = ranges
        return terms.sum(dim=1)

    def _sparse(self, x, normals, basis, g, local):
        aggregated = g.new_zeros(x.shape[0], self.hidden_units)
        for i, j in local.pairs(x, x, TORCH_BLOCK_ELEMENTS // self.hidden_units):
            d, w = paired_quasi_geodesic_window(x, normals, i, j, self.radius)
            local_coords = (basis[i] @ d[:, :, None])[:, :, 0] / self.radius
            h = self.filter_out(torch.relu(self.filter_in(local_coords)))
            aggregated = aggregated.index_add(0, i, (w[:, None] * h) * g[j])
        return aggregated

    def _dense(self, x, normals, basis, g, pair):
        blocks = []
        for _, sx, _ in pair.item_slices():
            xs, ns, bs, gs = x[sx], normals[sx], basis[sx], g[sx]
            block_elements = TORCH_BLOCK_ELEMENTS // self.hidden_units
            for rows in row_chunks(xs.shape[0], xs.shape[0], block_elements):
                d, w = quasi_geodesic_window(xs[rows], ns[rows], xs, ns, self.radius)
                local = torch.einsum("iab,ijb->ija", bs[rows], d) / self.radius
                h = self.filter_out(torch.relu(self.filter_in(local)))
                blocks.append(((w[..., None] * h) * gs[None, :, :]).sum(1))
        return torch.cat(blocks, 0)
