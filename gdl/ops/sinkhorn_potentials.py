"""Dual potentials of entropic optimal transport (GeomLoss)."""

from __future__ import annotations

from gdl.ops.core.ot_solver import check_measures, choose_solver, ot_params, solve
from gdl.ops.core.base import Operator
from gdl.ops.core.registry import register


@register("sinkhorn_potentials")
class SinkhornPotentials(Operator):
    r"""The dual potentials (f (N,), g (M,)) of the entropic OT problem of ``sinkhorn``.

    With ``debias=False`` (default here) they define the transport plan

        P_ij = a_i b_j exp((f_i + g_j - C(x_i, y_j)) / eps),   eps = blur^p,

    with marginals P 1 = a and P^T 1 = b when balanced, and the soft marginals of unbalanced OT
    when ``reach`` is set. With ``debias=True`` they are the debiased potentials
    (f_ab - f_aa, g_ab - g_bb), the gradients of the Sinkhorn divergence with respect to a and b;
    they do not define a plan. Same parameters, masses and batches as ``sinkhorn``; each item is
    solved on its own.
    """

    def __init__(self, p=2, blur=0.05, reach=None, scaling=None, debias=False, solver="auto", backend="auto"):
        super().__init__(backend)
        self.params = ot_params(p, blur, reach, scaling, debias, solver)

    def extra_repr(self) -> str:
        return f"{self.params.describe()}, " + super().extra_repr()

    def forward(self, x, y, a=None, b=None, batch_x=None, batch_y=None):
        measures = check_measures(x, y, a, b, batch_x, batch_y, self.params.balanced)
        solver = choose_solver(self.params, self.backend, self.backend_for(x.device), measures)
        return solve(self.params, solver, measures, potentials=True)
