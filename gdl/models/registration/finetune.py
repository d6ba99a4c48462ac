"""Fine-tuning: robust-OT matching of the warped source, smoothed by confidence-weighted
Nadaraya-Watson regression, iterated.

With z = x + u the current warped source and (y_hat, c) its robust-OT matches and confidences,

    v_i = sum_j k(z_i, z_j) c_j (y_hat_j - z_j) / sum_j k(z_i, z_j) c_j,    u <- u + v,

a Gaussian-kernel average (registry ``nadaraya_watson``) that ignores unmatched points (c ~ 0) and
turns the raw OT map, which may tear, into a smooth displacement field. Each blur scale s_k (coarse
to fine) has its own reach (``reach_factor`` * s_k), kernel width (``smoothing``) and number of
match-and-smooth ``iterations``, each either one number for every scale or one per scale. So is
``num_points``: scale k is fitted on at most n_k random points of each cloud (nested: the first
points of one random order per cloud), starting from u, the scales so far evaluated at those points;
an OT solve costs about n_k^2 at coarse blurs, where few points resolve the blur.

With ``relaxation`` = omega (one number or one per scale; 1 by default), each pass steps
u <- u + omega v: over-relaxed passes (omega > 1) carry the matches into the regions that lag in
fewer passes (the lung preset's 40 mm-smoothed 2 mm passes: 50 at omega = 2 end where 100 at
omega = 1 do, and 100 at omega = 2 go further).

With ``momentum`` = beta in [0, 1) (one number or one per scale; 0 by default), the passes of a scale
are heavy-ball steps, d_k = omega v_k + beta d_(k-1) and u <- u + d_k: a motion that keeps its
direction from pass to pass, as the spread of the matches into the regions that lag does, grows
toward omega / (1 - beta) v per pass, while one that changes sign is damped. A scale's first pass
starts without momentum.

With ``smoothing_pool`` = p (one number, one per scale or None: no pooling), each pass averages its
matches pooled per voxel of side p times the scale's ``smoothing`` (``nadaraya_watson``'s ``pool``):
wide averages then sum over far fewer points (p = 0.5 at 40 mm: about 700 voxels for 8,192 lung
vessel points), at the cost of averaging the residuals over each voxel first.

With ``warm_iterations`` = n (one number or one per scale; None: none), the passes after the first
of a scale start from the OT potentials of the pass before and refine them by n Sinkhorn updates
at the scale's blur (``robot_map``'s warm start) instead of annealing from the clouds' diameter;
so does the first pass of a scale that follows a warm-started one on the same points (its
potentials then come from the previous blur, as in annealing).
The points moved a little, so this converges further for less work: on the lung trees at 2 mm
(8,192 points, reach = blur) 3 updates leave the confidences 0.5 % from the converged ones in
0.6 s, where the annealed solve leaves them 28 % away in 1.9 s. Coarse scales with a long reach
contract slowly (damping 0.9 at reach = 3 blur) and visit most pairs: keep them annealed.

With ``debias``, the residual y_hat_j - z_j becomes y_hat_j - z_hat_j, where z_hat is the match of
the warped source to itself (balanced OT at the same blur). An entropic match at blur s pulls each
point toward the centroid of the cloud within about s (branch tips inward, bends toward their
inside); once z and y agree locally, the match to the target shares that pull, so the debiased
residual vanishes there instead of settling a fraction of s away (as the Sinkhorn divergence
subtracts the self-transport terms). One more OT solve per pass, annealed faster (balanced).
``debias`` is one flag for every scale or one per scale. With ``debias_warm_iterations`` = n (one
number or one per scale; None: none), the self-matches of the passes after a scale's first (and of
its first, after a scale warm-started alike on the same points) refine the previous pass'
self-transport potentials by n Sinkhorn updates instead of annealing. At 5 mm on 8192 lung points
moved by 2 mm, one update takes 0.47 s instead of 1.7 and lands 0.05 mm from the annealed match; at
10 mm the window of a balanced update holds most pairs and the annealed solve is faster.

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

With ``interpolate_sigma`` = tau, the points that were not fitted (the rest of the source, queries
such as landmarks) do not follow each pass's smoothing: the fine-tuning of the fitted points x_s,
w_s = u_s - u0_s, reaches every point q by one Gaussian average of width tau,

    u(q) = u0(q) + sum_s k(q, x_s) w_s / sum_s k(q, x_s),

one sum over the fitted points instead of one per pass (the 60k-point lung trees, tau 5 mm: 0.1 s
instead of 4 min); None: every point follows the passes exactly as the fitted points did.

With ``truncate`` = t (None: exact), every Gaussian average only sums over the points within t
widths (a dropped weight is below exp(-t^2 / 2) of the peak; rows with no point in their window
are averaged exactly).

Fine-tuning matches independently sampled surfaces, so its smoothed matches carry a few centimetres
of noise; this keeps it where it helps (moving objects) and an exact motion elsewhere (the static
background). The comparison uses nearest-point distances, which suits clouds sampled densely
relative to that noise (lidar scan lines); on sparse samplings the fine-tuned flow, which moves
points onto target samples, wins it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

import gdl.ops
from gdl.models.registration.matching import RobustMatching, check_seed, item_masses, subset_pair
from gdl.models.registration.prealign import apply_transform, geman_mcclure
from gdl.models.registration.step import RegistrationStep
from gdl.ops.core.batching import num_items
from gdl.ops.core.checks import check_choice, check_flag, check_positive
from gdl.progress import report


@dataclass
class SmoothedPass:
    """One match-and-smooth pass: its Gaussian average of the ``residuals`` (weighted by the match
    ``confidence``) at the warped points ``anchors``, and the ``momentum`` that carries the pass before on."""

    smoother: torch.nn.Module
    anchors: torch.Tensor
    residuals: torch.Tensor
    confidence: torch.Tensor
    batch: torch.Tensor | None
    momentum: float

    def step(self, points, batch=None):
        return self.smoother(points, self.anchors, self.residuals, self.confidence, batch, self.batch)


class SmoothedFlow:
    """A fitted fine-tuning: ``displacement`` at the fitted points and ``at(points, batch, initial)``,
    the same smoothing (each scale's Nadaraya-Watson average of the matches, or with
    ``interpolate_sigma`` one average of the fitted points' result) and background choice (rigid
    layers, local comparison) evaluated at any points."""

    def __init__(self, finetune: "Finetune"):
        self.finetune, self.passes, self.layers, self.displacement = finetune, [], [], None
        self.fitted_points = None  # (x_s, w_s, batch_s) with ``interpolate_sigma``

    def smoothed(self, points, batch=None, initial=None):
        """u = initial + the passes replayed: u <- u + d_k, d_k = v_k(points + u) + beta_k d_(k-1)."""
        displacement = torch.zeros_like(points) if initial is None else initial
        increment = torch.zeros_like(displacement)
        for smoothed_pass in self.passes:
            increment = smoothed_pass.step(points + displacement, batch) + smoothed_pass.momentum * increment
            displacement = displacement + increment
        return displacement

    def interpolated(self, points, batch=None, initial=None):
        """u0 + the fitted points' fine-tuning averaged at ``points`` (``interpolate_sigma``)."""
        anchors, finetuning, batch_anchors = self.fitted_points
        return initial + self.finetune.interpolator(points, anchors, finetuning, None, batch, batch_anchors)

    def at(self, points, batch=None, initial=None):
        initial = torch.zeros_like(points) if initial is None else initial
        if self.fitted_points is None:
            result = self.smoothed(points, batch, initial)
        else:
            result = self.interpolated(points, batch, initial)
        for motion, anchors, distances, batch_anchors in self.layers:
            background = initial if motion is None else apply_transform(points, *motion, batch) - points
            local = self.finetune.local_average(points + background, anchors, distances, None, batch, batch_anchors)
            result = torch.where((local[:, 0] <= local[:, 1])[:, None], background, result)
        return result


