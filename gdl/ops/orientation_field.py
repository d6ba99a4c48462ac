"""A trainable orientation field: rotates each tangent frame to a learned canonical direction."""

from __future__ import annotations

from functools import partial

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.batching import batch_pair
from gdl.ops.core.checks import check_batch, check_points, check_positive, check_values
from gdl.ops.core.locality import check_truncate
from gdl.ops.normals import UNIT_TOLERANCE, check_unit_normals
from gdl.ops.core.registry import register
from gdl.ops.core.window import dot, sqnorm, window


def check_frames(name: str, frames, normals: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) finite orthonormal tangent frames, orthogonal to the matching unit normals."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(frames).__name__}")
    if tuple(frames.shape) != (normals.shape[0], 2, 3):
        raise ValueError(f"{name} must have shape ({normals.shape[0]}, 2, 3), got {tuple(frames.shape)}")
    check_values(name, frames.reshape(frames.shape[0], 6), normals.shape[0], normals)
    basis = torch.cat([frames.detach(), normals.detach()[:, None, :]], 1)
    eye = torch.eye(3, dtype=basis.dtype, device=basis.device)
    error = (basis @ basis.transpose(1, 2) - eye).abs().amax(dim=(1, 2))
    if bool((error > UNIT_TOLERANCE).any()):
        raise ValueError(
            f"{name} must hold orthonormal tangent vectors (u, v) orthogonal to the normals: "
            f"{int((error > UNIT_TOLERANCE).sum())} rows are off by more than {UNIT_TOLERANCE} "
            f"(row {int(error.argmax())} by {float(error.max()):.3g})"
        )
    return frames


def check_surface(x, normals, frames, features, in_channels: int, batch):
    """The inputs of the orientation field and of the quasi-geodesic convolution."""
    check_points("x", x, dim=3)
    check_unit_normals("normals", normals, x)
    check_frames("frames", frames, normals)
    features = check_values("features", features, x.shape[0], x)
    if features.shape[1] != in_channels:
        raise ValueError(f"features must have {in_channels} channels (in_channels), got {features.shape[1]}")
    check_batch("batch", batch, x.shape[0], x.device)
    return features


def quasi_geodesic_window(x_i, n_i, x_j, n_j, radius: float):
    """d_ij = x_j - x_i and w_ij = exp(-|d_ij|^2 (2 - <n_i, n_j>)^2 / radius^2), a windowed term
    (:mod:`gdl.ops.core.window`). As (2 - <n_i, n_j>)^2 >= 1, w_ij <= exp(-|d_ij|^2 / radius^2): a
    window truncated at t * radius drops weights below exp(-t^2) of the peak 1 (t = 3: 1.2e-4;
    2.5: 1.9e-3; 2: 1.8e-2)."""
    d = x_j - x_i
    return d, (-sqnorm(d) * (2 - dot(n_i, n_j)) ** 2 / radius**2).exp()


def _direction_terms(x_i, n_i, x_j, n_j, s_j, radius: float):
    d, w = quasi_geodesic_window(x_i, n_i, x_j, n_j, radius)
    return w * s_j * d


@register("orientation_field")
class OrientationField(Operator):
    r"""Tangent frames (u'_i, v'_i) rotated towards a learned direction, shape (N, 2, 3).

    A per-point score s_j = MLP(features_j) (Linear, LeakyReLU, Linear to 1) is aggregated in the
    quasi-geodesic window of the dMaSIF paper (Sverrisson et al., 2021):

        o_i = sum_j w_ij s_j (x_j - x_i),   w_ij = exp(-|x_j - x_i|^2 (2 - <n_i, n_j>)^2 / radius^2),

    (a_i, b_i) = (<o_i, u_i>, <o_i, v_i>) / |.|, and u'_i = a_i u_i + b_i v_i, v'_i = -b_i u_i + a_i v_i.
    u'_i is the direction of o_i projected on the tangent plane, whatever the input frame; where
    that projection vanishes the input frame is kept. Differentiable in every input and weight.

    ``truncate`` = t (None: every pair) drops the pairs farther apart than t * radius
    (:mod:`gdl.ops.core.locality`); every dropped weight is below exp(-t^2) (t = 3: 1.2e-4). Where the
    item fits within the cutoff, the plain exact sum runs.
    """

    def __init__(
        self,
        in_channels: int,
        radius: float,
        hidden_units: int = 16,
        backend: str = "auto",
        truncate: float | None = None,
    ):
        super().__init__(backend)
        self.in_channels = check_positive("in_channels", in_channels, integer=True)
        self.radius = float(check_positive("radius", radius))
        self.truncate = check_truncate(truncate)
        self.hidden_units = check_positive("hidden_units", hidden_units, integer=True)
        self.score = torch.nn.Sequential(
            torch.nn.Linear(in_channels, hidden_units),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden_units, 1),
        )

    def reset_parameters(self):
        for layer in self.score:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, radius={self.radius}, truncate={self.truncate}, "
            + super().extra_repr()
        )

    def forward(self, x, normals, frames, features, batch=None):
        features = check_surface(x, normals, frames, features, self.in_channels, batch)
        pair = batch_pair(batch, batch, x.shape[0], x.shape[0], "batch", "batch")
        scores = self.score(features)  # (N, 1)
        win = window(x, x, pair, batch, batch, self.backend_for(x.device), self.truncate, self.radius)
        direction = win.sum(
            partial(_direction_terms, radius=self.radius), i=[x, normals], j=[x, normals, scores], width=3
        )
        return rotate_frames(frames, direction)


def rotate_frames(frames: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Rotate each frame (u, v) in its plane so that u points along ``direction`` projected on it."""
    coords = (frames @ direction[:, :, None])[:, :, 0]  # (N, 2)
    length2 = (coords**2).sum(1, keepdim=True)
    tiny = torch.finfo(coords.dtype).tiny ** 0.5
    degenerate = length2 <= tiny
    safe = torch.where(degenerate, torch.ones_like(length2), length2)
    cos_sin = torch.where(degenerate, coords.new_tensor([1.0, 0.0]), coords / safe.sqrt())
    a, b = cos_sin[:, :1], cos_sin[:, 1:]
    u, v = frames[:, 0], frames[:, 1]
    return torch.stack([a * u + b * v, -b * u + a * v], 1)
