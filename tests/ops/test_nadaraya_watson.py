"""nadaraya_watson against the dense float64 ratio of kernel sums."""

import math
from collections import defaultdict

import pytest
import torch

import gdl.ops


def reference(kernel, xq, xs, values, weights, sigma):
    d = torch.cdist(xq, xs)
    k = {
        "gaussian": lambda: torch.exp(-(d**2) / (2 * sigma**2)),
        "laplacian": lambda: torch.exp(-d / sigma),
        "cauchy": lambda: 1 / (1 + d**2 / sigma**2),
        "inverse_multiquadric": lambda: 1 / torch.sqrt(1 + d**2 / sigma**2),
    }[kernel]() * weights
    return (k @ values) / k.sum(1, keepdim=True)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy", "inverse_multiquadric"])
@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_matches_dense_reference_with_gradients(regression_inputs, assert_same_gradients, kernel, backend):
    if backend == "keops" and kernel in ("cauchy", "inverse_multiquadric"):
        pytest.skip("same code path as kernel_conv's KeOps kernels; keeps the number of KeOps builds small")
    xq, xs, values, weights = inputs = regression_inputs(31, 27, 2)
    out = gdl.ops.get("nadaraya_watson", kernel=kernel, sigma=0.3, backend=backend)(xq, xs, values, weights)
    expected = reference(kernel, xq, xs, values, weights, 0.3)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert_same_gradients(out, expected, inputs, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_far_queries_get_the_softmax_average_of_their_nearest_sources(generator, backend):
    xs = torch.rand(20, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(20, 2, generator=generator, dtype=torch.float64)
    xq = xs[:5] + 100 * torch.tensor([1.0, 0, 0], dtype=torch.float64)  # exp(-d^2 / 2 sigma^2) == 0
    out = gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=0.05, backend=backend)(xq, xs, values)
    assert torch.isfinite(out).all()
    # the same ratio as a float64 softmax, which is exact here (mostly the nearest source's value)
    torch.testing.assert_close(out, torch.softmax(-torch.cdist(xq, xs) ** 2 / (2 * 0.05**2), dim=1) @ values)


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_zero_weights_near_a_far_query_are_ignored(generator, backend):
    """A far query whose nearest sources weigh 0 gets the average of the nearest weighted sources,
    finite (0/0 if the log-domain shift ignored the weights)."""
    xs = torch.rand(20, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(20, 2, generator=generator, dtype=torch.float64)
    xq = xs[:3] + torch.tensor([30.0, 0, 0], dtype=torch.float64)
    nearest_first = torch.cdist(xq, xs).argsort(dim=1)
    weights = torch.ones(20, dtype=torch.float64)
    weights[nearest_first[:, :3].flatten()] = 0.0
    out = gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=0.05, backend=backend)(xq, xs, values, weights)
    logits = (-torch.cdist(xq, xs) ** 2 / (2 * 0.05**2)).masked_fill(weights[None, :] == 0, float("-inf"))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(logits, dim=1) @ values)


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_ragged_batch_equals_per_item_calls(generator, backend):
    sizes_q, sizes_s = [10, 0, 15], [8, 4, 12]
    xq = torch.rand(25, 3, generator=generator, dtype=torch.float64)
    xs = torch.rand(24, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(24, generator=generator, dtype=torch.float64)
    bq = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes_q))
    bs = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes_s))
    op = gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=0.3, backend=backend)
    out = op(xq, xs, values, batch_query=bq, batch_src=bs)
    assert out.shape == (25,)
    for item in (0, 2):
        rows, cols = bq == item, bs == item
        ones = torch.ones(int(cols.sum()), dtype=torch.float64)
        torch.testing.assert_close(out[rows], reference("gaussian", xq[rows], xs[cols], values[cols, None], ones, 0.3)[:, 0])


