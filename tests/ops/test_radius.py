"""radius against a brute-force float64 search."""

import pytest
import torch

import gdl.ops


def reference_radius(x, y, r, max_neighbors):
    """Sorted distances within r (padded with inf) from the full distance matrix."""
    d = torch.cdist(x, y)
    d = torch.where(d <= r, d, torch.full_like(d, float("inf")))
    k = min(max_neighbors, y.shape[0])
    dists = d.sort(dim=1).values[:, :k]
    return torch.cat([dists, dists.new_full((x.shape[0], max_neighbors - k), float("inf"))], 1)


# (method, backend): the CPU ball query, and k nearest neighbours then a mask in torch and in KeOps
SEARCHES = [("kdtree", "auto"), ("brute", "torch"), ("brute", "keops")]


@pytest.mark.parametrize("method, backend", SEARCHES)
def test_matches_brute_force_with_ragged_batches(generator, method, backend):
    sizes_x, sizes_y = [30, 7, 0, 25], [40, 3, 5, 20]
    x = torch.rand(sum(sizes_x), 3, generator=generator, dtype=torch.float64)
    y = torch.rand(sum(sizes_y), 3, generator=generator, dtype=torch.float64)
    batch_x = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_x))
    batch_y = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_y))
    r, max_neighbors = 0.35, 6  # item 1 has 3 source points, fewer than max_neighbors
    radius = gdl.ops.get("radius", r=r, max_neighbors=max_neighbors, method=method, backend=backend)
    dists, idx = radius(x, y, batch_x, batch_y)
    assert dists.shape == idx.shape == (sum(sizes_x), max_neighbors)
    for item in range(4):
        rows, cols = batch_x == item, batch_y == item
        if rows.any():
            torch.testing.assert_close(dists[rows], reference_radius(x[rows], y[cols], r, max_neighbors))
    found = idx >= 0
    assert torch.equal(found, torch.isfinite(dists))
    assert torch.equal(batch_y[idx[found]], batch_x[:, None].expand_as(idx)[found])
    torch.testing.assert_close(dists[found], (x[:, None, :] - y[idx.clamp(min=0)]).norm(dim=-1)[found])
    assert bool((dists[found] <= r).all())


def test_self_search_includes_the_point_itself_and_searches_agree(generator):
    x = torch.rand(60, 3, generator=generator, dtype=torch.float64)
    results = [gdl.ops.get("radius", r=0.3, max_neighbors=10, method=m, backend=b)(x) for m, b in SEARCHES]
    for dists, idx in results:
        torch.testing.assert_close(dists, results[0][0])
        assert torch.equal(idx, results[0][1])  # continuous random data: no ties
    torch.testing.assert_close(results[0][0], reference_radius(x, x, 0.3, 10))
    assert torch.equal(results[0][1][:, 0], torch.arange(60))


@pytest.mark.parametrize("name", ["bunny", "kitti"])
def test_ball_query_on_real_clouds(real_cloud, name):
    x, _ = real_cloud(name, 4000)
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    # about 32 neighbours per point; off every pairwise distance, so that rounding decides nothing
    r = float(d.kthvalue(32, dim=1).values.median()) * (1 + 1e-6)
    dists, idx = gdl.ops.get("radius", r=r, max_neighbors=64, method="kdtree")(x)
    reference = torch.where(d <= r, d, torch.full_like(d, float("inf"))).sort(dim=1).values[:, :64]
    torch.testing.assert_close(dists, reference, rtol=1e-9, atol=1e-12)
    found = idx >= 0
    torch.testing.assert_close(d.gather(1, idx.clamp(min=0))[found], dists[found], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["kdtree", "brute"])
def test_gradient_matches_dense_reference(generator, method):
    x = torch.rand(25, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.rand(30, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    dists, idx = gdl.ops.get("radius", r=0.4, max_neighbors=5, method=method, backend="torch")(x, y)
    found = idx >= 0
    loss = (dists[found] ** 2 * torch.arange(int(found.sum()), dtype=torch.float64)).sum()
    grads = torch.autograd.grad(loss, [x, y])
    rows = torch.arange(25)[:, None].expand_as(idx)[found]
    expected = ((x[rows] - y[idx[found]]) ** 2).sum(-1) * torch.arange(int(found.sum()), dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected.sum(), [x, y])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_bad_inputs(generator):
    x = torch.rand(10, 3, generator=generator, dtype=torch.float64)
    op = gdl.ops.get("radius", r=0.1, max_neighbors=4, backend="torch")
    with pytest.raises(ValueError, match="same dimension"):
        op(x, x[:, :2])
    with pytest.raises(ValueError, match="x contains NaN"):
        op(x.index_fill(0, torch.tensor([3]), float("nan")))
    with pytest.raises(ValueError, match="have query points but no point in y"):
        op(x, x[:5], torch.tensor([0] * 5 + [1] * 5), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch_x must be sorted"):
        op(x, batch_x=torch.tensor([1] * 5 + [0] * 5))
    with pytest.raises(ValueError, match="r must be a positive number"):
        gdl.ops.get("radius", r=0)
    with pytest.raises(ValueError, match="max_neighbors must be a positive integer"):
        gdl.ops.get("radius", r=1.0, max_neighbors=2.5)
    with pytest.raises(ValueError, match="method"):
        gdl.ops.get("radius", r=1.0, method="octree")
