"""tangent_frames: orthonormal right-handed frames, stable near every axis, smooth, bad inputs."""

from __future__ import annotations

import pytest
import torch

import gdl.ops


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def assert_right_handed_orthonormal(frames, normals, atol):
    basis = torch.cat([frames, normals[:, None, :]], 1)
    eye = torch.eye(3, dtype=basis.dtype).expand_as(basis)
    assert torch.allclose(basis @ basis.transpose(1, 2), eye, atol=atol)
    assert torch.allclose(torch.linalg.cross(frames[:, 0], frames[:, 1]), normals, atol=atol)


def test_random_normals_give_right_handed_orthonormal_frames(generator):
    normals = unit(torch.randn(1000, 3, generator=generator, dtype=torch.float64))
    frames = gdl.ops.get("tangent_frames")(normals)
    assert frames.shape == (1000, 2, 3)
    assert_right_handed_orthonormal(frames, normals, atol=1e-12)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-6), (torch.float64, 1e-14)])
def test_no_blow_up_near_any_axis(dtype, atol):
    axes = torch.cat([torch.eye(3), -torch.eye(3)]).to(dtype)
    tilts = torch.tensor([0.0, 1e-12, 1e-7, -1e-7, 1e-3], dtype=dtype)
    normals = unit((axes[:, None, :] + tilts[None, :, None] * torch.tensor([1.0, -1.0, 1.0], dtype=dtype)).reshape(-1, 3))
    frames = gdl.ops.get("tangent_frames")(normals)
    assert bool(torch.isfinite(frames).all())
    assert_right_handed_orthonormal(frames, normals, atol=atol)


def test_frames_are_continuous_away_from_the_equator(generator):
    normals = unit(torch.randn(500, 3, generator=generator, dtype=torch.float64))
    normals = normals[normals[:, 2].abs() > 0.05]
    step = 1e-6 * torch.randn(normals.shape, generator=generator, dtype=torch.float64)
    op = gdl.ops.get("tangent_frames")
    jump = (op(unit(normals + step)) - op(normals)).abs().max()
    assert float(jump) < 1e-4


def test_gradcheck(generator):
    normals = unit(torch.randn(20, 3, generator=generator, dtype=torch.float64))
    normals = normals[normals[:, 2].abs() > 0.05].requires_grad_()
    assert torch.autograd.gradcheck(gdl.ops.get("tangent_frames"), (normals,))


@pytest.mark.parametrize(
    "normals, match",
    [
        (torch.ones(5, 3), "unit vectors"),
        (torch.zeros(5, 3), "unit vectors"),
        (torch.ones(5, 2), "3 columns"),
        (torch.tensor([[float("nan"), 0.0, 1.0]]), "NaN"),
    ],
)
def test_bad_inputs(normals, match):
    with pytest.raises(ValueError, match=match):
        gdl.ops.get("tangent_frames")(normals)
