"""A trainable orientation field: rotates each tangent frame to a learned canonical direction."""

from __future__ import annotations

import torch

from gdl.ops.backend import import_pykeops
from gdl.ops.base import Operator, row_chunks
from gdl.ops.batching import batch_pair
from gdl.ops.checks import check_batch, check_points, check_positive, check_values
from gdl.ops.locality import LocalPairs, check_truncate, local_pairs
from gdl.ops.normals import UNIT_TOLERANCE, check_unit_normals
from gdl.ops.registry import register


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


def lazy_quasi_geodesic_window(x: torch.Tensor, normals: torch.Tensor, radius: float):
    """(d_ij, w_ij) as KeOps LazyTensors, see :func:`quasi_geodesic_window`."""
    LazyTensor = import_pykeops().LazyTensor
    d = LazyTensor(x[None, :, :]) - LazyTensor(x[:, None, :])
    cosine = (LazyTensor(normals[:, None, :]) * LazyTensor(normals[None, :, :])).sum(-1)
    inverse_r2 = LazyTensor(x.new_tensor([1 / radius**2]))
    w = (-(d**2).sum(-1) * (2 - cosine) ** 2 * inverse_r2).exp()
    return d, w


def quasi_geodesic_window(x_rows, n_rows, x_cols, n_cols, radius: float):
    """d_ij = x_j - x_i (rows, cols, 3) and w_ij = exp(-|d_ij|^2 (2 - <n_i, n_j>)^2 / radius^2)."""
    d = x_cols[None, :, :] - x_rows[:, None, :]
    cosine = n_rows @ n_cols.T
    w = torch.exp(-(d**2).sum(-1) * (2 - cosine) ** 2 / radius**2)
    return d, w


def paired_quasi_geodesic_window(x, normals, i, j, radius: float):
    """d_ij and w_ij of :func:`quasi_geodesic_window` for a list of pairs (i, j): (P, 3) and (P,)."""
    d = x[j] - x[i]
    cosine = (normals[i] * normals[j]).sum(-1)
    return d, torch.exp(-(d**2).sum(-1) * (2 - cosine) ** 2 / radius**2)


def quasi_geodesic_pairs(x, batch, pair, radius: float, truncate: float | None) -> LocalPairs | None:
    """The pairs of a quasi-geodesic window truncated at ``truncate * radius`` (None: every pair).

    (2 - <n_i, n_j>)^2 >= 1, so w_ij <= exp(-|x_j - x_i|^2 / radius^2): every dropped weight is
    below exp(-truncate^2) of the peak 1 (truncate = 3: 1.2e-4; 2.5: 1.9e-3; 2: 1.8e-2).
    """
    if truncate is None:
        return None
    return local_pairs(x, x, pair, batch, batch, truncate * radius)


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
    (:mod:`gdl.ops.locality`); every dropped weight is below exp(-t^2) (t = 3: 1.2e-4). Where the
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
        local = quasi_geodesic_pairs(x, batch, pair, self.radius, self.truncate)
        keops = self.backend_for(x.device) == "keops"
        if local is not None and keops:
            p = local.perm_x
            direction = self._keops(x[p], normals[p], scores[p], local.keops_ranges())[local.inverse_x]
        elif local is not None:
            direction = self._sparse(x, normals, scores, local)
        elif keops:
            direction = self._keops(x, normals, scores, pair.keops_ranges(x.device) if pair.num_items > 1 else None)
        else:
            direction = self._dense(x, normals, scores, pair)
        return rotate_frames(frames, direction)

    def _keops(self, x, normals, scores, ranges):
        d, w = lazy_quasi_geodesic_window(x, normals, self.radius)
        terms = w * _lazy_j(scores) * d
        if ranges is not None:
            terms.ranges = ranges
        return terms.sum(dim=1)

    def _sparse(self, x, normals, scores, local):
        direction = x.new_zeros(x.shape[0], 3)
        for i, j in local.pairs(x, x):
            d, w = paired_quasi_geodesic_window(x, normals, i, j, self.radius)
            direction = direction.index_add(0, i, (w[:, None] * scores[j]) * d)
        return direction

    def _dense(self, x, normals, scores, pair):
        blocks = []
        for _, sx, _ in pair.item_slices():
            xs, ns, ss = x[sx], normals[sx], scores[sx]
            for rows in row_chunks(xs.shape[0], 3 * xs.shape[0]):
                d, w = quasi_geodesic_window(xs[rows], ns[rows], xs, ns, self.radius)
                blocks.append(((w[..., None] * ss[None, :, :]) * d).sum(1))
        return torch.cat(blocks, 0)


def _lazy_j(values: torch.Tensor):
    """A (1, M, E) KeOps j-variable."""
    return import_pykeops().LazyTensor(values[None, :, :].contiguous())


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
