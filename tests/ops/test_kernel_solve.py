"""kernel_solve against torch.linalg.solve on the dense float64 system."""

import pytest
import torch

import gdl.ops


def dense_system(x, sigma, alpha):
    return alpha * torch.eye(x.shape[0], dtype=x.dtype) + torch.exp(-torch.cdist(x, x) ** 2 / (2 * sigma**2))


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_solution_and_gradients_match_dense_solve(generator, backend):
    x = torch.rand(40, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(40, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    op = gdl.ops.get("kernel_solve", kernel="gaussian", sigma=0.3, alpha=0.1, tol=1e-12, backend=backend)
    a = op(x, b)
    expected = torch.linalg.solve(dense_system(x, 0.3, 0.1), b)
    torch.testing.assert_close(a, expected, rtol=1e-9, atol=1e-9)
    weights = torch.randn(40, 2, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((a * weights).sum(), [x, b])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, b])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-8)


def test_gradcheck(generator):
    x = torch.rand(7, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, generator=generator, dtype=torch.float64, requires_grad=True)
    op = gdl.ops.get("kernel_solve", kernel="cauchy", sigma=0.5, alpha=0.5, tol=1e-13, backend="torch")
    assert torch.autograd.gradcheck(op, (x, b))


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_ragged_batch_is_block_diagonal(generator, backend):
    sizes = [12, 1, 20]
    x = torch.rand(33, 3, generator=generator, dtype=torch.float64)
    b = torch.randn(33, 2, generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    op = gdl.ops.get("kernel_solve", kernel="gaussian", sigma=0.3, alpha=0.1, tol=1e-12, backend=backend)
    a = op(x, b, batch)
    for item in range(3):
        rows = batch == item
        torch.testing.assert_close(a[rows], torch.linalg.solve(dense_system(x[rows], 0.3, 0.1), b[rows]))


@pytest.mark.slow
def test_interpolates_a_smooth_function_on_real_lung_points(shared_data):
    vtk = pytest.importorskip("vtk")
    reader = vtk.vtkPolyDataReader()
    reader.SetFileName(str(shared_data / "lung_copd1" / "copd1_source.vtk"))
    reader.Update()
    from vtk.util.numpy_support import vtk_to_numpy

    points = torch.from_numpy(vtk_to_numpy(reader.GetOutput().GetPoints().GetData())).double()[::200]
    values = torch.sin(3 * points[:, 0]) * points[:, 1]
    op = gdl.ops.get("kernel_solve", kernel="gaussian", sigma=0.2, alpha=1e-2, tol=1e-10, max_iter=5000, backend="torch")
    coefficients = op(points, values)
    torch.testing.assert_close(
        coefficients, torch.linalg.solve(dense_system(points, 0.2, 1e-2), values), rtol=1e-5, atol=1e-6
    )


def test_warns_when_not_converged(generator):
    x = torch.rand(50, 3, generator=generator, dtype=torch.float64)
    b = torch.randn(50, dtype=torch.float64)
    op = gdl.ops.get("kernel_solve", sigma=0.5, alpha=1e-8, tol=1e-12, max_iter=2, backend="torch")
    with pytest.warns(RuntimeWarning, match="stopped after 2 iterations"):
        op(x, b)


def test_bad_inputs(generator):
    x = torch.rand(10, 3, generator=generator)
    op = gdl.ops.get("kernel_solve", backend="torch")
    with pytest.raises(ValueError, match="not positive definite"):
        gdl.ops.get("kernel_solve", kernel="energy")
    with pytest.raises(ValueError, match="alpha must be a non-negative number"):
        gdl.ops.get("kernel_solve", alpha=-1.0)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        gdl.ops.get("kernel_solve", tol=0)
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        gdl.ops.get("kernel_solve", max_iter=0)
    with pytest.raises(ValueError, match=r"b must have shape \(10,\)"):
        op(x, torch.rand(9))
    with pytest.raises(TypeError, match="b has dtype"):
        op(x, torch.rand(10, dtype=torch.float64))
    with pytest.raises(ValueError, match="b contains NaN"):
        op(x, torch.full((10,), float("nan")))
    with pytest.raises(ValueError, match="batch must be sorted"):
        op(x, torch.rand(10), torch.tensor([1] * 5 + [0] * 5))
