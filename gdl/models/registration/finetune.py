"""Fine-tuning: robust-OT matching of the warped source, smoothed by confidence-weighted
Nadaraya-Watson regression, iterated.

With z = x + u the current warped source and (y_hat, c) its robust-OT matches and confidences,

    v_i = sum_j k(z_i, z_j) c_j (y_hat_j - z_j) / sum_j k(z_i, z_j) c_j,    u <- u + v,

a Gaussian-kernel average (registry ``nadaraya_watson``) that ignores unmatched points (c ~ 0) and
turns the raw OT map, which may tear, into a smooth displacement field. Each blur scale s_k (coarse
to fine) has its own reach (``reach_factor`` * s_k) and kernel width (``smoothing``), either one
number for every scale or one per scale.

With ``keep_sigma`` = sigma, each point finally keeps a background displacement u0 where
fine-tuning does not improve the local fit to the target. With d_i(u) = min_j |x_i + u_i - y_j|
and the Gaussian average s_i(u) = sum_j k(x_i + u0_i, x_j + u0_j) d_j(u) / sum_j k(...) of width
sigma,

    u_i <- u0_i  where  s_i(u0) <= s_i(u).

u0 is the initial displacement (``background="initial"``: the previous steps') or a rigid motion
(``background="rigid"``, e.g. the ego-motion of a lidar scene): first fitted to the fine-tuned
displacement (weighted Procrustes with Geman-McClure weights 1 / (1 + r_i^2 / tau^2)^2,
r_i = |T(x_i) - x_i - u_i|, tau = blur_k / 2 over the blur scales), then refined against the target
by robust nearest-neighbour matching (ICP with the same weights, r_i = min_j |T(x_i) - y_j|,
``rigid_iterations`` fits at each tau of ``rigid_scales``). With ``rigid_layers`` = L > 1, rigid
motions are fitted in turn, each one to the points that still follow the fine-tuned displacement,
and offered to them by the same comparison (a scene of rigidly moving objects, e.g. cars, over a
static background).

Fine-tuning matches independently sampled surfaces, so its smoothed matches carry a few centimetres
of noise; this keeps it where it helps (moving objects) and an exact motion elsewhere (the static
background). The comparison uses nearest-point distances, which suits clouds sampled densely
relative to that noise (lidar scan lines); on sparse samplings the fine-tuned flow, which moves
points onto target samples, wins it.
"""

from __future__ import annotations

import torch

import gdl.ops
from gdl.models.registration.matching import RobustMatching
from gdl.models.registration.prealign import apply_transform, geman_mcclure
from gdl.ops.batching import num_items
from gdl.ops.checks import check_choice, check_positive


