"""Deep scene flow: a coarse-to-fine PointPWC-style pyramid.

Levels: level 0 is the input source (or target); level l+1 keeps a fraction ``ratio`` of level l by
farthest point sampling (registry ``fps``). Features: f^{l+1} = ReLU(point_conv(f^l)) from level l to
level l+1 (registry ``point_conv``, k nearest neighbours). From the coarsest level down, with the
source level points x, warped by the upsampled coarser flow u0 to z = x + u0:

    cost volume   c_i = max_{j in kNN_y(z_i)} MLP([f_i, g_j, y_j - z_i])         (registry ``knn``)
    flow          u_i = u0_i + W ReLU(point_conv_x([f, c, u0]))_i

Upsampling interpolates the flow to the next finer level by inverse-distance weights over its 3
nearest coarse points. With ``control_sigma``, the finest predicted level serves as spline control
points and the output is their Gaussian Nadaraya-Watson average (registry ``nadaraya_watson``).
Coordinates are divided by ``scale`` inside the network (a length of the order of the point spacing).
The same interpolation (or spline average) from the finest predicted level carries the flow to any
other points (``fit(...).at(points)``); :class:`FlowStep` runs a trained model on at most
``num_points`` points of each cloud (drawn from ``subset_seed``) and interpolates its flow to all
the others.
"""

from __future__ import annotations

import torch

import gdl.ops
from gdl.models.registration.matching import check_seed, subset_pair
from gdl.models.registration.step import RegistrationStep
from gdl.ops.core.checks import check_positive


def mlp(*sizes: int) -> torch.nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


class Pyramid:
    """Point levels of one cloud: ``points[l]``, ``batch[l]`` and ``index[l]`` into the input."""

    def __init__(self, x, batch, samplers):
        self.points, self.batch, self.index = [x], [batch], [torch.arange(x.shape[0], device=x.device)]
        for sampler in samplers:
            idx = sampler(self.points[-1], self.batch[-1])
            self.points.append(self.points[-1][idx])
            self.batch.append(None if batch is None else self.batch[-1][idx])
            self.index.append(self.index[-1][idx])


