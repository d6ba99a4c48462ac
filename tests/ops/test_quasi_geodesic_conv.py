"""quasi_geodesic_conv and orientation_field: backends, gradients, invariances, batches, bad inputs."""

from __future__ import annotations

import pytest
import torch

import gdl.ops
from gdl.ops.tangent_frames import tangent_basis

F64 = torch.float64
CONV = {"in_channels": 4, "out_channels": 5, "radius": 0.3, "hidden_units": 8}


def surface(n, generator, radius=1.0):
    """A noisy ellipsoid: points, unit normals, frames, features."""
    normals = torch.randn(n, 3, generator=generator, dtype=F64)
    normals = normals / normals.norm(dim=1, keepdim=True)
    x = radius * normals * torch.tensor([1.0, 0.8, 0.6], dtype=F64)
    features = torch.randn(n, CONV["in_channels"], generator=generator, dtype=F64)
    return x, normals, tangent_basis(normals), features


def random_rotation(generator):
    q = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=F64)).Q
    return q * torch.sign(torch.linalg.det(q))


def in_plane_rotation(frames, angle):
    """Rotate each frame (u, v) by its own angle in its tangent plane."""
    c, s = angle.cos()[:, None], angle.sin()[:, None]
    u, v = frames[:, 0], frames[:, 1]
    return torch.stack([c * u + s * v, -s * u + c * v], 1)


def conv(backend, seed=0, **params):
    torch.manual_seed(seed)
    return gdl.ops.get("quasi_geodesic_conv", **{**CONV, **params}, backend=backend).double()


def test_backends_agree_with_batches_and_gradients(generator):
    x1, n1, f1, g1 = surface(120, generator)
    x2, n2, f2, g2 = surface(180, generator, radius=1.3)
    x, normals, frames, features = (torch.cat(pair) for pair in ((x1, x2), (n1, n2), (f1, f2), (g1, g2)))
    batch = torch.cat([torch.zeros(120), torch.ones(180)]).long()
    weights = torch.randn(300, CONV["out_channels"], generator=generator, dtype=F64)
    results = {}
    for backend in ("torch", "keops"):
        op = conv(backend)
        xs = x.clone().requires_grad_()
        out = op(xs, normals, frames, features, batch)
        grads = torch.autograd.grad((out * weights).sum(), [xs, *op.parameters()])
        results[backend] = (out, *grads)
    for dense, lazy in zip(results["torch"], results["keops"]):
        assert torch.allclose(dense, lazy, atol=1e-9)
    # Batch items never mix: per-item calls give the same rows (both items overlap in space).
    dense = conv("torch")
    assert torch.allclose(results["torch"][0][:120], dense(x1, n1, f1, g1), atol=1e-12)
    assert torch.allclose(results["torch"][0][120:], dense(x2, n2, f2, g2), atol=1e-12)


def test_gradcheck_dense(generator):
    x, normals, frames, features = surface(15, generator)
    op = conv("torch", radius=0.8)
    inputs = (x.requires_grad_(), features.requires_grad_())
    assert torch.autograd.gradcheck(lambda p, f: op(p, normals, frames, f), inputs, fast_mode=True)


def test_invariant_to_rigid_motions_when_frames_move_with_the_input(generator):
    x, normals, frames, features = surface(200, generator)
    rotation, shift = random_rotation(generator), torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    op = conv("torch")
    moved = op(x @ rotation.T + shift, normals @ rotation.T, frames @ rotation.T, features)
    assert torch.allclose(moved, op(x, normals, frames, features), atol=1e-9)


def test_orientation_field_makes_output_independent_of_the_input_frames(generator):
    x, normals, frames, features = surface(200, generator)
    angle = 6.28 * torch.rand(200, generator=generator, dtype=F64)
    op = conv("torch")
    spun = in_plane_rotation(frames, angle)
    assert torch.allclose(op(x, normals, spun, features), op(x, normals, frames, features), atol=1e-9)
    # The frames also rotate with a global rotation of the input (new tangent_frames, then orient).
    rotation = random_rotation(generator)
    field = op.orientation
    turned = field(x @ rotation.T, normals @ rotation.T, tangent_basis(normals @ rotation.T), features)
    assert torch.allclose(turned, field(x, normals, frames, features) @ rotation.T, atol=1e-9)


def test_orientation_field_backends_and_orthonormality(generator):
    x, normals, frames, features = surface(150, generator)
    torch.manual_seed(1)
    field = gdl.ops.get("orientation_field", in_channels=4, radius=0.3, hidden_units=8, backend="torch").double()
    lazy = gdl.ops.get("orientation_field", in_channels=4, radius=0.3, hidden_units=8, backend="keops").double()
    lazy.load_state_dict(field.state_dict())
    oriented = field(x, normals, frames, features)
    assert torch.allclose(oriented, lazy(x, normals, frames, features), atol=1e-10)
    basis = torch.cat([oriented, normals[:, None, :]], 1)
    assert torch.allclose(basis @ basis.transpose(1, 2), torch.eye(3, dtype=F64).expand(150, 3, 3), atol=1e-12)