class Finetune(torch.nn.Module):
    """``displacement = finetune(source, target, batch_source, batch_target, initial=None)``."""

    def __init__(
        self,
        blurs=(0.1, 0.05),
        reach_factor=3.0,
        smoothing=0.2,
        iterations: int = 1,
        scaling: float | None = None,
        keep_sigma: float | None = None,
        background: str = "initial",
        rigid_scales=(),
        rigid_iterations: int = 5,
        rigid_layers: int = 1,
        backend: str = "auto",
    ):
        super().__init__()
        self.background = check_choice("background", background, ("initial", "rigid"))
        self.rigid_scales = [float(check_positive("rigid_scales", tau)) for tau in rigid_scales]
        self.rigid_iterations = check_positive("rigid_iterations", rigid_iterations, integer=True)
        self.rigid_layers = check_positive("rigid_layers", rigid_layers, integer=True)
        if background == "rigid" and keep_sigma is None:
            raise ValueError('background="rigid" needs keep_sigma: the rigid motion is only used where it is kept')
        if (self.rigid_scales or rigid_layers > 1) and background != "rigid":
            raise ValueError('rigid_scales and rigid_layers shape the rigid background: they need background="rigid"')
        self.rigid_fit = gdl.ops.get("weighted_procrustes", mode="rigid", backend=backend)
        self.nearest = gdl.ops.get("knn", k=1, backend=backend)
        self.local_average = (
            None
            if keep_sigma is None
            else gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=check_positive("keep_sigma", keep_sigma), backend=backend)
        )
        self.iterations = check_positive("iterations", iterations, integer=True)
        blurs = [float(check_positive("blurs", b)) for b in blurs]
        reach_factors = per_scale("reach_factor", reach_factor, len(blurs), allow_none=True)
        smoothings = per_scale("smoothing", smoothing, len(blurs))
        self.matchings = torch.nn.ModuleList(
            RobustMatching(b, r * b if r else None, scaling, backend) for b, r in zip(blurs, reach_factors)
        )
        self.smoothers = torch.nn.ModuleList(
            gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=s, backend=backend) for s in smoothings
        )

    def forward(self, source, target, batch_source=None, batch_target=None, initial=None):
        initial = torch.zeros_like(source) if initial is None else initial
        displacement = initial
        for matching, smoother in zip(self.matchings, self.smoothers):
            for _ in range(self.iterations):
                warped = source + displacement
                matched, confidence = matching(warped, target, batch_source, batch_target)
                step = smoother(warped, warped, matched - warped, confidence, batch_source, batch_source)
                displacement = displacement + step
        if self.local_average is None:
            return displacement
        if self.background == "initial":
            return self.keep_background_where_not_worse(source, target, initial, displacement, batch_source, batch_target)
        result = displacement
        for _ in range(self.rigid_layers):
            free = layer_points((result == displacement).all(1), batch_source).to(source.dtype)
            rigid = self.robust_rigid_fit(source, displacement, batch_source, free)
            rigid = self.robust_rigid_refinement(source, target, rigid, batch_source, batch_target, free)
            result = self.keep_background_where_not_worse(source, target, rigid, result, batch_source, batch_target)
        return result

    def robust_rigid_fit(self, source, displacement, batch=None, prior=None):
        """The displacement of the rigid motion that best explains most of ``displacement`` (on
        the points of non-zero ``prior`` weight, all by default)."""
        prior = torch.ones_like(source[:, 0]) if prior is None else prior
        weights = prior
        for tau in [None] + [matching.blur / 2 for matching in self.matchings]:
            if tau is not None:
                weights = prior * geman_mcclure((rigid - displacement).norm(dim=1), tau)
            linear, translation = self.rigid_fit(source, source + displacement, weights, batch)
            rigid = apply_transform(source, linear, translation, batch) - source
        return rigid

    def robust_rigid_refinement(self, source, target, rigid, batch_source=None, batch_target=None, prior=None):
        """The rigid ``rigid`` displacement refined by robust ICP against the target."""
        prior = torch.ones_like(source[:, 0]) if prior is None else prior
        for tau in self.rigid_scales:
            for _ in range(self.rigid_iterations):
                distances, nearest = self.nearest(source + rigid, target, batch_source, batch_target)
                weights = prior * geman_mcclure(distances[:, 0], tau)
                linear, translation = self.rigid_fit(source, target[nearest[:, 0]], weights, batch_source)
                rigid = apply_transform(source, linear, translation, batch_source) - source
        return rigid

    def keep_background_where_not_worse(self, source, target, background, displacement, batch_source=None, batch_target=None):
        """u0_i where s_i(u0) <= s_i(u), else u_i (see the module docstring)."""
        distances = torch.stack(
            [self.nearest(source + u, target, batch_source, batch_target)[0][:, 0] for u in (background, displacement)], 1
        )
        anchor = source + background
        local = self.local_average(anchor, anchor, distances, None, batch_source, batch_source)
        keep = local[:, 0] <= local[:, 1]
        return torch.where(keep[:, None], background, displacement)


def layer_points(free: torch.Tensor, batch: torch.Tensor | None, minimum: int = 3) -> torch.Tensor:
    """The ``free`` points, and every point of an item with fewer than ``minimum`` free ones (a rigid
    fit needs a few points; the comparison then decides)."""
    index = torch.zeros_like(free, dtype=torch.long) if batch is None else batch
    counts = torch.zeros(num_items(batch), device=free.device).index_add_(0, index, free.float())
    return free | (counts < minimum)[index]


def per_scale(name: str, value, scales: int, allow_none: bool = False) -> list:
    """One positive number per blur scale, from one number or a sequence of ``scales`` numbers."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * scales
    if len(values) != scales:
        raise ValueError(f"{name} must be one number or {scales} numbers (one per blur), got {value!r}")
    return [v if v is None and allow_none else float(check_positive(name, v)) for v in values]