class Subset:
    """At most ``num_points`` random points of each cloud (``subset_pair``) and their masses,
    renormalised per item; ``everything`` when the source subset is the whole source."""

    def __init__(self, source, target, batch_source, batch_target, a, b, num_points, seed):
        self.i, j = subset_pair(batch_source, source.shape[0], batch_target, target.shape[0], num_points, seed)
        self.everything = len(self.i) == source.shape[0]
        self.x, self.y = source[self.i], target[j]
        self.bx = None if batch_source is None else batch_source[self.i]
        self.by = None if batch_target is None else batch_target[j]
        self.a, self.b = item_masses(a[self.i], len(self.i), self.bx, source), item_masses(b[j], len(j), self.by, target)


class Finetune(RegistrationStep):
    """``displacement = finetune(source, target, batch_source, batch_target, initial=None)``."""

    takes_initial = True
    takes_masses = True

    def __init__(
        self,
        blurs=(0.1, 0.05),
        reach_factor=3.0,
        smoothing=0.2,
        iterations=1,
        scaling: float | None = None,
        keep_sigma: float | None = None,
        background: str = "initial",
        rigid_scales=(),
        rigid_iterations: int = 5,
        rigid_layers: int = 1,
        num_points: int | None = None,
        interpolate_sigma: float | None = None,
        warm_iterations: int | Sequence[int | None] | None = None,
        subset_seed: int = 0,
        backend: str = "auto",
        truncate: float | None = None,
        debias: bool | Sequence[bool] = False,
        debias_warm_iterations: int | Sequence[int | None] | None = None,
        solver: str = "auto",
        relaxation: float | Sequence[float] = 1.0,
        momentum: float | Sequence[float] = 0.0,
        smoothing_pool: float | Sequence[float | None] | None = None,
    ):
        super().__init__()
        self.subset_seed = check_seed("subset_seed", subset_seed)
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
        self.local_average = gaussian_average("keep_sigma", keep_sigma, backend, truncate)
        self.interpolator = gaussian_average("interpolate_sigma", interpolate_sigma, backend, truncate)
        blurs = [float(check_positive("blurs", b)) for b in blurs]
        self.iterations = per_scale("iterations", iterations, len(blurs), integer=True)
        self.num_points = per_scale("num_points", num_points, len(blurs), allow_none=True, integer=True)
        reach_factors = per_scale("reach_factor", reach_factor, len(blurs), allow_none=True)
        smoothings = per_scale("smoothing", smoothing, len(blurs))
        self.relaxations = per_scale("relaxation", relaxation, len(blurs))
        self.momenta = per_scale_momentum(momentum, len(blurs))
        warm = per_scale("warm_iterations", warm_iterations, len(blurs), allow_none=True, integer=True)
        self.matchings = torch.nn.ModuleList(
            RobustMatching(b, r * b if r else None, scaling, backend, solver, w)
            for b, r, w in zip(blurs, reach_factors, warm)
        )
        self.debiased = per_scale("debias", debias, len(blurs), flag=True)
        self_warm = per_scale("debias_warm_iterations", debias_warm_iterations, len(blurs), allow_none=True, integer=True)
        self.self_matchings = torch.nn.ModuleList(
            RobustMatching(b, None, None, backend, solver, w) for b, w in zip(blurs, self_warm)
        )
        pools = per_scale("smoothing_pool", smoothing_pool, len(blurs), allow_none=True)
        self.smoothers = torch.nn.ModuleList(
            gaussian_average("smoothing", s, backend, truncate, None if p is None else p * s)
            for s, p in zip(smoothings, pools)
        )

    def fit(
        self, source, target, batch_source=None, batch_target=None, initial=None, weights_source=None, weights_target=None
    ) -> SmoothedFlow:
        """Fit each scale on at most its ``num_points`` random points of each cloud (all when None;
        drawn from ``subset_seed``, so that a larger subset holds the smaller ones), with the
        transport masses ``weights_*`` (normalised per cloud, uniform when None); the returned
        flow's ``displacement`` is at every source point."""
        initial = torch.zeros_like(source) if initial is None else initial
        a = item_masses(weights_source, source.shape[0], batch_source, source, "weights_source")
        b = item_masses(weights_target, target.shape[0], batch_target, target, "weights_target")
        fitted, start = SmoothedFlow(self), time.perf_counter()
        subset, displacement = None, None
        potentials = self_potentials = None  # a pass starts from the previous pass' (warm_iterations, debias_warm_iterations)
        for k, (matching, smoother, iterations) in enumerate(zip(self.matchings, self.smoothers, self.iterations)):
            new_points = subset is None or self.num_points[k] != self.num_points[k - 1]
            if new_points:
                subset = Subset(source, target, batch_source, batch_target, a, b, self.num_points[k], self.subset_seed)
                displacement = fitted.smoothed(subset.x, subset.bx, initial[subset.i])  # the passes so far, at these points
            if new_points or not (matching.warm and self.matchings[k - 1].warm):
                potentials = None
            if new_points or not (self.debiased[k - 1] and self.self_matchings[k].warm and self.self_matchings[k - 1].warm):
                self_potentials = None
            self_matching = self.self_matchings[k] if self.debiased[k] else None
            x, y, bx, by, a_x, b_y = subset.x, subset.y, subset.bx, subset.by, subset.a, subset.b
            report("finetune", f"scale {k + 1}/{len(self.matchings)} (blur {matching.blur:g}, {len(x)} -> {len(y)} points)", start)
            increment = torch.zeros_like(displacement)
            for iteration in range(iterations):
                warped = x + displacement
                matched, confidence, potentials = matching.match(warped, y, bx, by, a_x, b_y, potentials)
                own = warped
                if self_matching is not None:
                    own, _, self_potentials = self_matching.match(warped, warped, bx, bx, a_x, a_x, self_potentials)
                residual = self.relaxations[k] * (matched - own)
                step = smoother(warped, warped, residual, confidence, bx, bx)
                momentum = self.momenta[k] if iteration > 0 else 0.0
                fitted.passes.append(SmoothedPass(smoother, warped, residual, confidence, bx, momentum))
                increment = step + momentum * increment
                displacement = displacement + increment
        if self.interpolator is not None:
            fitted.fitted_points = (subset.x, displacement - initial[subset.i], subset.bx)
        fitted.displacement = self._background(subset.x, subset.y, subset.bx, subset.by, initial[subset.i], displacement, fitted)
        if not subset.everything or self.interpolator is not None:
            fitted.displacement = fitted.at(source, batch_source, initial)
        return fitted

    def _background(self, source, target, batch_source, batch_target, initial, displacement, fitted) -> torch.Tensor:
        """The fitted ``displacement`` with the background kept where it fits as well (``keep_sigma``)."""
        if self.local_average is None:
            return displacement
        if self.background == "initial":
            return self.keep_background_where_not_worse(
                source, target, initial, displacement, batch_source, batch_target, fitted, None
            )
        result = displacement
        for _ in range(self.rigid_layers):
            free = layer_points((result == displacement).all(1), batch_source).to(source.dtype)
            motion = self.robust_rigid_fit(source, displacement, batch_source, free)
            motion = self.robust_rigid_refinement(source, target, motion, batch_source, batch_target, free)
            rigid = apply_transform(source, *motion, batch_source) - source
            result = self.keep_background_where_not_worse(source, target, rigid, result, batch_source, batch_target, fitted, motion)
        return result

    def robust_rigid_fit(self, source, displacement, batch=None, prior=None):
        """The rigid motion (linear, translation) that best explains most of ``displacement`` (on
        the points of non-zero ``prior`` weight, all by default)."""
        prior = torch.ones_like(source[:, 0]) if prior is None else prior
        weights = prior
        for tau in [None] + [matching.blur / 2 for matching in self.matchings]:
            if tau is not None:
                weights = prior * geman_mcclure((rigid - displacement).norm(dim=1), tau)
            linear, translation = self.rigid_fit(source, source + displacement, weights, batch)
            rigid = apply_transform(source, linear, translation, batch) - source
        return linear, translation

    def robust_rigid_refinement(self, source, target, motion, batch_source=None, batch_target=None, prior=None):
        """The rigid ``motion`` (linear, translation) refined by robust ICP against the target."""
        prior = torch.ones_like(source[:, 0]) if prior is None else prior
        linear, translation = motion
        rigid = apply_transform(source, linear, translation, batch_source) - source
        for tau in self.rigid_scales:
            for _ in range(self.rigid_iterations):
                distances, nearest = self.nearest(source + rigid, target, batch_source, batch_target)
                weights = prior * geman_mcclure(distances[:, 0], tau)
                linear, translation = self.rigid_fit(source, target[nearest[:, 0]], weights, batch_source)
                rigid = apply_transform(source, linear, translation, batch_source) - source
        return linear, translation

    def keep_background_where_not_worse(
        self, source, target, background, displacement, batch_source=None, batch_target=None, fitted=None, motion=None
    ):
        """u0_i where s_i(u0) <= s_i(u), else u_i (see the module docstring); records the layer in ``fitted``."""
        distances = torch.stack(
            [self.nearest(source + u, target, batch_source, batch_target)[0][:, 0] for u in (background, displacement)], 1
        )
        anchor = source + background
        local = self.local_average(anchor, anchor, distances, None, batch_source, batch_source)
        if fitted is not None:
            fitted.layers.append((motion, anchor, distances, batch_source))
        keep = local[:, 0] <= local[:, 1]
        return torch.where(keep[:, None], background, displacement)


