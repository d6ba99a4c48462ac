"""Synthetic registration pairs: smooth random deformations of real clouds, with the known flow.

For a cloud P, the deformation is

    phi(x) = A (x + u(x) - c) + c + t,     u(x) = sum_s sum_k exp(-|x - q_k|^2 / (2 s^2)) m_{s,k}

with control points q_k drawn from P, Gaussian momenta m_{s,k} rescaled so that the largest
displacement at scale s is ``amplitudes[s]`` (registry ``kernel_conv``), c the centroid, A a
random rotation (angle <= ``rotation_deg``) times I + ``affine`` * N(0, 1) and t uniform in
[-translation, translation]^3. The source is a random subset of P, the target phi of another,
independent subset plus Gaussian noise, both optionally cropped by a random half-space (a
fraction ``crop`` of the points removed), and the target gets a fraction ``outliers`` of
uniform points in the bounding box. Ground truth: flow = phi(source) - source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning
import numpy as np
import torch
from torch_geometric.data import Data

import gdl.ops
from gdl.ops.core.checks import check_points


@dataclass
class SyntheticPair:
    source: torch.Tensor  # (N, 3)
    target: torch.Tensor  # (M, 3)
    flow: torch.Tensor  # (N, 3): source + flow is the deformed source


def pair_data(source, target, flow=None) -> Data:
    """A PyG ``Data`` for a pair; collate with ``follow_batch=["source", "target"]``."""
    data = Data(source=source, target=target, num_nodes=source.shape[0])
    if flow is not None:
        data.flow = flow
    return data


def random_rotation(angle_max: float, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """A rotation about a uniform random axis by an angle uniform in [-angle_max, angle_max] (radians)."""
    axis = torch.randn(3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm()
    angle = (2 * torch.rand((), generator=generator, dtype=torch.float64) - 1) * angle_max
    cross = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    rotation = torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    return rotation.to(dtype)


class SyntheticDeformation:
    """``pair = deformation(points, generator)``: a :class:`SyntheticPair` built from a real cloud."""

    def __init__(
        self,
        scales=(1.0,),
        amplitudes=(0.1,),
        num_controls: int = 64,
        rotation_deg: float = 0.0,
        translation: float = 0.0,
        affine: float = 0.0,
        noise: float = 0.0,
        num_points: int | None = None,
        crop: float = 0.0,
        outliers: float = 0.0,
        backend: str = "torch",
    ):
        if len(scales) != len(amplitudes):
            raise ValueError(f"scales and amplitudes must have the same length, got {len(scales)} and {len(amplitudes)}")
        if not 0 <= crop < 1 or not 0 <= outliers < 1:
            raise ValueError(f"crop and outliers must be fractions in [0, 1), got {crop} and {outliers}")
        self.kernels = [gdl.ops.get("kernel_conv", kernel="gaussian", sigma=float(s), backend=backend) for s in scales]
        self.amplitudes = [float(a) for a in amplitudes]
        self.num_controls, self.num_points = num_controls, num_points
        self.rotation = math.radians(rotation_deg)
        self.translation, self.affine, self.noise = translation, affine, noise
        self.crop, self.outliers = crop, outliers

    def displacement_field(self, points: torch.Tensor, generator: torch.Generator):
        """A random smooth field u, returned as a function of (N, 3) points."""
        controls = points[torch.randperm(points.shape[0], generator=generator)[: self.num_controls]]
        momenta = [torch.randn(controls.shape, generator=generator).to(points) for _ in self.kernels]
        terms = []
        for kernel, momentum, amplitude in zip(self.kernels, momenta, self.amplitudes):
            peak = kernel(points, controls, momentum).norm(dim=1).max().clamp_min(1e-12)
            terms.append((kernel, momentum * (amplitude / peak)))
        return lambda x: sum(kernel(x, controls, momentum) for kernel, momentum in terms)

    def __call__(self, points: torch.Tensor, generator: torch.Generator) -> SyntheticPair:
        check_points("points", points, dim=3)
        n = points.shape[0]
        field = self.displacement_field(points, generator)
        linear = random_rotation(self.rotation, generator, points.dtype)
        if self.affine:
            linear = linear @ (torch.eye(3) + self.affine * torch.randn(3, 3, generator=generator)).to(points)
        shift = ((2 * torch.rand(3, generator=generator) - 1) * self.translation).to(points)
        centre = points.mean(0)

        def phi(x):
            return (x + field(x) - centre) @ linear.T + centre + shift

        size = n if self.num_points is None else self.num_points
        source = points[self._subset(n, size, generator)]
        target_points = points[self._subset(n, size, generator)]
        source, target_points = self._crop(source, generator), self._crop(target_points, generator)
        target = phi(target_points) + self.noise * torch.randn(target_points.shape, generator=generator).to(points)
        if self.outliers:
            low, high = target.min(0).values, target.max(0).values
            count = int(self.outliers * target.shape[0])
            target = torch.cat([target, low + (high - low) * torch.rand(count, 3, generator=generator).to(points)])
        return SyntheticPair(source, target, phi(source) - source)

    @staticmethod
    def _subset(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        if size <= n:
            return torch.randperm(n, generator=generator)[:size]
        return torch.randint(n, (size,), generator=generator)

    def _crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.crop:
            return x
        direction = torch.randn(3, generator=generator).to(x)
        height = (x - x.mean(0)) @ direction
        return x[height <= torch.quantile(height, 1 - self.crop)]


class SyntheticPairs(torch.utils.data.Dataset):
    """``length`` synthetic pairs from a list of clouds; item i is reproducible from ``seed + i``."""

    def __init__(self, clouds: list[torch.Tensor], deformation: SyntheticDeformation, length: int, seed: int | None = None):
        if not clouds:
            raise ValueError("clouds is empty: give at least one point cloud to deform")
        self.clouds, self.deformation, self.length, self.seed = clouds, deformation, int(length), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Data:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic pairs")
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed + index)
        cloud = self.clouds[index % len(self.clouds)]
        pair = self.deformation(cloud, generator)
        return pair_data(pair.source, pair.target, pair.flow)


def sample_folder(name: str) -> Path:
    """A data sample shipped inside the installed package: ``gdl/samples/<name>``."""
    import gdl

    return Path(gdl.__file__).parent / "samples" / name


class SyntheticFlowDataModule(lightning.LightningDataModule):
    """Training on synthetic deformations of real clouds, evaluation on fixed pairs.

    Subclasses give ``training_clouds()`` (a list of (N, 3) arrays) and ``evaluation_pairs()``
    (a list of (source, target, flow) arrays). Training draws ``train_length`` fresh pairs per
    epoch with ``deformation(num_points=num_points)``, ``num_points`` points per cloud
    (``deformation``: a :class:`SyntheticDeformation` awaiting ``num_points``, a config node with
    ``_partial_: true`` or ``functools.partial(SyntheticDeformation, ...)``; default settings when
    None); batches are PyG batches with ``source``, ``target``, ``flow``, ``source_batch`` and
    ``target_batch``. ``mm_per_unit``: the size of a cloud unit in mm (errors reported in mm).
    """

    def __init__(
        self,
        num_points: int = 2048,
        deformation: Callable[..., SyntheticDeformation] | None = None,
        train_length: int = 16,
        batch_size: int = 2,
        num_workers: int = 0,
        mm_per_unit: float = 1.0,
    ):
        super().__init__()
        if not mm_per_unit > 0:
            raise ValueError(f"mm_per_unit must be a positive number of mm, got {mm_per_unit!r}")
        self.num_points, self.mm_per_unit = num_points, float(mm_per_unit)
        self.deformation = (deformation or SyntheticDeformation)(num_points=num_points)
        self.train_length, self.batch_size, self.num_workers = train_length, batch_size, num_workers
        self.train_set = self.eval_set = None
        self.landmark_set = []

    def training_clouds(self) -> list:
        raise NotImplementedError

    def evaluation_pairs(self) -> list:
        raise NotImplementedError

    def landmark_pairs(self) -> list:
        """Real pairs with corresponding landmarks, (source, target, landmarks_source,
        landmarks_target) arrays, validated by their landmark error; none by default."""
        return []

    def setup(self, stage: str | None = None):
        if self.train_set is None:
            clouds = [torch.as_tensor(np.asarray(c, dtype=np.float32)) for c in self.training_clouds()]
            self.train_set = SyntheticPairs(clouds, self.deformation, self.train_length)
            self.eval_set = [
                pair_data(*(torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in pair)) for pair in self.evaluation_pairs()
            ]
            self.landmark_set = []
            for source, target, landmarks_source, landmarks_target in self.landmark_pairs():
                data = pair_data(*(torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (source, target)))
                data.landmarks_source = torch.as_tensor(np.asarray(landmarks_source, dtype=np.float32))
                data.landmarks_target = torch.as_tensor(np.asarray(landmarks_target, dtype=np.float32))
                self.landmark_set.append(data)

    def _loader(self, dataset, shuffle: bool, batch_size: int | None = None):
        from torch_geometric.loader import DataLoader

        return DataLoader(
            dataset, batch_size=batch_size or self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            follow_batch=["source", "target"],
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=False)

    def val_dataloader(self):
        """The evaluation pairs, then (when there are any) the landmark pairs one at a time."""
        loader = self._loader(self.eval_set, shuffle=False)
        if not self.landmark_set:
            return loader
        return [loader, self._loader(self.landmark_set, shuffle=False, batch_size=1)]

    def test_dataloader(self):
        return self._loader(self.eval_set, shuffle=False)
