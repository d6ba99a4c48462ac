"""point_conv: against a brute-force loop, backends, batches, gradients, invariance, bad inputs."""

from __future__ import annotations

import pytest
import torch

import gdl.ops

F64 = torch.float64
PARAMS = {"in_channels": 3, "out_channels": 4, "k": 5, "hidden_units": 6}


def layer(backend="torch", seed=0):
    torch.manual_seed(seed)
    return gdl.ops.get("point_conv", **PARAMS, backend=backend).double()


def brute_force(op, x_query, x_src, features):
    """The formula, one query point at a time, with neighbours from a full sort of distances."""
    rows = []
    for xq in x_query:
        nearest = ((x_src - xq) ** 2).sum(1).argsort()[: op.k]
        weights = op.weight_net(x_src[nearest] - xq)  # (k, H)
        outer = sum(torch.outer(features[j], weights[r]) for r, j in enumerate(nearest.tolist()))
        rows.append(op.output(outer.flatten()))
    return torch.stack(rows)


def test_matches_brute_force_loop(generator):
    x_src = torch.randn(60, 3, generator=generator, dtype=F64)
    x_query = torch.randn(20, 3, generator=generator, dtype=F64)
    features = torch.randn(60, 3, generator=generator, dtype=F64)
    op = layer()
    expected = brute_force(op, x_query, x_src, features)
    assert torch.allclose(op(x_query, x_src, features), expected, atol=1e-12)


def test_backends_agree_and_batch_items_never_mix(generator):
    x_src = torch.randn(90, 3, generator=generator, dtype=F64)
    x_query = torch.randn(40, 3, generator=generator, dtype=F64)
    features = torch.randn(90, 3, generator=generator, dtype=F64)
    batch_src = torch.cat([torch.zeros(50), torch.ones(40)]).long()
    batch_query = torch.cat([torch.zeros(15), torch.ones(25)]).long()
    dense, lazy = layer("torch"), layer("keops")
    out = dense(x_query, x_src, features, batch_query, batch_src)
    assert torch.allclose(out, lazy(x_query, x_src, features, batch_query, batch_src), atol=1e-12)
    assert torch.allclose(out[:15], dense(x_query[:15], x_src[:50], features[:50]), atol=1e-12)
    assert torch.allclose(out[15:], dense(x_query[15:], x_src[50:], features[50:]), atol=1e-12)


def test_gradcheck(generator):
    x_src = torch.randn(12, 3, generator=generator, dtype=F64, requires_grad=True)
    x_query = torch.randn(6, 3, generator=generator, dtype=F64, requires_grad=True)
    features = torch.randn(12, 3, generator=generator, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(layer(), (x_query, x_src, features), fast_mode=True)


def test_invariant_to_translation(generator):
    x_src = torch.randn(50, 3, generator=generator, dtype=F64)
    features = torch.randn(50, 3, generator=generator, dtype=F64)
    shift = torch.tensor([10.0, -3.0, 2.0], dtype=F64)
    op = layer()
    assert torch.allclose(op(x_src + shift, x_src + shift, features), op(x_src, x_src, features), atol=1e-10)


def test_reset_parameters_redraws_every_weight():
    op = layer()
    before = [p.clone() for p in op.parameters()]
    op.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, op.parameters()))


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.randn(4, 2), torch.randn(8, 3), torch.randn(8, 3)), ValueError, "x_query must have 3 columns"),
        ((torch.randn(4, 3), torch.randn(8, 3), torch.randn(7, 3)), ValueError, "features_src must have shape"),
        ((torch.randn(4, 3), torch.randn(8, 3), torch.randn(8, 2)), ValueError, "in_channels"),
        ((torch.randn(4, 3), torch.randn(3, 3), torch.randn(3, 3)), ValueError, "k=5 is larger"),
        ((torch.randn(4, 3), torch.randn(8, 3) * float("nan"), torch.randn(8, 3)), ValueError, "x_src contains NaN"),
        ((torch.randn(4, 3), torch.randn(8, 3), torch.randn(8, 3), torch.zeros(4).long()), ValueError, "batch_src"),
        ((torch.randn(4, 3), torch.randn(8, 3).double(), torch.randn(8, 3)), TypeError, "dtype"),
    ],
)
def test_bad_inputs(args, error, match):
    torch.manual_seed(0)
    op = gdl.ops.get("point_conv", **PARAMS, backend="torch")
    with pytest.raises(error, match=match):
        op(*args)


@pytest.mark.parametrize("params", [{"k": 0}, {"hidden_units": -1}, {"out_channels": 0}])
def test_bad_parameters(params):
    with pytest.raises(ValueError):
        gdl.ops.get("point_conv", **{**PARAMS, **params})