def test_multiscale_sum_matches_reference(generator):
    xq = torch.rand(12, 3, generator=generator, dtype=torch.float64)
    xs = torch.rand(9, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(9, 1, generator=generator, dtype=torch.float64)
    out = gdl.ops.get("nadaraya_watson", kernel="laplacian", sigma=[0.1, 0.4], backend="torch")(xq, xs, values)
    d = torch.cdist(xq, xs)
    k = torch.exp(-d / 0.1) + torch.exp(-d / 0.4)
    torch.testing.assert_close(out, (k @ values) / k.sum(1, keepdim=True))


def pooled_reference(xq, xs, values, weights, sigma, voxel, batch_q, batch_s):
    """The gaussian average over per-voxel sources, pooled by a plain Python grouping: weight sum,
    weighted mean point and value (plain means in a voxel of zero weight), same item only."""
    groups = defaultdict(list)
    for j, (p, b) in enumerate(zip(xs.tolist(), batch_s.tolist())):
        groups[(b, *[math.floor(c / voxel) for c in p])].append(j)
    rows = []
    for i, b in enumerate(batch_q.tolist()):
        numerator, denominator = 0, 0
        for key, members in groups.items():
            if key[0] != b:
                continue
            w = weights[members]
            mass = w.sum()
            mean_weights = w if mass > 0 else torch.ones_like(w)
            point = (mean_weights[:, None] * xs[members]).sum(0) / mean_weights.sum()
            value = (mean_weights[:, None] * values[members]).sum(0) / mean_weights.sum()
            k = mass * torch.exp(-((xq[i] - point) ** 2).sum() / (2 * sigma**2))
            numerator, denominator = numerator + k * value, denominator + k
        rows.append(numerator / denominator)
    return torch.stack(rows)


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_pooled_sources_match_a_python_grouping(generator, backend):
    sizes_q, sizes_s = [10, 15], [60, 50]
    xq = torch.rand(25, 3, generator=generator, dtype=torch.float64)
    xs = torch.rand(110, 3, generator=generator, dtype=torch.float64)
    xs[60:65] = xs[:5]  # the same voxels in two items stay apart
    values = torch.randn(110, 2, generator=generator, dtype=torch.float64)
    weights = torch.rand(110, generator=generator, dtype=torch.float64)
    weights[70:] = 0  # some voxels hold no weight
    bq = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes_q))
    bs = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes_s))
    op = gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=0.3, backend=backend, pool=0.25)
    out = op(xq, xs, values, weights, bq, bs)
    torch.testing.assert_close(out, pooled_reference(xq, xs, values, weights, 0.3, 0.25, bq, bs))