def test_window_keeps_the_two_sides_of_a_thin_gap_apart(generator):
    """Two parallel sheets 0.1 apart with opposite normals: features of one sheet barely reach the
    other, whereas the same sheets with parallel normals (no gap to see) mix much more."""
    xy = torch.rand(300, 2, generator=generator, dtype=F64)
    x = torch.cat([torch.cat([xy, torch.zeros(300, 1, dtype=F64)], 1), torch.cat([xy, torch.full((300, 1), 0.1, dtype=F64)], 1)])
    up = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(300, 3)
    features = torch.zeros(600, 4, dtype=F64)
    features[300:] = torch.randn(300, 4, generator=generator, dtype=F64)
    op = conv("torch", radius=0.2)
    quiet = torch.zeros_like(features)

    @torch.no_grad()
    def leak(normals):
        frames = tangent_basis(normals)
        return (op(x, normals, frames, features) - op(x, normals, frames, quiet))[:300].norm()

    apart, together = leak(torch.cat([-up, up])), leak(torch.cat([up, up]))
    assert float(apart) < 0.2 * float(together)


def test_reset_parameters_redraws_every_weight():
    op = conv("torch")
    before = [p.clone() for p in op.parameters()]
    op.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, op.parameters()))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda x, n, f, g: (x, n * 2, f, g), ValueError, "unit vectors"),
        (lambda x, n, f, g: (x, n, f * 2, g), ValueError, "orthonormal"),
        (lambda x, n, f, g: (x, n, f[:, :1], g), ValueError, r"frames must have shape"),
        (lambda x, n, f, g: (x, n, f, g[:, :3]), ValueError, "in_channels"),
        (lambda x, n, f, g: (x[:, :2], n, f, g), ValueError, "x must have 3 columns"),
        (lambda x, n, f, g: (x, n, f, g.float()), TypeError, "features has dtype"),
        (lambda x, n, f, g: (x, n, f, g * float("nan")), ValueError, "features contains NaN"),
    ],
)
def test_bad_inputs(change, error, match, generator):
    args = change(*surface(10, generator))
    with pytest.raises(error, match=match):
        conv("torch")(*args)


@pytest.mark.parametrize("params", [{"radius": 0}, {"hidden_units": 0}, {"in_channels": 1.5}])
def test_bad_parameters(params):
    with pytest.raises(ValueError):
        gdl.ops.get("quasi_geodesic_conv", **{**CONV, **params})


def scan_surface(real_cloud, generator, n=1500):
    """Points of a real scan with PCA normals, frames and random features; the radius of 2 % of it."""
    x, diagonal = real_cloud("bunny", n)
    normals = gdl.ops.get("normals", scale=0.02 * diagonal, backend="torch")(x)
    features = torch.randn(n, CONV["in_channels"], generator=generator, dtype=F64)
    return x, normals, tangent_basis(normals), features, 0.02 * diagonal


def test_truncated_conv_close_to_exact_on_a_real_scan_with_gradients(real_cloud, generator):
    x, normals, frames, features, radius = scan_surface(real_cloud, generator)
    weights = torch.randn(x.shape[0], CONV["out_channels"], generator=generator, dtype=F64)
    results = {}
    # The dropped weights are below exp(-4.5^2) = 1.6e-9 of the peak. At 3.5 (4.8e-6) the gradients
    # of the orientation field's parameters moved by up to 2e-2 of their largest entry on some draws:
    # the field is normalised, o_i / |o_i|, which amplifies the dropped tail where |o_i| is small.
    for backend, truncate in (("torch", None), ("torch", 4.5), ("keops", 4.5)):
        op = conv(backend, radius=radius, truncate=truncate)
        xs = x.clone().requires_grad_()
        out = op(xs, normals, frames, features)
        grads = torch.autograd.grad((out * weights).sum(), [xs, *op.parameters()])
        results[backend, truncate] = (out, *grads)
    exact = results["torch", None]
    for key in (("torch", 4.5), ("keops", 4.5)):
        for e, t in zip(exact, results[key]):
            error = float((e - t).detach().abs().max() / e.detach().abs().max())
            assert error < 1e-3, (key, error)
    assert not torch.equal(exact[0], results["torch", 4.5][0]), "truncation dropped nothing"


def test_truncated_ragged_batch_equals_per_item_calls(real_cloud, generator):
    x, normals, frames, features, radius = scan_surface(real_cloud, generator)
    batch = (torch.arange(x.shape[0]) >= 600).long()
    op = conv("torch", radius=radius, truncate=3.0)
    out = op(x, normals, frames, features, batch)
    for rows in (slice(0, 600), slice(600, None)):
        expected = op(x[rows], normals[rows], frames[rows], features[rows])
        torch.testing.assert_close(out[rows], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("truncate", [0, -1, float("inf"), float("nan")])
def test_bad_truncate(truncate):
    with pytest.raises(ValueError, match="truncate"):
        gdl.ops.get("quasi_geodesic_conv", **CONV, truncate=truncate)
    with pytest.raises(ValueError, match="truncate"):
        gdl.ops.get("orientation_field", in_channels=4, radius=1.0, truncate=truncate)
