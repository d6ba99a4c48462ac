"""The dMaSIF convolutional network on surface points.

Tangent frames (u_i, v_i) of the normals feed ``layers`` quasi-geodesic convolutions; each one turns
the frames to a canonical direction with its trainable orientation field (so the output does not
depend on the input frames' rotation about the normal) and has a residual linear path; a per-point
layer normalisation keeps the window sums (hundreds of points at radius 9) at a unit scale:

    f^{l+1} = LayerNorm_l(LeakyReLU(QGConv_l(x, n, frames, f^l)) + W_l f^l).
"""

from __future__ import annotations

from torch import nn

import gdl.ops


class DMaSIFNetwork(nn.Module):
    """Maps (N, in_channels) point features to (N, channels) descriptors, rotation invariant.

    ``truncate`` (None: exact) is each convolution's cutoff as a multiple of ``radius``."""

    def __init__(
        self,
        in_channels: int,
        channels: int = 16,
        layers: int = 3,
        radius: float = 9.0,
        hidden_units: int = 16,
        backend: str = "auto",
        truncate: float | None = None,
    ):
        super().__init__()
        self.lift = nn.Linear(in_channels, channels)
        self.frames = gdl.ops.get("tangent_frames", backend=backend)
        self.convs = nn.ModuleList(
            gdl.ops.get(
                "quasi_geodesic_conv",
                in_channels=channels,
                out_channels=channels,
                radius=radius,
                hidden_units=hidden_units,
                backend=backend,
                truncate=truncate,
            )
            for _ in range(layers)
        )
        self.residuals = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, points, normals, features, batch):
        f = self.lift(features)
        frames = self.frames(normals)
        for conv, residual, norm in zip(self.convs, self.residuals, self.norms):
            f = norm(self.activation(conv(points, normals, frames, f, batch)) + residual(f))
        return f
