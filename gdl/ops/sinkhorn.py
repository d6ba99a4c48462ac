"""Sinkhorn divergence between weighted point clouds (GeomLoss)."""

from __future__ import annotations

from gdl.ops.core.ot_solver import check_measures, choose_solver, ot_params, solve
from gdl.ops.core.base import Operator
from gdl.ops.core.registry import register


@register("sinkhorn")
class Sinkhorn(Operator):
    r"""Entropic OT loss between alpha = sum_i a_i delta_{x_i} and beta = sum_j b_j delta_{y_j}.

        OT_eps(alpha, beta) = min_P <P, C> + eps KL(P | alpha x beta)
                              + rho KL(P 1 | alpha) + rho KL(P^T 1 | beta)

    with C(x, y) = |x - y| (p = 1) or |x - y|^2 / 2 (p = 2), eps = blur^p, rho = reach^p (reach
    None: balanced, the marginals are constraints). GeomLoss returns the dual value of this
    problem; with ``debias`` (default) the Sinkhorn divergence

        S_eps(alpha, beta) = OT_eps(alpha, beta) - OT_eps(alpha, alpha) / 2 - OT_eps(beta, beta) / 2,

    which is zero for alpha = beta and tends to W_p^p / p as blur -> 0 (|v|^2 / 2 for y = x + v, p = 2).

    ``forward(x, y, a=None, b=None, batch_x=None, batch_y=None)`` returns one value per batch item
    (a 0-dim tensor without batches). Masses are non-negative, uniform (1 / N per item) when
    omitted, and must have equal totals per item when balanced. Differentiable in x, y, a and b.
    ``scaling=None`` is 0.5 when balanced and 0.9 with ``reach`` (coarse epsilon-scaling is
    inaccurate on unbalanced problems). ``solver``: GeomLoss' "tensorized" (dense, the torch
    backend), "online" or "multiscale" (KeOps), or "auto"; see :mod:`gdl.ops.core.ot_solver`.
    """

    def __init__(self, p=2, blur=0.05, reach=None, scaling=None, debias=True, solver="auto", backend="auto"):
        super().__init__(backend)
        self.params = ot_params(p, blur, reach, scaling, debias, solver)

    def extra_repr(self) -> str:
        return f"{self.params.describe()}, " + super().extra_repr()

    def forward(self, x, y, a=None, b=None, batch_x=None, batch_y=None):
        measures = check_measures(x, y, a, b, batch_x, batch_y, self.params.balanced)
        solver = choose_solver(self.params, self.backend, self.backend_for(x.device), measures)
        values = solve(self.params, solver, measures, potentials=False)
        return values[0] if batch_x is None else values
