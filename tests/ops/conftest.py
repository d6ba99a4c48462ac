"""Real clouds for the truncated-reduction tests: a scan (bunny) and a lidar frame (KITTI), float64."""

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
