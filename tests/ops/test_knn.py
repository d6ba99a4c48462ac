"""knn against dense float64 references, per-item calls, autograd through the dense distances, bad inputs."""

from __future__ import annotations

import pytest
import torch

import gdl.ops

BACKENDS = ["torch", "keops"]
# (method, backend): all-pairs search in torch and in KeOps, and the CPU KD-tree
SEARCHES = [("brute", "torch"), ("brute", "keops"), ("kdtree", "auto")]
METRICS = ["euclidean", "manhattan", "cosine"]
K = 5


def dense_distances(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    """(N, M) distances written from the definitions, independent of gdl."""
    diff = x[:, None, :] - y[None, :, :]
    if metric == "euclidean":
        return (diff**2).sum(-1).sqrt()
    if metric == "manhattan":
        return diff.abs().sum(-1)
    return 1 - (x @ y.T) / (x.norm(dim=1)[:, None] * y.norm(dim=1)[None, :])


def reference_knn(x, y, k, metric, batch_x=None, batch_y=None, exclude_self=False):
    d = dense_distances(x, y, metric)
    if batch_x is not None:
        d = d.masked_fill(batch_x[:, None] != batch_y[None, :], float("inf"))
    if exclude_self:
        d = d.masked_fill(torch.eye(x.shape[0], dtype=torch.bool), float("inf"))
    dists, idx = d.topk(k, dim=1, largest=False, sorted=True)
    return dists, idx


def batch_of(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


@pytest.mark.parametrize("method, backend", SEARCHES)
@pytest.mark.parametrize("metric", METRICS)
def test_matches_dense_float64(method, backend, metric, generator):
    x = torch.randn(300, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(400, 3, generator=generator, dtype=torch.float64)
    dists, idx = gdl.ops.get("knn", k=K, metric=metric, method=method, backend=backend)(x, y)
    ref_dists, ref_idx = reference_knn(x, y, K, metric)
    torch.testing.assert_close(dists, ref_dists, rtol=1e-10, atol=1e-10)
    assert torch.equal(idx, ref_idx)  # continuous random data: no ties


@pytest.mark.parametrize("method, backend", SEARCHES)
def test_float32_matches_float64_reference(method, backend, generator):
    x = torch.rand(500, 3, generator=generator)
    dists, idx = gdl.ops.get("knn", k=K, method=method, backend=backend)(x)
    ref_dists, _ = reference_knn(x.double(), x.double(), K, "euclidean")
    torch.testing.assert_close(dists.double(), ref_dists, rtol=1e-5, atol=1e-6)
    # each returned index realises its distance
    torch.testing.assert_close((x[:, None, :] - x[idx]).norm(dim=-1), dists)


@pytest.mark.parametrize("method, backend", SEARCHES)
def test_ragged_batch_matches_per_item_calls(method, backend, generator):
    sizes_x, sizes_y = [40, 1, 75, 30], [50, K, 60, 90]  # item 1 has exactly k points to search
    x = torch.randn(sum(sizes_x), 3, generator=generator, dtype=torch.float64)
    y = torch.randn(sum(sizes_y), 3, generator=generator, dtype=torch.float64)
    batch_x, batch_y = batch_of(sizes_x), batch_of(sizes_y)
    knn = gdl.ops.get("knn", k=K, method=method, backend=backend)
    dists, idx = knn(x, y, batch_x, batch_y)
    start_x = start_y = 0
    for nx, ny in zip(sizes_x, sizes_y):
        d_item, i_item = knn(x[start_x : start_x + nx], y[start_y : start_y + ny])
        torch.testing.assert_close(dists[start_x : start_x + nx], d_item)
        assert torch.equal(idx[start_x : start_x + nx], i_item + start_y)
        start_x, start_y = start_x + nx, start_y + ny
    ref_dists, ref_idx = reference_knn(x, y, K, "euclidean", batch_x, batch_y)
    assert torch.equal(idx, ref_idx)


@pytest.mark.parametrize("method, backend", SEARCHES)
def test_item_with_sources_but_no_queries(method, backend, generator):
    x = torch.randn(20, 2, generator=generator, dtype=torch.float64)
    y = torch.randn(30, 2, generator=generator, dtype=torch.float64)
    batch_x = torch.full((20,), 2)
    batch_y = torch.repeat_interleave(torch.arange(3), torch.tensor([10, 10, 10]))
    dists, idx = gdl.ops.get("knn", k=3, method=method, backend=backend)(x, y, batch_x, batch_y)
    assert bool((idx >= 20).all())
    ref_dists, ref_idx = reference_knn(x, y, 3, "euclidean", batch_x, batch_y)
    assert torch.equal(idx, ref_idx)


@pytest.mark.parametrize("method, backend", SEARCHES)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exclude_self(method, backend, metric, generator):
    x = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    batch = batch_of([120, 80])
    dists, idx = gdl.ops.get("knn", k=K - 1, metric=metric, exclude_self=True, method=method, backend=backend)(x, batch_x=batch)
    ref_dists, ref_idx = reference_knn(x, x, K - 1, metric, batch, batch, exclude_self=True)
    assert not bool((idx == torch.arange(200)[:, None]).any())
    torch.testing.assert_close(dists, ref_dists)
    assert torch.equal(idx, ref_idx)


@pytest.mark.parametrize("method, backend", SEARCHES)
def test_exclude_self_with_duplicated_points(method, backend, generator):
    x = torch.randn(50, 3, generator=generator, dtype=torch.float64).repeat(2, 1)  # every point twice
    dists, idx = gdl.ops.get("knn", k=K - 1, exclude_self=True, method=method, backend=backend)(x)
    assert not bool((idx == torch.arange(100)[:, None]).any())
    assert torch.equal(idx[:, 0] % 50, torch.arange(100) % 50)  # the twin comes first, at distance 0
    assert bool((dists[:, 0] == 0).all())


@pytest.mark.parametrize("method, backend", SEARCHES)
@pytest.mark.parametrize("metric", METRICS)
def test_gradients_match_dense_reference(method, backend, metric, generator):
    x = torch.randn(60, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(80, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(60, K, generator=generator, dtype=torch.float64)
    dists, idx = gdl.ops.get("knn", k=K, metric=metric, method=method, backend=backend)(x, y)
    grad_x, grad_y = torch.autograd.grad((dists * weights).sum(), (x, y))
    ref_dists, _ = reference_knn(x, y, K, metric)
    ref_grad_x, ref_grad_y = torch.autograd.grad((ref_dists * weights).sum(), (x, y))
    torch.testing.assert_close(grad_x, ref_grad_x)
    torch.testing.assert_close(grad_y, ref_grad_y)


def test_gradcheck(generator):
    x = torch.randn(25, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(30, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    knn = gdl.ops.get("knn", k=3, backend="torch")
    assert torch.autograd.gradcheck(lambda a, b: knn(a, b)[0], (x, y))


def test_result_is_sorted_and_indexes_y(generator):
    x = torch.randn(100, 4, generator=generator)
    y = torch.randn(70, 4, generator=generator)
    dists, idx = gdl.ops.get("knn", k=K, backend="torch")(x, y)
    assert dists.shape == idx.shape == (100, K) and idx.dtype == torch.int64
    assert bool((dists[:, 1:] >= dists[:, :-1]).all())
    assert bool(((idx >= 0) & (idx < 70)).all())


@pytest.mark.parametrize("name", ["bunny", "kitti"])
@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_kdtree_on_real_clouds_matches_brute_force(real_cloud, name, metric):
    x, _ = real_cloud(name, 4000)
    y, query = x[:3000], x[1000:]
    dists, idx = gdl.ops.get("knn", k=16, metric=metric, method="kdtree")(query, y)
    ref = torch.cdist(query, y, p=2 if metric == "euclidean" else 1, compute_mode="donot_use_mm_for_euclid_dist")
    ref_dists, ref_idx = ref.topk(17, dim=1, largest=False, sorted=True)
    torch.testing.assert_close(dists, ref_dists[:, :16], rtol=1e-9, atol=1e-12)
    tied = (ref_dists[:, 1:] == ref_dists[:, :-1]).any(dim=1)  # scans hold duplicated points
    assert torch.equal(idx[~tied], ref_idx[~tied, :16])
    torch.testing.assert_close(ref.gather(1, idx), dists, rtol=1e-9, atol=1e-12)  # each index realises its distance


def test_auto_picks_the_kdtree_on_cpu_in_low_dimension():
    knn = gdl.ops.get("knn", k=2)
    assert knn.method_for(torch.zeros(10, 3), torch.zeros(10, 3), 1) == "kdtree"
    assert knn.method_for(torch.zeros(10, 5), torch.zeros(10, 5), 1) == "brute"


def _cloud(n=10, d=3, **kwargs):
    return torch.randn(n, d, **kwargs)


BAD_INPUTS = [
    # (operator params, call arguments, exception, words that the message must contain)
    ({"k": 11}, lambda: (_cloud(),), ValueError, ["k=11", "batch item 0"]),
    ({"k": 10, "exclude_self": True}, lambda: (_cloud(),), ValueError, ["k=10", "besides"]),
    ({"k": 3}, lambda: (_cloud(), None, torch.tensor([0] * 5 + [1] * 2 + [2] * 3)), ValueError, ["batch item 1"]),
    ({"k": 2}, lambda: (_cloud(), None, torch.tensor([1, 0] * 5)), ValueError, ["batch_x", "sorted"]),
    ({"k": 2}, lambda: (_cloud(), None, torch.zeros(9, dtype=torch.int64)), ValueError, ["batch_x", "(10,)"]),
    ({"k": 2}, lambda: (_cloud(), None, torch.zeros(10, dtype=torch.int32)), TypeError, ["batch_x", "int64"]),
    ({"k": 2}, lambda: (_cloud(), _cloud(), torch.zeros(10, dtype=torch.int64)), ValueError, ["batch_y"]),
    ({"k": 2}, lambda: (_cloud(), _cloud(8, 2)), ValueError, ["dimension"]),
    ({"k": 2}, lambda: (_cloud(), _cloud(dtype=torch.float64)), TypeError, ["dtype"]),
    ({"k": 2}, lambda: (_cloud(), _cloud(device="meta")), ValueError, ["y", "meta"]),
    ({"k": 2}, lambda: (torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 4.0]]),), ValueError, ["x", "NaN"]),
    ({"k": 2}, lambda: (_cloud(), _cloud().index_fill(0, torch.tensor([3]), float("inf"))), ValueError, ["y", "Inf"]),
    ({"k": 2}, lambda: (torch.zeros(0, 3),), ValueError, ["x", "empty"]),
    ({"k": 2}, lambda: (_cloud(), torch.zeros(0, 3)), ValueError, ["y", "empty"]),
    ({"k": 2}, lambda: (torch.randn(10),), ValueError, ["x", "(N, D)"]),
    ({"k": 2}, lambda: (torch.arange(30).view(10, 3),), TypeError, ["x", "float"]),
    ({"k": 2}, lambda: ([[0.0, 1.0]],), TypeError, ["x", "Tensor"]),
    ({"k": 2, "metric": "cosine"}, lambda: (_cloud().index_fill(0, torch.tensor([2]), 0.0),), ValueError, ["zero"]),
    ({"k": 2, "exclude_self": True}, lambda: (_cloud(), _cloud()), ValueError, ["exclude_self"]),
    ({"k": 2, "method": "grid"}, lambda: (_cloud(d=4),), ValueError, ["grid", "D"]),
]


@pytest.mark.parametrize("params, arguments, error, words", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(params, arguments, error, words):
    knn = gdl.ops.get("knn", backend="torch", **params)
    with pytest.raises(error) as info:
        knn(*arguments())
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


@pytest.mark.parametrize(
    "params, name",
    [
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"k": True}, "k"),
        ({"k": 2, "metric": "chebyshev"}, "metric"),
        ({"k": 2, "method": "octree"}, "method"),
        ({"k": 2, "backend": "cuda"}, "backend"),
        ({"k": 2, "grid_cell_points": 0}, "grid_cell_points"),
    ],
)
def test_bad_parameters(params, name):
    with pytest.raises(ValueError, match=name):
        gdl.ops.get("knn", **params)
