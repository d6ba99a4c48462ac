"""kernel_conv against a dense float64 reference written from the formulas of the issue."""

import math

import pytest
import torch

import gdl.ops

BACKENDS = ["torch", "keops"]


def reference_kernel(kernel, x, y, sigmas):
    d = torch.cdist(x, y)
    if kernel == "energy":
        return -d
    total = 0
    for s in sigmas:
        total = total + {
            "gaussian": lambda: torch.exp(-(d**2) / (2 * s**2)),
            "laplacian": lambda: torch.exp(-d / s),
            "cauchy": lambda: 1 / (1 + d**2 / s**2),
            "inverse_multiquadric": lambda: 1 / torch.sqrt(1 + d**2 / s**2),
        }[kernel]()
    return total


def random_cloud(generator, n, d=3):
    return torch.rand(n, d, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy", "energy", "inverse_multiquadric"])
def test_every_kernel_matches_dense_reference(generator, kernel):
    x, y = random_cloud(generator, 37), random_cloud(generator, 23)
    b = torch.randn(23, 2, generator=generator, dtype=torch.float64)
    sigma = [0.2, 0.7]
    a = gdl.ops.get("kernel_conv", kernel=kernel, sigma=sigma, backend="torch")(x, y, b)
    expected = reference_kernel(kernel, x, y, (0.2, 0.7)) @ b
    torch.testing.assert_close(a, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel, sigma", [("gaussian", 0.3), ("laplacian", [0.2, 0.5])])
def test_keops_matches_dense_reference_with_gradients(generator, kernel, sigma):
    x = random_cloud(generator, 41).requires_grad_()
    y = random_cloud(generator, 29).requires_grad_()
    b = torch.randn(29, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    sigmas = tuple(sigma) if isinstance(sigma, list) else (sigma,)
    a = gdl.ops.get("kernel_conv", kernel=kernel, sigma=sigma, backend="keops")(x, y, b)
    expected = reference_kernel(kernel, x, y, sigmas) @ b
    torch.testing.assert_close(a, expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn(41, 2, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((a * weights).sum(), [x, y, b])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, y, b])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_batch_equals_per_item_calls(generator, backend):
    sizes_x, sizes_y = [5, 0, 17, 9], [8, 3, 11, 1]
    x, y = random_cloud(generator, sum(sizes_x)), random_cloud(generator, sum(sizes_y))
    b = torch.randn(sum(sizes_y), generator=generator, dtype=torch.float64)
    batch_x = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_x))
    batch_y = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_y))
    op = gdl.ops.get("kernel_conv", kernel="gaussian", sigma=0.3, backend=backend)
    a = op(x, y, b, batch_x, batch_y)
    assert a.shape == (sum(sizes_x),)
    for item in range(4):
        rows, cols = batch_x == item, batch_y == item
        if rows.any():
            torch.testing.assert_close(a[rows], reference_kernel("gaussian", x[rows], y[cols], (0.3,)) @ b[cols])


