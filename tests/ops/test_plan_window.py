"""The tiered window of an OT plan sums what the dense reduction over every pair sums."""

from types import SimpleNamespace

import pytest
import torch

from gdl.ops.core.batching import batch_pair
from gdl.ops.core.plan_window import LOG_CUTOFF, plan_window
from gdl.ops.core.sinkhorn_refine import log_weighted_sums

BACKENDS = ["torch", "keops"]

BLUR, REACH = 0.01, 0.01
PARAMS = SimpleNamespace(eps=BLUR**2, p=2)
KAPPA = 1 / (1 + BLUR**2 / REACH**2)


def clouds_with_strays(generator, n=500, strays=4):
    """A source and a noisy, shifted target on a curve of extent ~1, each with a few far points the
    other lacks (a branch seen in one cloud only)."""
    t = torch.rand(n, generator=generator, dtype=torch.float64) * 10
    x = torch.stack([0.4 * t.cos(), 0.4 * t.sin(), t / 10], 1)
    y = x + 0.003 * torch.randn(x.shape, generator=generator, dtype=torch.float64) + 0.003
    x_stray = torch.tensor([0.0, 0.0, -0.5], dtype=torch.float64) + 0.02 * torch.rand(strays, 3, generator=generator, dtype=torch.float64)
    y_stray = torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64) + 0.02 * torch.rand(strays, 3, generator=generator, dtype=torch.float64)
    return torch.cat([x, x_stray]), torch.cat([y, y_stray])


def converged_potentials(x, y, iterations=200):
    """f, g of the unbalanced entropic plan (uniform masses), Sinkhorn iterated densely in float64
    (each update contracts by kappa = 1/2: 200 reach float64 rounding)."""
    cost = torch.cdist(x, y) ** 2 / 2
    log_a = torch.full((len(x),), -torch.log(torch.tensor(float(len(x)))).item(), dtype=x.dtype)
    log_b = torch.full((len(y),), -torch.log(torch.tensor(float(len(y)))).item(), dtype=x.dtype)
    f, g = torch.zeros(len(x), dtype=x.dtype), torch.zeros(len(y), dtype=x.dtype)
    for _ in range(iterations):
        f = -KAPPA * PARAMS.eps * torch.logsumexp(log_b + (g - cost) / PARAMS.eps, 1)
        g = -KAPPA * PARAMS.eps * torch.logsumexp(log_a[:, None] + (f[:, None] - cost) / PARAMS.eps, 0)
    return f, g, log_b


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiered_window_sums_every_pair_that_matters(generator, backend):
    # The strays' potentials are far above the others': the window splits off their rows and
    # columns, cuts the rest much closer, and the log-sums of an update of f are the dense ones.
    x, y = clouds_with_strays(generator)
    f, g, log_b = converged_potentials(x, y)
    assert float(g[-4:].min()) > 2 * float(g[:-4].max())  # the target's strays hold the largest g
    h = (log_b + g / PARAMS.eps).float()
    xf, yf = x.float(), y.float()
    win = plan_window(xf, yf, batch_pair(None, None, len(x), len(y)), None, None, backend, (f / KAPPA).float(), g.float(), PARAMS)
    assert len(win.parts) == 3
    (_, _, regular), (_, _, strays) = win.parts[0], win.parts[-1]
    assert regular.truncated and regular.local.cutoff < 0.6 * strays.local.cutoff
    # every pair that can hold e^-LOG_CUTOFF of its row is visited, and few others are
    cost = torch.cdist(x, y) ** 2 / 2
    kept = cost <= (f / KAPPA)[:, None] + g[None, :] + LOG_CUTOFF * PARAMS.eps
    visited = visited_pairs(win, len(x), len(y))
    assert bool(visited[kept].all()) and float(visited.double().mean()) < 0.2
    sums, shift = log_weighted_sums(win, xf, yf, h, PARAMS)
    dense = torch.logsumexp(log_b + (g - cost) / PARAMS.eps, 1)
    torch.testing.assert_close((shift + sums.log())[:, 0].double(), dense, rtol=1e-5, atol=1e-4)


def visited_pairs(win, n, m):
    """(n, m) booleans: the pairs that a part of ``win`` visits (all of a part that is not
    truncated; those within the cutoff of one that is)."""
    visited = torch.zeros(n, m, dtype=torch.bool)
    for rows, columns, part in win.parts:
        rows = torch.arange(n) if rows is None else rows
        columns = torch.arange(m) if columns is None else columns
        if not part.truncated:
            visited[rows[:, None], columns[None, :]] = True
            continue
        for i, j in part.local.pairs(part.x, part.y):
            visited[rows[i], columns[j]] = True
    return visited


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiered_plan_reads_the_dense_barycentres_and_their_gradients(generator, backend):
    # Two batch items (the second without strays): y_hat_i = sum_j P_ij y_j / sum_j P_ij per item,
    # and its gradient in y, against the dense plan.
    x0, y0 = clouds_with_strays(generator, n=300)
    x1, y1 = clouds_with_strays(generator, n=200, strays=0)
    potentials = [converged_potentials(x, y) for x, y in ((x0, y0), (x1, y1))]
    x, y = torch.cat([x0, x1]).float(), torch.cat([y0, y1]).float()
    batch_x = torch.repeat_interleave(torch.arange(2), torch.tensor([len(x0), len(x1)]))
    batch_y = torch.repeat_interleave(torch.arange(2), torch.tensor([len(y0), len(y1)]))
    f = torch.cat([p[0] for p in potentials]).float()
    g = torch.cat([p[1] for p in potentials]).float()
    h = torch.cat([p[2] + p[1] / PARAMS.eps for p in potentials]).float()
    y = y.requires_grad_(True)
    win = plan_window(x, y, batch_pair(batch_x, batch_y, len(x), len(y)), batch_x, batch_y, backend, f, g, PARAMS)
    values = torch.cat([y, torch.ones_like(y[:, :1])], 1)

    def barycentres(win):  # the source strays hold no pair within reach: computed over their item
        sums, _ = log_weighted_sums(win, x, y, h, PARAMS, values)
        return sums[:, :3] / sums[:, 3:]

    y_hat = win.evaluate(barycentres)
    weights = torch.linspace(0, 1, y_hat.numel()).view_as(y_hat)
    (grad,) = torch.autograd.grad((y_hat * weights).sum(), y)
    expected_y_hat, expected_grad = [], torch.zeros(y.shape, dtype=torch.float64)
    start_x = start_y = 0
    for (xi, yi), (_, _, log_b), n, m in zip(((x0, y0), (x1, y1)), potentials, (len(x0), len(x1)), (len(y0), len(y1))):
        yi = yi.clone().requires_grad_(True)
        hi = h[start_y:start_y + m].double()
        plan = (hi - torch.cdist(xi, yi) ** 2 / 2 / PARAMS.eps).softmax(1)
        item_y_hat = plan @ yi
        (item_grad,) = torch.autograd.grad((item_y_hat * weights[start_x:start_x + n].double()).sum(), yi)
        expected_y_hat.append(item_y_hat.detach())
        expected_grad[start_y:start_y + m] = item_grad
        start_x, start_y = start_x + n, start_y + m
    torch.testing.assert_close(y_hat.detach().double(), torch.cat(expected_y_hat), rtol=0, atol=1e-5)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-3, atol=1e-3 * float(expected_grad.abs().max()))
