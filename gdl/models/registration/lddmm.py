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

import torch

import gdl.ops
from gdl.ops.batching import batch_pair, item_bounds
from gdl.ops.checks import check_positive


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
    """Fitted LDDMM shootings, one per batch item: ``displacement`` at the source points and
    ``at(points, batch)``, any points flowed along the same geodesic."""

    def __init__(self, model: LDDMM, shootings, displacement):
        self.model, self.shootings, self.displacement = model, shootings, displacement

    def at(self, points, batch=None, initial=None):
        starts, ends = item_bounds(batch, points.shape[0], len(self.shootings))
        parts = []
        with torch.no_grad():
            for (controls, momenta), start, end in zip(self.shootings, starts.tolist(), ends.tolist()):
                item = points[start:end]
                parts.append(self.model(item, controls, momenta) - item if controls is not None else torch.zeros_like(item))
        return torch.cat(parts) if parts else torch.zeros_like(points)


class LDDMMRegistration(torch.nn.Module):
    """``displacement = step(source, target, batch_source, batch_target)``: optimised LDDMM shooting.

    Control points: ``num_controls`` farthest points of the source (registry ``fps``).
    """

    takes_initial = False
    takes_masses = False

    def __init__(
        self,
        sigma: float = 0.5,
        steps: int = 5,
        num_controls: int = 256,
        blur: float = 0.05,
        reach: float | None = None,
        iterations: int = 20,
        lr: float = 0.5,
        regularisation: float = 0.0,
        backend: str = "auto",
    ):
        super().__init__()
        self.model = LDDMM(sigma, steps=steps, backend=backend)
        self.sampler = gdl.ops.get("fps", n=check_positive("num_controls", num_controls, integer=True), backend=backend)
        self.loss = gdl.ops.get("sinkhorn", p=2, blur=blur, reach=reach, debias=True, backend=backend)
        self.iterations = check_positive("iterations", iterations, integer=True)
        self.lr, self.regularisation = float(lr), float(regularisation)

    def forward(self, source, target, batch_source=None, batch_target=None):
        return self.fit(source, target, batch_source, batch_target).displacement

    def fit(self, source, target, batch_source=None, batch_target=None) -> GeodesicFlow:
        """Optimises its momenta with autograd, also when called under ``torch.no_grad()``."""
        pair = batch_pair(batch_source, batch_target, source.shape[0], target.shape[0])
        with torch.enable_grad():
            shootings = [self._register(source[sx], target[sy]) for _, sx, sy in pair.item_slices()]
        fitted = GeodesicFlow(self.model, shootings, None)
        fitted.displacement = fitted.at(source, batch_source)
        return fitted

    def _register(self, source, target):
        """(control points, optimised momenta) of one item; (None, None) for an empty one."""
        source, target = source.detach(), target.detach()
        if source.shape[0] == 0:
            return None, None
        controls = source[self.sampler(source)][: source.shape[0]]
        momenta = torch.zeros_like(controls, requires_grad=True)
        optimiser = torch.optim.Adam([momenta], lr=self.lr)
        for _ in range(self.iterations):
            optimiser.zero_grad()
            warped = self.model(source, controls, momenta)
            loss = self.loss(warped, target) + self.regularisation * self.model.hamiltonian(controls, momenta)
            loss.backward()
            optimiser.step()
        return controls, momenta.detach()