def gaussian_average(name: str, sigma: float | None, backend: str, truncate: float | None, pool: float | None = None):
    """The Gaussian Nadaraya-Watson average of width ``sigma`` (None when ``sigma`` is None), over the
    source points pooled per voxel of side ``pool`` (None: every point)."""
    if sigma is None:
        return None
    sigma = check_positive(name, sigma)
    return gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=sigma, backend=backend, truncate=truncate, pool=pool)


def layer_points(free: torch.Tensor, batch: torch.Tensor | None, minimum: int = 3) -> torch.Tensor:
    """The ``free`` points, and every point of an item with fewer than ``minimum`` free ones (a rigid
    fit needs a few points; the comparison then decides)."""
    index = torch.zeros_like(free, dtype=torch.long) if batch is None else batch
    counts = torch.zeros(num_items(batch), device=free.device).index_add_(0, index, free.float())
    return free | (counts < minimum)[index]


def per_scale(name: str, value, scales: int, allow_none: bool = False, integer: bool = False, flag: bool = False) -> list:
    """One positive number (float, or int with ``integer``; a bool with ``flag``) per blur scale, from
    one value or a sequence of ``scales`` values."""
    values = scale_values(name, value, scales, "flag" if flag else "number")
    if flag:
        return [check_flag(name, v) for v in values]
    cast = int if integer else float
    return [v if v is None and allow_none else cast(check_positive(name, v, integer=integer)) for v in values]


def per_scale_momentum(value, scales: int) -> list[float]:
    """One momentum in [0, 1) per blur scale, from one value or a sequence of ``scales`` values."""
    values = scale_values("momentum", value, scales, "number")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {v!r}")
    return [float(v) for v in values]


def scale_values(name: str, value, scales: int, what: str) -> list:
    """``value`` repeated for each blur scale, or the sequence ``value`` when it has ``scales`` entries."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * scales
    if len(values) != scales:
        raise ValueError(f"{name} must be one {what} or {scales} {what}s (one per blur), got {value!r}")
    return values
