"""The dMaSIF convolutional network on surface points.

Tangent frames (u_i, v_i) of the normals are turned by the trainable orientation field to a
canonical direction; then ``layers`` quasi-geodesic convolutions, each with a residual linear path:

    f^{l+1} = LeakyReLU(QGConv_l(x, n, frames, f^l)) + W_l f^l.
"""

from __future__ import annotations

import torch
from torch import nn

import gdl.ops


class DMaSIFNetwork(nn.Module):
    """Maps (N, in_channels) point features to (N, channels) descriptors, rotation invariant."""

    def __init__(self, in_channels: int, channels: int = 16, layers: int = 3, radius: float = 9.0, hidden_units: int = 16):
        super().__init__()
        self.lift = nn.Linear(in_channels, channels)
        self.frames = gdl.ops.get("tangent_frames")
        self.orientation = _orientation_field(channels, radius)
        self.convs = nn.ModuleList(
            gdl.ops.get(
                "quasi_geodesic_conv",
                in_channels=channels,
                out_channels=channels,
                radius=radius,
                hidden_units=hidden_units,
            )
            for _ in range(layers)
        )
        self.residuals = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, points, normals, features, batch):
        f = self.lift(features)
        frames = self.frames(normals)
        if self.orientation is not None:
            frames = self.orientation(points, normals, frames, f, batch)
        for conv, residual in zip(self.convs, self.residuals):
            f = self.activation(conv(points, normals, frames, f, batch)) + residual(f)
        return f


def _orientation_field(channels: int, radius: float):
    """The registry's trainable orientation field when it is registered, else None."""
    if "orientation_field" not in gdl.ops.available():
        return None
    return gdl.ops.get("orientation_field", in_channels=channels, radius=radius)
