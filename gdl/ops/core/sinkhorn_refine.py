"""Sinkhorn iterations at the final temperature from given potentials (a warm start).

GeomLoss anneals eps from the clouds' diameter down to blur^p on every call. When a cloud moves a
little between calls (the passes of a fine-tuning), the potentials of the previous call are already
close: a few iterations at eps = blur^p refine them. With the GeomLoss conventions (``ot_solver``),
damping kappa = 1 / (1 + eps / rho) (1 when balanced), the symmetric updates are

    f_i <- (f_i + F_i(g)) / 2,   g_j <- (g_j + G_j(f)) / 2,
    F_i(g) = -kappa eps log sum_j b_j exp((g_j - C_ij) / eps),
    G_j(f) = -kappa eps log sum_i a_i exp((f_i - C_ij) / eps),

then one last update f = F(g), g = G(f). Unbalanced updates contract by kappa (1/2 at reach = blur).

Each log-sum-exp only visits the pairs that can matter: a pair with C_ij > f_i / kappa + g_j + T eps
(T = ``plan_window.LOG_CUTOFF``; symmetrically for the updates of g) adds less than e^-T of what a
converged row holds, so the windows of both updates (block-sparse over voxels, tiered by the
potentials: :mod:`gdl.ops.core.plan_window`) are cut there, from the starting potentials plus a
margin of ``MARGIN`` eps for their change.
"""

from __future__ import annotations

from gdl.ops.core.batching import batch_pair
from gdl.ops.core.kernels import any_sqrt, safe_log
from gdl.ops.core.plan_window import plan_window
from gdl.ops.core.window import sqnorm

MARGIN = 5.0


def refine_potentials(params, measures, batch_x, batch_y, f, g, iterations: int, backend: str = "keops"):
    """(f, g) after ``iterations`` symmetric Sinkhorn updates and a last one, at eps = blur^p
    (``backend``: "keops" or "torch", the windows' reductions)."""
    eps = params.eps
    kappa = 1.0 if params.balanced else 1.0 / (1.0 + eps / params.reach**params.p)
    x, y, a, b = measures.x, measures.y, measures.a, measures.b
    pair_yx = batch_pair(batch_y, batch_x, y.shape[0], x.shape[0], "batch_y", "batch_x")
    rows_x = plan_window(x, y, measures.pair, batch_x, batch_y, backend, f / kappa, g, params, MARGIN)
    rows_y = plan_window(y, x, pair_yx, batch_y, batch_x, backend, g / kappa, f, params, MARGIN)
    log_a, log_b = safe_log(a), safe_log(b)

    def softmin(win, points, others, log_weights, potential):
        """-kappa eps log sum_j w_j exp((potential_j - C_ij) / eps) over the window of each point."""
        h = log_weights + potential / eps

        def log_sum(win):
            sums, shift = log_weighted_sums(win, points, others, h, params)
            return shift + sums.log()

        return -kappa * eps * win.evaluate(log_sum)[:, 0]

    for _ in range(iterations):
        f, g = (f + softmin(rows_x, x, y, log_b, g)) / 2, (g + softmin(rows_y, y, x, log_a, f)) / 2
    f = softmin(rows_x, x, y, log_b, g)
    return f, softmin(rows_y, y, x, log_a, f)


def log_weighted_sums(win, points, others, h, params, values=None):
    """``win.softmax`` of u_ij = h_j - C(points_i, others_j) / eps: (sums of exp(u_ij - shift_i)
    [values_j], shift_i) over the window of each point."""

    def term(p_i, q_j, h_j):
        return h_j - cost(p_i, q_j, params.p) / params.eps

    return win.softmax(term, i=[points], j=[others, h[:, None].contiguous()], values=values)


def cost(p_i, q_j, p: int):
    """C(x, y): |x - y|^2 / 2 for p = 2, |x - y| for p = 1."""
    sqdist = sqnorm(p_i - q_j)
    return sqdist / 2 if p == 2 else any_sqrt(sqdist)
