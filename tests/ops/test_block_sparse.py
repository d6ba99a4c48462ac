"""The voxel-grid (block-sparse) KNN returns exactly what brute force returns, on hard clouds too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gdl.ops
from gdl.ops.core.block_sparse import choose_cell_size

K = 5


def grid_and_brute(x, y=None, batch_x=None, batch_y=None, backend="torch", cell_points=32, **params):
    grid = gdl.ops.get("knn", k=K, method="grid", grid_cell_points=cell_points, backend=backend, **params)
    brute = gdl.ops.get("knn", k=K, method="brute", backend=backend, **params)
    return grid(x, y, batch_x, batch_y), brute(x, y, batch_x, batch_y)


def assert_same_neighbours(grid_result, brute_result, x, y):
    (dists, idx), (ref_dists, ref_idx) = grid_result, brute_result
    torch.testing.assert_close(dists, ref_dists, rtol=0, atol=0)
    # indices agree except among exact ties (within the row, or with the k-th distance, which may
    # tie with points left out), where both must realise the same distances
    tied = ref_dists == ref_dists[:, -1:]
    tied[:, 1:] |= ref_dists[:, 1:] == ref_dists[:, :-1]
    tied[:, :-1] |= ref_dists[:, 1:] == ref_dists[:, :-1]
    assert torch.equal(idx[~tied], ref_idx[~tied])
    assert torch.equal((x[:, None, :] - y[idx]).norm(dim=-1), (x[:, None, :] - y[ref_idx]).norm(dim=-1))


def clouds(kind, generator, n=1500, dtype=torch.float64):
    if kind == "uniform":
        return torch.rand(n, 3, generator=generator, dtype=dtype)
    if kind == "clustered":  # dense blobs far apart, with isolated points in between
        centres = 100 * torch.randn(6, 3, generator=generator, dtype=dtype)
        labels = torch.randint(0, 6, (n - 20,), generator=generator)
        blobs = centres[labels] + 0.1 * torch.randn(n - 20, 3, generator=generator, dtype=dtype)
        return torch.cat([blobs, 200 * torch.rand(20, 3, generator=generator, dtype=dtype)])
    if kind == "anisotropic":  # a thin, long slab
        scale = torch.tensor([1e3, 1.0, 1e-3], dtype=dtype)
        return torch.randn(n, 3, generator=generator, dtype=dtype) * scale
    if kind == "sphere":
        return torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=dtype), dim=1)
    if kind == "duplicated":  # every point four times, on a coarse lattice (many exact ties)
        lattice = torch.randint(0, 6, (n // 4, 3), generator=generator).to(dtype)
        return lattice.repeat(4, 1)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["uniform", "clustered", "anisotropic", "sphere", "duplicated"])
def test_grid_equals_brute_force(kind, generator):
    x = clouds(kind, generator)
    assert_same_neighbours(*grid_and_brute(x), x, x)


@pytest.mark.parametrize("cell_points", [1, 10**6])
def test_tiny_and_huge_voxels(cell_points, generator):
    x = clouds("clustered", generator, n=800)
    y = clouds("uniform", generator, n=600) * 200
    assert_same_neighbours(*grid_and_brute(x, y, cell_points=cell_points), x, y)


@pytest.mark.parametrize("dim", [1, 2])
def test_lower_dimensions(dim, generator):
    x = torch.randn(700, dim, generator=generator, dtype=torch.float64)
    y = torch.randn(900, dim, generator=generator, dtype=torch.float64)
    assert_same_neighbours(*grid_and_brute(x, y), x, y)


def test_ragged_batches_never_mix(generator):
    # overlapping items of very different sizes, one with a single query point, one with exactly k sources
    sizes_x, sizes_y = [600, 1, 300, 2], [500, 40, K, 700]
    x = torch.randn(sum(sizes_x), 3, generator=generator, dtype=torch.float64)
    y = torch.randn(sum(sizes_y), 3, generator=generator, dtype=torch.float64)
    batch_x = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_x))
    batch_y = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_y))
    grid_result, brute_result = grid_and_brute(x, y, batch_x, batch_y)
    assert_same_neighbours(grid_result, brute_result, x, y)
    assert torch.equal(batch_y[grid_result[1]], batch_x[:, None].expand(-1, K))


def test_one_point_items(generator):
    x = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    batch = torch.arange(40)
    grid = gdl.ops.get("knn", k=1, method="grid", backend="torch")
    dists, idx = grid(x, batch_x=batch)
    assert torch.equal(idx[:, 0], torch.arange(40)) and bool((dists == 0).all())


@pytest.mark.parametrize("metric", ["manhattan", "cosine"])
def test_other_metrics(metric, generator):
    x = clouds("clustered", generator, n=1000)
    assert_same_neighbours(*grid_and_brute(x, metric=metric), x, x)


def test_exclude_self(generator):
    x = clouds("duplicated", generator, n=800)
    (dists, idx), (ref_dists, _) = grid_and_brute(x, exclude_self=True)
    torch.testing.assert_close(dists, ref_dists, rtol=0, atol=0)
    assert not bool((idx == torch.arange(800)[:, None]).any())


def test_float32(generator):
    x = clouds("sphere", generator, dtype=torch.float32)
    assert_same_neighbours(*grid_and_brute(x), x, x)


@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicated"])
def test_keops_backend(kind, generator):
    x = clouds(kind, generator, n=1200)
    sizes = [700, 500]
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    grid_result, brute_result = grid_and_brute(x, batch_x=batch, backend="keops")
    assert_same_neighbours(grid_result, brute_result, x, x)
    torch_result = gdl.ops.get("knn", k=K, method="grid", backend="torch")(x, batch_x=batch)
    torch.testing.assert_close(grid_result[0], torch_result[0], rtol=0, atol=0)


def test_gradient_same_as_brute(generator):
    x = clouds("uniform", generator, n=500).requires_grad_()
    weights = torch.randn(500, K, generator=generator, dtype=torch.float64)
    (dists, _), (ref_dists, _) = grid_and_brute(x)
    grad, = torch.autograd.grad((dists * weights).sum(), x)
    ref_grad, = torch.autograd.grad((ref_dists * weights).sum(), x)
    torch.testing.assert_close(grad, ref_grad)


def read_ply_vertices(path):
    plyfile = pytest.importorskip("plyfile")
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    return torch.from_numpy(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32))


@pytest.mark.slow
def test_real_scan(shared_data):
    x = read_ply_vertices(shared_data / "shapes" / "bunny_30k.ply").double()
    assert x.shape == (30000, 3)
    assert_same_neighbours(*grid_and_brute(x, backend="keops"), x, x)


@pytest.mark.parametrize("kind", ["uniform", "sphere"])
def test_cell_size_reaches_target_occupancy(kind, generator):
    x = clouds(kind, generator, n=20000)
    size = choose_cell_size(x, torch.zeros(20000, dtype=torch.int64), 32)
    occupied = torch.unique(torch.floor(x / size), dim=0).shape[0]
    assert 32 / 2 <= 20000 / occupied <= 32 * 2


def test_auto_off_the_cpu_uses_the_grid_only_for_large_low_dimensional_clouds():
    """The choice off the CPU (where the KD-tree is not used), checked on shape-only tensors."""
    knn = gdl.ops.get("knn", k=K)

    def points(n, dim):
        return torch.empty(n, dim, device="meta")

    big, small = points(200_000, 3), points(100, 3)
    assert knn.method_for(big, big, 1) == "grid"
    assert knn.method_for(small, small, 1) == "brute"
    assert knn.method_for(points(200_000, 4), points(200_000, 4), 1) == "brute"
    assert knn.method_for(big, big, 1000) == "brute"  # 200 points per item
