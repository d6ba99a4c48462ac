"""Shared fixtures of the operator tests: real clouds (a scan and a lidar frame, float64) for the truncated
reductions, random regression inputs, and a gradient comparison against a reference."""

import numpy as np
import pytest
import torch

from gdl.data.pointclouds import read_points

CLOUDS = {"bunny": "shapes/bunny_30k.ply", "kitti": "kitti_sceneflow/000000/pc1.npy"}


@pytest.fixture
def real_cloud(shared_data, generator):
    """real_cloud(name, n): n random points (float64) of a real cloud, and its bounding-box diagonal."""

    def sample(name: str, n: int):
        points, _ = read_points(shared_data / CLOUDS[name])
        x = torch.from_numpy(np.asarray(points, dtype=np.float64))
        x = x[torch.randperm(x.shape[0], generator=generator)[:n]].contiguous()
        return x, float((x.max(0).values - x.min(0).values).norm())

    return sample


@pytest.fixture
def regression_inputs(generator):
    """regression_inputs(queries, sources, channels): random float64 (x_query, x_src, values,
    weights in [0.1, 1.1)) in the unit cube, all requiring gradients."""

    def draw(queries: int, sources: int, channels: int):
        x_query = torch.rand(queries, 3, generator=generator, dtype=torch.float64, requires_grad=True)
        x_src = torch.rand(sources, 3, generator=generator, dtype=torch.float64, requires_grad=True)
        values = torch.randn(sources, channels, generator=generator, dtype=torch.float64, requires_grad=True)
        weights = torch.rand(sources, generator=generator, dtype=torch.float64).add(0.1).requires_grad_()
        return x_query, x_src, values, weights

    return draw


@pytest.fixture
def assert_same_gradients(generator):
    """assert_same_gradients(out, expected, inputs, rtol, atol): the gradients of <out, p> and
    <expected, p> agree in every input, for one random probe p."""

    def check(out, expected, inputs, rtol, atol):
        probe = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        grads = torch.autograd.grad((out * probe).sum(), inputs)
        expected_grads = torch.autograd.grad((expected * probe).sum(), inputs)
        for g, e in zip(grads, expected_grads):
            torch.testing.assert_close(g, e, rtol=rtol, atol=atol)

    return check