def test_gradcheck_torch_backend(generator):
    x = random_cloud(generator, 6).requires_grad_()
    y = random_cloud(generator, 5).requires_grad_()
    b = torch.randn(5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    op = gdl.ops.get("kernel_conv", kernel="cauchy", sigma=0.5, backend="torch")
    assert torch.autograd.gradcheck(op, (x, y, b))


def test_float32_keops_close_to_float64_reference(generator):
    x, y = random_cloud(generator, 300), random_cloud(generator, 200)
    b = torch.randn(200, 1, generator=generator, dtype=torch.float64)
    op = gdl.ops.get("kernel_conv", kernel="gaussian", sigma=0.3, backend="keops")
    a = op(x.float(), y.float(), b.float())
    torch.testing.assert_close(a.double(), reference_kernel("gaussian", x, y, (0.3,)) @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "make_inputs, error, words",
    [
        (lambda x, y, b: (x[:, :2], y, b), ValueError, "same dimension"),
        (lambda x, y, b: (x[0], y, b), ValueError, "x must have shape"),
        (lambda x, y, b: (x, y.float(), b), TypeError, "y has dtype"),
        (lambda x, y, b: (x, y, b[:-1]), ValueError, "b must have shape"),
        (lambda x, y, b: (x.int(), y, b), TypeError, "x must be float32 or float64"),
        (lambda x, y, b: (x, y[:0], b[:0]), ValueError, "y is empty"),
        (lambda x, y, b: (torch.where(x > 0.5, float("nan"), x), y, b), ValueError, "x contains NaN"),
        (lambda x, y, b: (x, y, torch.full_like(b, float("inf"))), ValueError, "b contains NaN or Inf"),
        (lambda x, y, b: (x.tolist(), y, b), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_inputs(generator, make_inputs, error, words):
    x, y = random_cloud(generator, 10), random_cloud(generator, 8)
    b = torch.randn(8, 2, dtype=torch.float64)
    with pytest.raises(error, match=words):
        gdl.ops.get("kernel_conv", backend="torch")(*make_inputs(x, y, b))


def test_bad_batches_and_parameters(generator):
    x = random_cloud(generator, 6)
    b = torch.ones(6, dtype=torch.float64)
    op = gdl.ops.get("kernel_conv", backend="torch")
    with pytest.raises(ValueError, match="batch_x must be sorted"):
        op(x, x, b, torch.tensor([0, 1, 0, 1, 1, 1]), torch.zeros(6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"batch_y must have shape \(6,\)"):
        op(x, x, b, torch.zeros(6, dtype=torch.int64), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch_x was given but batch_y was not"):
        op(x, x, b, torch.zeros(6, dtype=torch.int64))
    with pytest.raises(TypeError, match="batch_x must be int64"):
        op(x, x, b, torch.zeros(6, dtype=torch.int32), torch.zeros(6, dtype=torch.int32))
    with pytest.raises(ValueError, match="kernel must be one of"):
        gdl.ops.get("kernel_conv", kernel="gauss")
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        gdl.ops.get("kernel_conv", sigma=[0.1, -1])
    with pytest.raises(ValueError, match="backend must be one of"):
        gdl.ops.get("kernel_conv", backend="cuda")


def masked_reference(kernel, x, y, sigmas, cutoff):
    """The exact kernel restricted to the pairs closer than the cutoff."""
    return reference_kernel(kernel, x, y, sigmas) * (torch.cdist(x, y) < cutoff)


@pytest.mark.parametrize("name", ["bunny", "kitti"])
def test_truncated_gaussian_on_real_clouds_with_gradients(real_cloud, generator, name):
    x, diagonal = real_cloud(name, 2500)
    x, y = x[:1500].requires_grad_(), x[1000:].clone().requires_grad_()
    b = torch.randn(y.shape[0], 2, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(x.shape[0], 2, generator=generator, dtype=torch.float64)
    sigma, t = 0.01 * diagonal, 4.0
    exact = reference_kernel("gaussian", x, y, (sigma,)) @ b
    masked = masked_reference("gaussian", x, y, (sigma,), t * sigma) @ b
    exact_grads = torch.autograd.grad((exact * weights).sum(), [x, y, b])
    masked_grads = torch.autograd.grad((masked * weights).sum(), [x, y, b])
    # Every dropped weight is below exp(-t^2 / 2), every dropped derivative below (t / sigma) exp(-t^2 / 2).
    bound = math.exp(-(t**2) / 2) * b.detach().abs().sum(0).max()
    for backend in BACKENDS:
        a = gdl.ops.get("kernel_conv", sigma=sigma, backend=backend, truncate=t)(x, y, b)
        assert float((a - exact).detach().abs().max()) <= bound
        grads = torch.autograd.grad((a * weights).sum(), [x, y, b])
        if backend == "torch":  # exactly the pairs closer than the cutoff
            torch.testing.assert_close(a, masked, rtol=1e-10, atol=1e-12)
            for g, e in zip(grads, masked_grads):  # float64 sums in another order: rounding of the largest entries
                torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11 * float(e.abs().max()))
        scale = [float(e.abs().max()) for e in exact_grads]
        errors = [float((g - e).abs().max()) for g, e in zip(grads, exact_grads)]
        assert max(err / s for err, s in zip(errors, scale)) < 30 * math.exp(-(t**2) / 2) * t, errors
        assert errors[0] > 0, "truncation dropped nothing: the test does not test it"


@pytest.mark.parametrize("kernel", ["laplacian", "cauchy", "inverse_multiquadric"])
def test_heavy_tailed_kernels_sum_exactly_the_pairs_within_the_cutoff(generator, kernel):
    x, y = random_cloud(generator, 700), random_cloud(generator, 500)
    b = torch.randn(500, 2, generator=generator, dtype=torch.float64)
    sigmas, t = (0.02, 0.05), 3.0
    a = gdl.ops.get("kernel_conv", kernel=kernel, sigma=list(sigmas), backend="torch", truncate=t)(x, y, b)
    torch.testing.assert_close(a, masked_reference(kernel, x, y, sigmas, t * 0.05) @ b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_ragged_batch_equals_per_item_calls(generator, backend):
    sizes_x, sizes_y = torch.tensor([400, 0, 700, 90]), torch.tensor([500, 30, 600, 1])
    x = random_cloud(generator, int(sizes_x.sum()))
    y = random_cloud(generator, int(sizes_y.sum()))
    b = torch.randn(y.shape[0], 2, generator=generator, dtype=torch.float64)
    batch_x = torch.repeat_interleave(torch.arange(4), sizes_x)
    batch_y = torch.repeat_interleave(torch.arange(4), sizes_y)
    op = gdl.ops.get("kernel_conv", sigma=0.03, backend=backend, truncate=4)
    a = op(x, y, b, batch_x, batch_y)
    # KeOps visits whole voxel blocks: pairs a little beyond the cutoff may count, on a grid that
    # depends on the whole batch; each differs from the exact sum by less than exp(-8) sum |b|.
    tolerance = 1e-12 if backend == "torch" else 2 * math.exp(-8) * float(b.abs().sum(0).max())
    for item in range(4):
        rows, cols = batch_x == item, batch_y == item
        if rows.any():
            torch.testing.assert_close(a[rows], op(x[rows], y[cols], b[cols]), rtol=0, atol=tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cloud_within_the_cutoff_gives_the_exact_sum(generator, backend):
    x, y = random_cloud(generator, 60), random_cloud(generator, 50)
    b = torch.randn(50, 2, generator=generator, dtype=torch.float64)
    exact = gdl.ops.get("kernel_conv", sigma=0.5, backend=backend)(x, y, b)
    torch.testing.assert_close(gdl.ops.get("kernel_conv", sigma=0.5, backend=backend, truncate=4)(x, y, b), exact)


@pytest.mark.parametrize("truncate", [0, -2.0, float("inf"), float("nan")])
def test_truncate_must_be_positive_and_finite(truncate):
    with pytest.raises(ValueError, match="truncate"):
        gdl.ops.get("kernel_conv", truncate=truncate)
    with pytest.raises(ValueError, match="truncate needs a kernel that decays"):
        gdl.ops.get("kernel_conv", kernel="energy", truncate=4)