class FlowPyramid(torch.nn.Module):
    """``flow = model(source, target, batch_source, batch_target)``: (N, 3) displacements of the source."""

    def __init__(
        self,
        channels=(32, 64, 96),
        ratio: float = 0.25,
        first_ratio: float = 0.5,
        k: int = 16,
        hidden_units: int = 8,
        scale: float = 1.0,
        control_sigma: float | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        # the constructor arguments: checkpoints record them to rebuild the same network
        self.config = dict(
            channels=[int(c) for c in channels], ratio=float(ratio), first_ratio=float(first_ratio), k=int(k),
            hidden_units=int(hidden_units), scale=float(scale), control_sigma=control_sigma, backend=backend,
        )
        self.scale = float(check_positive("scale", scale))
        self.k = check_positive("k", k, integer=True)
        self.num_levels = len(channels)
        ratios = [first_ratio] + [ratio] * (self.num_levels - 1)
        self.samplers = [gdl.ops.get("fps", ratio=r, backend=backend) for r in ratios]
        sizes = (1,) + tuple(channels)
        self.encoders = torch.nn.ModuleList(
            gdl.ops.get("point_conv", in_channels=a, out_channels=b, k=k, hidden_units=hidden_units, backend=backend)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.costs = torch.nn.ModuleList(mlp(2 * c + 3, c, c) for c in channels)
        self.estimators = torch.nn.ModuleList(
            gdl.ops.get("point_conv", in_channels=2 * c + 3, out_channels=c, k=k, hidden_units=hidden_units, backend=backend)
            for c in channels
        )
        self.heads = torch.nn.ModuleList(torch.nn.Linear(c, 3) for c in channels)
        for head in self.heads:  # start from the zero flow
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
        self.knn = gdl.ops.get("knn", k=k, backend=backend)
        self.interpolation = gdl.ops.get("knn", k=3, backend=backend)
        self.smoother = (
            None
            if control_sigma is None
            else gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=float(check_positive("control_sigma", control_sigma)), backend=backend)
        )

    def forward(self, source, target, batch_source=None, batch_target=None):
        return self.forward_levels(source, target, batch_source, batch_target)[0][1]

    def fit(self, source, target, batch_source=None, batch_target=None) -> "InterpolatedFlow":
        """The predicted flow as a field: ``displacement`` at the source points, ``at(points)`` anywhere."""
        levels = self.forward_levels(source, target, batch_source, batch_target, keep_finest=True)
        finest, finest_batch, flow = self._finest
        del self._finest
        return InterpolatedFlow(self, finest, finest_batch, flow, levels[0][1])

    def interpolate(self, points, batch, finest, finest_batch, flow):
        """The flow of the finest predicted level (network units) at ``points`` (network units)."""
        if self.smoother is not None:
            return self.smoother(points, finest, flow, None, batch, finest_batch)
        return self._upsample(points, batch, finest, finest_batch, flow)

    def forward_levels(self, source, target, batch_source=None, batch_target=None, keep_finest: bool = False):
        """[(index, flow)] from the output (index into source, flow) to the coarsest level."""
        x, y = source / self.scale, target / self.scale
        pyramid_x = Pyramid(x, batch_source, self.samplers)
        pyramid_y = Pyramid(y, batch_target, self.samplers)
        features_x, features_y = self._encode(pyramid_x), self._encode(pyramid_y)
        flows, flow = [], None
        for level in reversed(range(self.num_levels)):
            px, bx = pyramid_x.points[level + 1], pyramid_x.batch[level + 1]
            py, by = pyramid_y.points[level + 1], pyramid_y.batch[level + 1]
            if flow is None:
                initial = torch.zeros_like(px)
            else:
                initial = self._upsample(px, bx, pyramid_x.points[level + 2], pyramid_x.batch[level + 2], flow)
            warped = px + initial
            _, idx = self.knn(warped, py, bx, by)
            f, g = features_x[level], features_y[level]
            pairs = torch.cat([f[:, None, :].expand(-1, idx.shape[1], -1), g[idx], py[idx] - warped[:, None, :]], dim=2)
            cost = self.costs[level](pairs).max(dim=1).values
            context = torch.cat([f, cost, initial], dim=1)
            hidden = torch.relu(self.estimators[level](px, px, context, bx, bx))
            flow = initial + self.heads[level](hidden)
            flows.append((pyramid_x.index[level + 1], flow * self.scale))
        finest, finest_batch = pyramid_x.points[1], pyramid_x.batch[1]
        if keep_finest:
            self._finest = (finest, finest_batch, flow)
        output = self.interpolate(x, batch_source, finest, finest_batch, flow)
        flows.append((pyramid_x.index[0], output * self.scale))
        return flows[::-1]

    def _encode(self, pyramid: Pyramid) -> list[torch.Tensor]:
        features = pyramid.points[0].new_ones(pyramid.points[0].shape[0], 1)
        levels = []
        for level, encoder in enumerate(self.encoders):
            features = torch.relu(
                encoder(pyramid.points[level + 1], pyramid.points[level], features, pyramid.batch[level + 1], pyramid.batch[level])
            )
            levels.append(features)
        return levels

    def _upsample(self, fine, batch_fine, coarse, batch_coarse, values):
        """Inverse-distance interpolation over the 3 nearest coarse points."""
        dists, idx = self.interpolation(fine, coarse, batch_fine, batch_coarse)
        weights = 1 / (dists.detach() + 1e-8)
        weights = weights / weights.sum(dim=1, keepdim=True)
        return (weights[:, :, None] * values[idx]).sum(dim=1)


class InterpolatedFlow:
    """A predicted flow: ``displacement`` at the points it was predicted for, ``at(points)`` anywhere."""

    def __init__(self, model: FlowPyramid, finest, finest_batch, flow, displacement):
        self.model, self.finest, self.finest_batch, self.flow = model, finest, finest_batch, flow
        self.displacement = displacement

    def at(self, points, batch=None, initial=None):
        scale = self.model.scale
        return self.model.interpolate(points / scale, batch, self.finest, self.finest_batch, self.flow) * scale


class FlowStep(RegistrationStep):
    """The flow step of a registration: a trained ``model`` run on at most ``num_points`` random
    points of each cloud (all when None), its flow interpolated to every source point."""

    def __init__(self, model: FlowPyramid, num_points: int | None = None, subset_seed: int = 0):
        super().__init__()
        self.model = model
        self.num_points = None if num_points is None else check_positive("num_points", num_points, integer=True)
        self.subset_seed = check_seed("subset_seed", subset_seed)

    def fit(self, source, target, batch_source=None, batch_target=None) -> InterpolatedFlow:
        if self.num_points is None:
            return self.model.fit(source, target, batch_source, batch_target)
        i, j = subset_pair(batch_source, source.shape[0], batch_target, target.shape[0], self.num_points, self.subset_seed)
        bx = None if batch_source is None else batch_source[i]
        by = None if batch_target is None else batch_target[j]
        fitted = self.model.fit(source[i], target[j], bx, by)
        fitted.displacement = fitted.at(source, batch_source)
        return fitted
