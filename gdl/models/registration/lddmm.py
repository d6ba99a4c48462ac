"""LDDMM: diffeomorphic deformations by geodesic shooting of control-point momenta.

Control points q (K, 3) carry momenta p (K, 3); with a radial kernel k (registry ``kernel_conv``),

    H(q, p) = 1/2 sum_ij k(q_i, q_j) <p_i, p_j>,
    dq/dt = dH/dp = K(q, q) p,   dp/dt = -dH/dq   (autograd),   dx/dt = K(x, q) p

integrated by explicit Euler over ``steps`` steps of t in [0, 1]. The flow of a smooth velocity
field is a diffeomorphism: the deformed cloud neither tears nor folds, which a raw OT map does not
guarantee. :class:`LDDMMRegistration` optimises p(0) to minimise a Sinkhorn divergence (registry
``sinkhorn``) between the deformed source and the target, plus ``regularisation`` * H(q(0), p(0)).
"""

from __future__ import annotations

import time

import torch

import gdl.ops
from gdl.models.registration.matching import check_seed, subset_pair
from gdl.models.registration.progress import report
from gdl.models.registration.step import RegistrationStep
from gdl.ops.core.batching import batch_pair, item_bounds
from gdl.ops.core.checks import check_positive


class LDDMM(torch.nn.Module):
    """Geodesic shooting under the kernel Hamiltonian of ``kernel`` at scale ``sigma``."""

    def __init__(self, sigma: float, kernel: str = "gaussian", steps: int = 10, backend: str = "auto"):
        super().__init__()
        self.steps = check_positive("steps", steps, integer=True)
        self.kernel = gdl.ops.get("kernel_conv", kernel=kernel, sigma=sigma, backend=backend)

    def hamiltonian(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """1/2 sum_ij k(q_i, q_j) <p_i, p_j>."""
        return 0.5 * (p * self.kernel(q, q, p)).sum()

    def shoot(self, q: torch.Tensor, p: torch.Tensor, x: torch.Tensor | None = None):
        """(q(1), p(1), x(1)): the control points, momenta and points x carried along to t = 1."""
        dt = 1.0 / self.steps
        with torch.enable_grad():
            if not q.requires_grad:
                q = q.clone().requires_grad_(True)
            for _ in range(self.steps):
                velocity = self.kernel(q, q, p)  # dH/dp
                force = torch.autograd.grad(0.5 * (p * velocity).sum(), q, create_graph=True)[0]  # dH/dq
                if x is not None:
                    x = x + dt * self.kernel(x, q, p)
                q, p = q + dt * velocity, p - dt * force
        return q, p, x

    def forward(self, x: torch.Tensor, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """The points x deformed by the geodesic flow shot from (q, p)."""
        return self.shoot(q, p, x)[2]


class GeodesicFlow:
    """Fitted LDDMM shootings: per batch item, one (model, controls, momenta) per stage. ``displacement``
    at the source points and ``at(points, batch)``: any points flowed along the same geodesics."""

    def __init__(self, shootings, displacement):
        self.shootings, self.displacement = shootings, displacement

    def at(self, points, batch=None, initial=None):
        starts, ends = item_bounds(batch, points.shape[0], len(self.shootings))
        parts = []
        with torch.no_grad():
            for stages, start, end in zip(self.shootings, starts.tolist(), ends.tolist()):
                item = moved = points[start:end]
                for model, controls, momenta in stages:
                    moved = model(moved, controls, momenta).detach()
                parts.append(moved - item)
        return torch.cat(parts) if parts else torch.zeros_like(points)


class LDDMMRegistration(RegistrationStep):
    """``displacement = step(source, target, batch_source, batch_target)``: optimised LDDMM shooting.

    Control points: ``num_controls`` farthest points of the source (registry ``fps``). Coarse to
    fine: with a list of ``sigma`` (and optionally of ``blur``), one geodesic per stage, each fitted
    to the source as moved by the previous ones, and composed. The fit uses at most ``num_points``
    random points of each cloud (drawn from ``subset_seed``); every source point then follows the fitted geodesics.
    """

    def __init__(
        self,
        sigma=0.5,
        steps: int = 5,
        num_controls: int = 256,
        blur=0.05,
        reach: float | None = None,
        iterations: int = 20,
        lr: float = 0.5,
        regularisation: float = 0.0,
        num_points: int | None = None,
        subset_seed: int = 0,
        backend: str = "auto",
    ):
        super().__init__()
        sigmas = list(sigma) if isinstance(sigma, (list, tuple)) else [sigma]
        blurs = list(blur) if isinstance(blur, (list, tuple)) else [blur] * len(sigmas)
        if len(blurs) != len(sigmas) or not sigmas:
            raise ValueError(f"blur must be one number or one per sigma ({len(sigmas)}), got {blur!r}")
        self.models = torch.nn.ModuleList(LDDMM(float(check_positive("sigma", s)), steps=steps, backend=backend) for s in sigmas)
        self.sampler = gdl.ops.get("fps", n=check_positive("num_controls", num_controls, integer=True), backend=backend)
        self.losses = torch.nn.ModuleList(
            gdl.ops.get("sinkhorn", p=2, blur=float(check_positive("blur", b)), reach=reach, debias=True, backend=backend) for b in blurs
        )
        self.iterations = check_positive("iterations", iterations, integer=True)
        self.num_points = None if num_points is None else check_positive("num_points", num_points, integer=True)
        self.subset_seed = check_seed("subset_seed", subset_seed)
        self.lr, self.regularisation = float(lr), float(regularisation)

    def fit(self, source, target, batch_source=None, batch_target=None) -> GeodesicFlow:
        """Optimises its momenta with autograd, also when called under ``torch.no_grad()``."""
        pair = batch_pair(batch_source, batch_target, source.shape[0], target.shape[0])
        with torch.enable_grad():
            shootings = [self._register(source[sx], target[sy]) for _, sx, sy in pair.item_slices()]
        fitted = GeodesicFlow(shootings, None)
        fitted.displacement = fitted.at(source, batch_source)
        return fitted

    def _register(self, source, target):
        """[(model, control points, optimised momenta)] of one item, a stage each; [] when empty."""
        source, target = source.detach(), target.detach()
        if source.shape[0] == 0:
            return []
        i, j = subset_pair(None, source.shape[0], None, target.shape[0], self.num_points, self.subset_seed)
        source, target = source[i], target[j]
        stages, start = [], time.perf_counter()
        for k, (model, loss) in enumerate(zip(self.models, self.losses)):
            report("lddmm", f"stage {k + 1}/{len(self.models)} (sigma {model.kernel.sigmas[0]:g})", start)
            controls = source[self.sampler(source)][: source.shape[0]]
            momenta = torch.zeros_like(controls, requires_grad=True)
            optimiser = torch.optim.Adam([momenta], lr=self.lr)
            for _ in range(self.iterations):
                optimiser.zero_grad()
                warped = model(source, controls, momenta)
                value = loss(warped, target) + self.regularisation * model.hamiltonian(controls, momenta)
                value.backward()
                optimiser.step()
            stages.append((model, controls, momenta.detach()))
            source = model(source, controls, momenta.detach()).detach()
        return stages
