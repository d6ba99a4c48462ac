"""weighted_procrustes: exact recovery, outliers, reflections, batches, gradients, errors."""

from __future__ import annotations

import pytest
import torch

import gdl.ops


def random_rotation(generator, d):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_transform(generator, mode, d):
    rotation = random_rotation(generator, d)
    if mode == "rigid":
        matrix = rotation
    elif mode == "similarity":
        matrix = (0.5 + 2 * torch.rand(1, generator=generator, dtype=torch.float64)) * rotation
    else:
        matrix = rotation + 0.5 * torch.randn(d, d, generator=generator, dtype=torch.float64)
    return matrix, torch.randn(d, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine"])
@pytest.mark.parametrize("d", [2, 3])
def test_exact_recovery_from_noiseless_pairs(generator, mode, d):
    x = torch.randn(40, d, generator=generator, dtype=torch.float64)
    matrix, shift = random_transform(generator, mode, d)
    w = torch.rand(40, generator=generator, dtype=torch.float64) + 0.1
    found_matrix, found_shift = gdl.ops.get("weighted_procrustes", mode=mode)(x, x @ matrix.T + shift, w)
    torch.testing.assert_close(found_matrix, matrix)
    torch.testing.assert_close(found_shift, shift)


@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine"])
def test_zero_weights_remove_outliers(generator, mode):
    x = torch.randn(60, 3, generator=generator, dtype=torch.float64)
    matrix, shift = random_transform(generator, mode, 3)
    y = x @ matrix.T + shift
    y[:12] += 5 * torch.randn(12, 3, generator=generator, dtype=torch.float64)
    op = gdl.ops.get("weighted_procrustes", mode=mode)
    w = torch.ones(60, dtype=torch.float64)
    w[:12] = 0
    found_matrix, found_shift = op(x, y, w)
    torch.testing.assert_close(found_matrix, matrix)
    torch.testing.assert_close(found_shift, shift)
    unweighted_matrix, _ = op(x, y)
    assert (unweighted_matrix - matrix).abs().max() > 1e-2  # the outliers do matter without weights


def test_small_weights_reduce_the_error_of_outliers(generator):
    x = torch.randn(100, 3, generator=generator, dtype=torch.float64)
    rotation = random_rotation(generator, 3)
    y = x @ rotation.T
    y[:10] += 3.0
    op = gdl.ops.get("weighted_procrustes")
    errors = []
    for outlier_weight in (1.0, 0.1, 0.01):
        w = torch.ones(100, dtype=torch.float64)
        w[:10] = outlier_weight
        errors.append((op(x, y, w)[0] - rotation).abs().max())
    assert errors[0] > errors[1] > errors[2]


def test_rigid_never_returns_a_reflection(generator):
    x = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    mirrored = x * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    rotation, _ = gdl.ops.get("weighted_procrustes")(x, mirrored)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(3, dtype=torch.float64))
    affine, _ = gdl.ops.get("weighted_procrustes", mode="affine")(x, mirrored)
    torch.testing.assert_close(torch.linalg.det(affine), torch.tensor(-1.0, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine"])
def test_batches_equal_per_item_calls(generator, mode):
    sizes = [15, 40, 25]
    x = torch.randn(sum(sizes), 3, generator=generator, dtype=torch.float64)
    y = torch.randn(sum(sizes), 3, generator=generator, dtype=torch.float64)
    w = torch.rand(sum(sizes), generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    op = gdl.ops.get("weighted_procrustes", mode=mode)
    matrices, shifts = op(x, y, w, batch)
    assert matrices.shape == (3, 3, 3) and shifts.shape == (3, 3)
    for k in range(3):
        matrix, shift = op(x[batch == k], y[batch == k], w[batch == k])
        torch.testing.assert_close(matrices[k], matrix)
        torch.testing.assert_close(shifts[k], shift)


@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine"])
def test_gradcheck(generator, mode):
    x = torch.randn(8, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(8, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(8, generator=generator, dtype=torch.float64) + 0.5).requires_grad_(True)
    op = gdl.ops.get("weighted_procrustes", mode=mode)
    assert torch.autograd.gradcheck(lambda *args: op(*args), (x, y, w))


def test_bad_inputs(generator):
    op = gdl.ops.get("weighted_procrustes")
    x, y = torch.randn(10, 3, generator=generator), torch.randn(10, 3, generator=generator)
    with pytest.raises(ValueError, match="mode must be one of"):
        gdl.ops.get("weighted_procrustes", mode="projective")
    with pytest.raises(ValueError, match="paired row by row"):
        op(x, y[:9])
    with pytest.raises(ValueError, match="w must be non-negative"):
        op(x, y, -torch.ones(10))
    with pytest.raises(ValueError, match="w sums to zero on batch item"):
        op(x, y, torch.zeros(10))
    with pytest.raises(ValueError, match="w sums to zero on batch item\\(s\\) \\[1\\]"):
        op(x, y, torch.tensor([1.0] * 5 + [0.0] * 5), torch.tensor([0] * 5 + [1] * 5))
    with pytest.raises(ValueError, match="x contains NaN"):
        op(torch.full((10, 3), float("nan")), y)
    with pytest.raises(ValueError, match="batch must be sorted"):
        op(x, y, batch=torch.tensor([1] * 5 + [0] * 5))
    collinear = torch.arange(10.0)[:, None] * torch.ones(1, 3)
    with pytest.raises(ValueError, match="affine fit is singular"):
        gdl.ops.get("weighted_procrustes", mode="affine")(collinear, y)
