"""local_linear against a dense float64 weighted least-squares fit per query."""

import pytest
import torch

import gdl.ops


def reference(xq, xs, values, weights, sigma, ridge):
    """b_i of min_(A, b) sum_j w_j k_ij |v_j - b - A (y_j - x_i)|^2 + ridge sigma^2 |A|^2, by normal equations."""
    k = torch.exp(-torch.cdist(xq, xs) ** 2 / (2 * sigma**2)) * weights
    out = []
    for i in range(xq.shape[0]):
        design = torch.cat([torch.ones_like(xs[:, :1]), xs - xq[i]], 1)  # (M, 1 + D)
        gram = design.T @ (k[i, :, None] * design)
        penalty = torch.zeros_like(gram)
        penalty[1:, 1:] = ridge * sigma**2 * torch.eye(xs.shape[1], dtype=xs.dtype) * k[i].sum()
        coefficients = torch.linalg.solve(gram + penalty, design.T @ (k[i, :, None] * values))
        out.append(coefficients[0])
    return torch.stack(out)


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_matches_dense_reference_with_gradients(regression_inputs, assert_same_gradients, backend):
    xq, xs, values, weights = inputs = regression_inputs(23, 31, 2)
    out = gdl.ops.get("local_linear", sigma=0.3, ridge=0.1, backend=backend)(xq, xs, values, weights)
    expected = reference(xq, xs, values, weights, 0.3, 0.1)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert_same_gradients(out, expected, inputs, rtol=1e-7, atol=1e-9)


def test_reproduces_an_affine_field_on_an_uneven_sampling(generator):
    # Sources crowd one corner of each query's window: Nadaraya-Watson's average of an affine field
    # is the field at the window's weighted centroid m_i, away from x_i; the affine fit is exact (ridge 0).
    xs = torch.rand(400, 3, generator=generator, dtype=torch.float64) ** 3
    xq = torch.rand(60, 3, generator=generator, dtype=torch.float64) * 0.5 + 0.25
    linear = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    shift = torch.randn(3, generator=generator, dtype=torch.float64)
    field = lambda p: p @ linear.T + shift  # noqa: E731
    exact = field(xq)
    fitted = gdl.ops.get("local_linear", sigma=0.2, ridge=0.0, backend="torch")(xq, xs, field(xs))
    average = gdl.ops.get("nadaraya_watson", sigma=0.2, backend="torch")
    torch.testing.assert_close(fitted, exact, rtol=1e-9, atol=1e-9)
    centroids = average(xq, xs, xs)
    assert float((centroids - xq).norm(dim=1).min()) > 0.05 * 0.2  # every window is lopsided (30 seeds: >= 0.026)
    torch.testing.assert_close(average(xq, xs, field(xs)), field(centroids), rtol=1e-9, atol=1e-9)
    # Sources on one line: the slope across it is undetermined; ridge 0 takes the minimum-norm one.
    line = torch.rand(50, 1, generator=generator, dtype=torch.float64) * torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    on_line = line[:10] ** 2
    fitted = gdl.ops.get("local_linear", sigma=0.2, ridge=0.0, backend="torch")(on_line, line, field(line))
    torch.testing.assert_close(fitted, field(on_line), rtol=1e-9, atol=1e-9)


def test_ragged_batches_and_truncation(generator):
    xs = torch.rand(300, 3, generator=generator, dtype=torch.float64)
    xq = torch.rand(90, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(300, generator=generator, dtype=torch.float64)
    batch_src, batch_query = (torch.arange(n) >= n // 3 for n in (300, 90))
    batch_src, batch_query = batch_src.long(), batch_query.long()
    op = gdl.ops.get("local_linear", sigma=0.1, backend="torch")
    out = op(xq, xs, values, None, batch_query, batch_src)
    assert out.shape == (90,)
    for item in (0, 1):
        alone = op(xq[batch_query == item], xs[batch_src == item], values[batch_src == item])
        torch.testing.assert_close(out[batch_query == item], alone)
    truncated = gdl.ops.get("local_linear", sigma=0.1, backend="torch", truncate=6.0)(xq, xs, values, None, batch_query, batch_src)
    torch.testing.assert_close(truncated, out, rtol=1e-6, atol=1e-6)


def test_bad_options_and_inputs_are_named():
    with pytest.raises(ValueError, match="ridge must be a non-negative number"):
        gdl.ops.get("local_linear", ridge=-1.0)
    with pytest.raises(ValueError, match="positive kernel"):
        gdl.ops.get("local_linear", kernel="energy")
    op = gdl.ops.get("local_linear", backend="torch")
    with pytest.raises(ValueError, match="values"):
        op(torch.rand(5, 3), torch.rand(7, 3), torch.rand(6, 2))