def test_pooling_coincident_sources_changes_nothing(generator, assert_same_gradients):
    # points that share a position share the kernel value: pooling them is exact, gradients included
    distinct = torch.rand(12, 3, generator=generator, dtype=torch.float64) * 2
    xs = distinct.repeat_interleave(3, 0)
    xq = torch.rand(9, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    values = torch.randn(36, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(36, generator=generator, dtype=torch.float64, requires_grad=True)
    exact = gdl.ops.get("nadaraya_watson", sigma=0.4, backend="torch")(xq, xs, values, weights)
    pooled = gdl.ops.get("nadaraya_watson", sigma=0.4, backend="torch", pool=1e-3)(xq, xs, values, weights)
    torch.testing.assert_close(pooled, exact)
    assert_same_gradients(pooled, exact, (xq, values, weights), rtol=1e-10, atol=1e-10)


def test_pooled_average_of_a_smooth_field_on_a_real_cloud(real_cloud, generator):
    # h = sigma / 4 on a lidar frame: the binned average of a smooth field stays close to the exact one
    cloud, diagonal = real_cloud("kitti", 3000)
    sigma = 0.05 * diagonal
    values = torch.sin(3 * cloud / diagonal)
    op = gdl.ops.get("nadaraya_watson", sigma=sigma, backend="torch")
    exact = op(cloud, cloud, values)
    pooled = gdl.ops.get("nadaraya_watson", sigma=sigma, backend="torch", pool=sigma / 4)(cloud, cloud, values)
    assert float((pooled - exact).abs().max()) < 0.02 * float(values.abs().max())
    assert float((pooled - exact).abs().mean()) > 0  # the pooling did merge points


def test_bad_inputs(generator):
    xq, xs = torch.rand(5, 3, generator=generator), torch.rand(6, 3, generator=generator)
    values = torch.rand(6, 2)
    op = gdl.ops.get("nadaraya_watson", backend="torch")
    with pytest.raises(ValueError, match="positive kernel"):
        gdl.ops.get("nadaraya_watson", kernel="energy")
    with pytest.raises(ValueError, match="x_query and x_src must have the same dimension"):
        op(xq[:, :2], xs, values)
    with pytest.raises(ValueError, match=r"values must have shape \(6,\)"):
        op(xq, xs, values[:5])
    with pytest.raises(ValueError, match="weights must be non-negative"):
        op(xq, xs, values, -torch.ones(6))
    with pytest.raises(ValueError, match=r"weights must have shape \(6,\)"):
        op(xq, xs, values, torch.ones(6, 2))
    with pytest.raises(ValueError, match="weights are all zero in batch item 0"):
        op(xq, xs, values, torch.zeros(6))
    with pytest.raises(ValueError, match="no point in x_src"):
        op(xq, xs, values, batch_query=torch.tensor([0, 0, 1, 1, 1]), batch_src=torch.zeros(6, dtype=torch.int64))
    with pytest.raises(TypeError, match="x_src has dtype"):
        op(xq, xs.double(), values)
    with pytest.raises(ValueError, match="pool must be a positive number"):
        gdl.ops.get("nadaraya_watson", pool=0.0)


def masked_softmax_reference(xq, xs, values, weights, sigma, cutoff):
    """The gaussian average over the sources closer than the cutoff, as a float64 softmax, and the
    fraction D / (W + D) of the mass beyond the cutoff (W within)."""
    d = torch.cdist(xq, xs)
    far = d >= cutoff
    logits = -(d**2) / (2 * sigma**2) + weights.log()
    dropped = torch.softmax(logits, dim=1).masked_fill(~far, 0).sum(1)
    return torch.softmax(logits.masked_fill(far, float("-inf")), dim=1) @ values, dropped


def test_truncated_gaussian_on_a_lidar_frame_with_gradients(real_cloud, generator):
    cloud, diagonal = real_cloud("kitti", 3000)
    # Five queries moved a diagonal beyond the frame on every axis: their windows are surely empty.
    xq = torch.cat([cloud[:1500], cloud[:5] + 2 * diagonal]).clone().requires_grad_()
    xs = cloud[1000:].clone().requires_grad_()
    values = torch.randn(2000, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2000, generator=generator, dtype=torch.float64).add(0.1).requires_grad_()
    sigma, t = 0.01 * diagonal, 4.0
    inputs = [xq, xs, values, weights]
    masked, dropped = (r.detach() for r in masked_softmax_reference(xq, xs, values, weights, sigma, t * sigma))
    # Gradients compared on the queries whose window holds nearly all their mass.
    probe = torch.randn(1505, 2, generator=generator, dtype=torch.float64) * (dropped < 1e-3)[:, None]
    exact = gdl.ops.get("nadaraya_watson", sigma=sigma, backend="torch")(xq, xs, values, weights)
    exact_grads = torch.autograd.grad((exact * probe).sum(), inputs)
    has_window = torch.isfinite(masked).all(1)
    assert 5 <= int((~has_window).sum()) < 150, "some (not many) lidar queries have an empty window"
    # (A + a) / (W + D) - A / W is at most 2 max|v| D / (W + D) (KeOps drops less than D).
    bound = 2 * values.detach().abs().max() * dropped[:, None] + 1e-12
    for backend in ("torch", "keops"):
        out = gdl.ops.get("nadaraya_watson", sigma=sigma, backend=backend, truncate=t)(xq, xs, values, weights)
        grads = torch.autograd.grad((out * probe).sum(), inputs)
        assert bool(torch.isfinite(out).all())
        if backend == "torch":  # queries with an empty window follow today's far-query rule exactly
            torch.testing.assert_close(out[~has_window], exact[~has_window], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(out[has_window], masked[has_window], rtol=1e-10, atol=1e-10)
        error = (out - exact).detach().abs()
        assert bool((error[has_window] <= bound[has_window]).all())
        # Where the window holds most of the mass (nearly every query), the average barely moves.
        assert float(error[dropped < 1e-3].max()) < 2e-3 * float(values.detach().abs().max())
        for g, e in zip(grads, exact_grads):
            assert float((g - e).norm() / e.norm()) < 1e-2
    assert not torch.equal(out, exact), "truncation changed nothing"


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_truncated_far_queries_and_zero_weight_windows(generator, backend):
    xs = torch.rand(1500, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(1500, 2, generator=generator, dtype=torch.float64)
    weights = torch.ones(1500, dtype=torch.float64)
    corner = (xs < 0.1).all(1)  # a window of zero weights only: the corner's sources weigh 0
    weights[corner] = 0.0
    xq = torch.cat([xs[:300], xs[:3] + 100.0, torch.zeros(2, 3, dtype=torch.float64)])
    op = gdl.ops.get("nadaraya_watson", sigma=0.02, backend=backend, truncate=4)
    out = op(xq, xs, values, weights)
    exact = gdl.ops.get("nadaraya_watson", sigma=0.02, backend=backend)(xq, xs, values, weights)
    assert torch.isfinite(out).all()
    # Far queries (no source within the cutoff) get today's value; so do queries whose window holds
    # zero weights only, on the torch backend (KeOps averages the weighted sources of the voxel
    # blocks it visits beyond the cutoff, if any).
    rows = slice(300, None) if backend == "torch" else slice(300, 303)
    torch.testing.assert_close(out[rows], exact[rows], rtol=1e-10, atol=1e-10)
    # Queries within the cutoff of the zero-weight corner average a few weighted sources near the
    # cutoff, where the dropped ones are not negligible against them: the bound is for the others.
    clear = ~(xq[:300] < 0.1 + 4 * 0.02).all(1)
    assert float((out - exact)[:300][clear].abs().max()) < 1e-2


def test_truncated_ragged_batch_equals_per_item_calls(generator):
    sizes_q, sizes_s = torch.tensor([400, 0, 500]), torch.tensor([300, 40, 600])
    xq = torch.rand(900, 3, generator=generator, dtype=torch.float64)
    xs = torch.rand(940, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(940, 2, generator=generator, dtype=torch.float64)
    bq = torch.repeat_interleave(torch.arange(3), sizes_q)
    bs = torch.repeat_interleave(torch.arange(3), sizes_s)
    op = gdl.ops.get("nadaraya_watson", kernel="laplacian", sigma=[0.01, 0.02], backend="torch", truncate=8)
    out = op(xq, xs, values, batch_query=bq, batch_src=bs)
    for item in (0, 2):
        rows, cols = bq == item, bs == item
        torch.testing.assert_close(out[rows], op(xq[rows], xs[cols], values[cols]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("truncate", [0, -1, float("inf"), float("nan")])
def test_bad_truncate(truncate):
    with pytest.raises(ValueError, match="truncate"):
        gdl.ops.get("nadaraya_watson", truncate=truncate)
