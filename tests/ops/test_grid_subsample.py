"""grid_subsample against a plain Python grouping of points by voxel, and on a real scan."""

from collections import defaultdict

import numpy as np
import pytest
import torch

import gdl.ops


def reference_subsample(x, batch, features, voxel):
    groups = defaultdict(list)
    for i, (p, b) in enumerate(zip(x.tolist(), batch.tolist())):
        groups[(b, *[int(np.floor(c / voxel)) for c in p])].append(i)
    keys = sorted(groups)
    x_sub = torch.stack([x[groups[k]].mean(0) for k in keys])
    f_sub = torch.stack([features[groups[k]].mean(0) for k in keys])
    return x_sub, torch.tensor([k[0] for k in keys]), f_sub


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_matches_python_grouping_with_batches(generator, backend):
    sizes = [50, 0, 80]
    x = (torch.rand(130, 3, generator=generator, dtype=torch.float64) - 0.5) * 4
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    features = torch.randn(130, 2, generator=generator, dtype=torch.float64)
    x_sub, batch_sub, f_sub = gdl.ops.get("grid_subsample", voxel_size=0.7, backend=backend)(x, batch, features)
    ex, eb, ef = reference_subsample(x, batch, features, 0.7)
    torch.testing.assert_close(x_sub, ex)
    assert torch.equal(batch_sub, eb)
    torch.testing.assert_close(f_sub, ef)


def test_items_never_mixed_and_gradient(generator):
    x = torch.rand(40, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([20, 20]))
    x_sub, batch_sub, f_sub = gdl.ops.get("grid_subsample", voxel_size=10.0)(x, batch)
    assert f_sub is None and torch.equal(batch_sub, torch.tensor([0, 1]))
    torch.testing.assert_close(x_sub, torch.stack([x[:20].mean(0), x[20:].mean(0)]))
    weights = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    (grad,) = torch.autograd.grad((x_sub * weights).sum(), x)
    torch.testing.assert_close(grad, weights.repeat_interleave(20, 0) / 20)
    x_sub, batch_sub, _ = gdl.ops.get("grid_subsample", voxel_size=10.0)(x.detach())
    assert batch_sub is None and x_sub.shape == (1, 3)


def test_real_scan_voxel_count(shared_data):
    plyfile = pytest.importorskip("plyfile")
    vertex = plyfile.PlyData.read(shared_data / "shapes" / "bunny_30k.ply")["vertex"]
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float64)
    voxel = 0.02 * float(np.ptp(points, axis=0).max())
    x_sub, _, _ = gdl.ops.get("grid_subsample", voxel_size=voxel)(torch.from_numpy(points))
    cells = np.unique(np.floor(points / voxel).astype(np.int64), axis=0)
    assert x_sub.shape[0] == cells.shape[0]
    torch.testing.assert_close(torch.from_numpy(np.floor(x_sub.numpy() / voxel)), torch.from_numpy(cells).double())


def test_bad_inputs(generator):
    x = torch.rand(10, 3, generator=generator)
    op = gdl.ops.get("grid_subsample", voxel_size=0.1)
    with pytest.raises(ValueError, match="voxel_size must be a positive number"):
        gdl.ops.get("grid_subsample", voxel_size=-1)
    with pytest.raises(ValueError, match=r"features must have shape \(10,\)"):
        op(x, features=torch.rand(9, 2))
    with pytest.raises(TypeError, match="features has dtype"):
        op(x, features=torch.rand(10, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        op(x.masked_fill(x > 0.5, float("inf")))
    with pytest.raises(ValueError, match="voxel_size=1e-30 is too small"):
        gdl.ops.get("grid_subsample", voxel_size=1e-30)(x + 1)
