"""DirLab COPD lung vessel trees: the VTK pair of a case and its synthetic-recovery DataModule.

A case folder holds ``<case>_source.vtk`` (expiration) and ``<case>_target.vtk`` (inspiration),
POLYDATA point sets with per-point ``weights``, in normalised units (``mm_per_unit`` = 100 mm, the
data config's value, which the flow task reads too). DirLab landmarks (1-based voxel indices v,
spacing s) map to these units as ((v - 1) s - origin) / mm_per_unit for the ``origin`` (mm) of the
clouds' frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gdl.data.dirlab import read_landmarks, voxel_spacing, voxels_to_mm
from gdl.data.pointclouds import read_points
from gdl.data.synthetic import SyntheticDeformation, SyntheticFlowDataModule, SyntheticPairs, sample_folder


def read_lung_pair(folder, case: str = "copd1"):
    """(source, target, source_weights, target_weights) of ``folder/<case>_{source,target}.vtk``."""
    folder = Path(folder)
    clouds = []
    for side in ("source", "target"):
        points, data = read_points(folder / f"{case}_{side}.vtk")
        weights = data.get("weights", np.ones(len(points), dtype=np.float32)).reshape(-1)
        clouds.append((points, weights.astype(np.float32)))
    (source, source_weights), (target, target_weights) = clouds
    return source, target, source_weights, target_weights


class LungFlowDataModule(SyntheticFlowDataModule):
    """Synthetic deformations of the inspiration vessel tree of a DirLab case.

    Training draws fresh deformations every epoch; validation and test use ``eval_length``
    deformations fixed by ``eval_seed``, so that the recovery error (in mm) is comparable across
    epochs. ``data_dir`` defaults to the copd1 sample shipped in ``gdl/samples/lung``.

    With ``breathing`` (a :class:`BreathingDeformation` awaiting ``num_points``: a config node with
    ``_partial_: true``), the pairs are realistic breathing deformations of the expiration tree
    (expansion, diaphragm, resampling, missing branches) instead of the generic ``deformation`` of
    the inspiration tree. The other parameters are those of :class:`SyntheticFlowDataModule`.

    With ``landmarks_dir`` (holding ``<case>_300_eBH_xyz_r1.txt`` and ``<case>_300_iBH_xyz_r1.txt``)
    and the ``landmarks_origin_mm`` of the clouds' frame, validation also registers the real
    expiration tree (``num_points`` of it) to the inspiration tree and reports the landmark TRE.
    """

    def __init__(
        self,
        data_dir=None,
        case: str = "copd1",
        eval_length: int = 4,
        eval_seed: int = 0,
        landmarks_dir=None,
        landmarks_origin_mm=(0.0, 0.0, 0.0),
        breathing: Callable[..., BreathingDeformation] | None = None,
        mm_per_unit: float = 100.0,
        num_points: int = 2048,
        deformation: Callable[..., SyntheticDeformation] | None = None,
        train_length: int = 16,
        batch_size: int = 2,
        num_workers: int = 0,
    ):
        super().__init__(num_points, deformation, train_length, batch_size, num_workers, mm_per_unit)
        self.breathing = None if breathing is None else breathing(num_points=num_points)
        self.data_dir = Path(data_dir) if data_dir is not None else sample_folder("lung")
        self.case = case
        self.eval_length, self.eval_seed = eval_length, eval_seed
        self.landmarks_dir = None if landmarks_dir is None else Path(landmarks_dir)
        self.landmarks_origin_mm = np.asarray(landmarks_origin_mm, dtype=np.float64)
        if self.landmarks_origin_mm.shape != (3,):
            raise ValueError(f"landmarks_origin_mm must hold 3 numbers (mm), got {landmarks_origin_mm!r}")
        self._pair = None

    def _trees(self):
        """(expiration, inspiration) trees of the case, read once."""
        if self._pair is None:
            source, target, source_weights, _ = read_lung_pair(self.data_dir, self.case)
            self._pair = source, target
            if self.breathing is not None:  # thin vessels of the expiration tree go missing
                import functools

                import torch

                self.deformation = functools.partial(self.breathing, weights=torch.from_numpy(source_weights))
        return self._pair

    def _deformed_tree(self):
        """The tree the synthetic pairs deform: expiration with ``breathing``, else inspiration."""
        return self._trees()[0 if self.breathing is not None else 1]

    def training_clouds(self):
        return [self._deformed_tree()]

    def evaluation_pairs(self):
        import torch

        pairs = SyntheticPairs([torch.from_numpy(self._deformed_tree())], self.deformation, self.eval_length, seed=self.eval_seed)
        return [(pair.source, pair.target, pair.flow) for pair in pairs]

    def landmarks_in_units(self, phase: str) -> np.ndarray:
        """The (300, 3) landmarks of ``phase`` "eBH" (expiration) or "iBH" (inspiration), in cloud units."""
        voxels = read_landmarks(self.landmarks_dir / f"{self.case}_300_{phase}_xyz_r1.txt")
        return (voxels_to_mm(voxels, voxel_spacing(self.case)) - self.landmarks_origin_mm) / self.mm_per_unit

    def landmark_pairs(self):
        if self.landmarks_dir is None:
            return []
        source, target = self._trees()
        rng = np.random.default_rng(self.eval_seed)
        source = source[rng.permutation(len(source))[: self.num_points]]
        target = target[rng.permutation(len(target))[: self.num_points]]
        expiration, inspiration = self.landmarks_in_units("eBH"), self.landmarks_in_units("iBH")
        if expiration.shape != inspiration.shape:
            raise ValueError(f"{self.landmarks_dir}: eBH and iBH landmark files hold {len(expiration)} and {len(inspiration)} rows")
        return [(source, target, expiration, inspiration)]


class BreathingDeformation:
    """``pair = breathing(points, generator)``: a realistic synthetic expiration -> inspiration pair
    built from one vessel tree P (a :class:`gdl.data.synthetic.SyntheticPair`, plus held-out points).

    With c the centroid, h_i in [0, 1] the depth below the apex along ``axis`` (0 at the apex, 1 at
    the diaphragm) and e the unit vector along ``axis`` pointing to the apex, the displacement before
    rescaling is

        u(x) = (S - I)(x - c) - d h(x)^2 e + R x - x + w(x)

    S = diag(1 + s_k) an anisotropic expansion (s_k uniform in [``expansion``/2, ``expansion``]),
    d the extra diaphragm descent (uniform in [``diaphragm``/2, ``diaphragm``]), so that the motion
    grows toward the diaphragm. ``apex`` says which end of ``axis`` holds the apex: ``"max"`` in a
    frame whose axis points to the head (RAS, LPS), ``"min"`` in DirLab's voxel order, where slices
    are numbered from the head down (the copd1 trees: their tuning landmarks move by -4 mm along z
    on average in the lowest fifth of z, by +14 mm in the highest). R a rotation by at
    most ``rotation_deg``, and w a smooth random Gaussian-kernel field at ``scales`` (largest value
    ``amplitudes``). u is then scaled so that its mean norm on P is uniform in
    [``mean_displacement``]; phi(x) = x + u(x).

    Resampling: source and target keep independent random fractions ``keep`` of P; they lose
    ``missing`` = (source, target) random groups of branches: within a radius drawn in
    ``missing_radius`` of a random point, the points of the thinner vessels (``weights`` below
    their median, all points when no weights are given) are dropped, as an expiration scan shows
    fewer small vessels than an inspiration one; the target is phi of its points plus Gaussian
    ``noise``. The source points
    removed as missing branches are returned as held-out ``query`` points with their true
    displacement ``query_flow`` (for checking the warp of points the registration never saw);
    ``source_index`` / ``target_index`` give the rows of P kept on each side (for point data).
    """

    def __init__(
        self,
        mean_displacement=(0.2, 0.3),
        expansion=(0.04, 0.15, 0.08),
        diaphragm: float = 0.1,
        axis: int = 2,
        apex: str = "max",
        rotation_deg: float = 3.0,
        scales=(0.4, 0.15),
        amplitudes=(0.06, 0.02),
        num_controls: int = 64,
        keep: float = 0.8,
        missing=(20, 3),
        missing_radius=(0.15, 0.3),
        noise: float = 0.005,
        num_points: int | None = None,
    ):
        from gdl.data.synthetic import SyntheticDeformation

        low, high = (float(v) for v in mean_displacement)
        if not 0 < low <= high:
            raise ValueError(f"mean_displacement must be a range 0 < low <= high, got {mean_displacement!r}")
        if len(expansion) != 3:
            raise ValueError(f"expansion must hold 3 numbers (one per axis), got {expansion!r}")
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
        if apex not in ("max", "min"):
            raise ValueError(f'apex must be "max" or "min" (the end of axis {axis} that holds the lung apex), got {apex!r}')
        self.mean_displacement = (low, high)
        self.expansion = torch_tensor(expansion)
        self.diaphragm, self.axis, self.apex, self.rotation = float(diaphragm), axis, apex, math.radians(rotation_deg)
        self.random_field = SyntheticDeformation(scales=scales, amplitudes=amplitudes, num_controls=num_controls)
        if len(missing) != 2:
            raise ValueError(f"missing must hold 2 counts (source, target), got {missing!r}")
        self.keep, self.missing, self.missing_radius = float(keep), tuple(int(m) for m in missing), tuple(float(r) for r in missing_radius)
        self.noise, self.num_points = float(noise), num_points

    def field(self, points, generator):
        """The displacement u, as a function of (N, 3) points (class docstring)."""
        import torch

        from gdl.data.synthetic import random_rotation

        def uniform(low, high, shape=()):
            return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)

        stretch = uniform(0.5, 1.0, (3,)) * self.expansion
        descent = float(uniform(0.5, 1.0)) * self.diaphragm
        rotation = random_rotation(self.rotation, generator, points.dtype).to(points)
        wiggle = self.random_field.displacement_field(points, generator)
        centre = points.mean(0)
        sign = 1.0 if self.apex == "max" else -1.0
        heights = sign * points[:, self.axis]  # grows toward the apex
        top, bottom = heights.max(), heights.min()
        apex = torch.zeros(3, dtype=points.dtype, device=points.device)
        apex[self.axis] = sign

        def raw(x):
            depth = ((top - sign * x[:, self.axis]) / (top - bottom)).clamp(0, 1)
            expansion = (x - centre) * stretch.to(x)
            return expansion - descent * depth[:, None] ** 2 * apex + (x - centre) @ rotation.T + centre - x + wiggle(x)

        target_mean = float(uniform(*self.mean_displacement))
        factor = target_mean / float(raw(points).norm(dim=1).mean())
        return lambda x: factor * raw(x)

    def __call__(self, points, generator, weights=None):
        import torch

        from gdl.data.synthetic import SyntheticPair
        from gdl.ops.core.checks import check_points

        check_points("points", points, dim=3)
        thin = torch.ones(points.shape[0], dtype=torch.bool) if weights is None else torch.as_tensor(weights) < torch.as_tensor(weights).median()
        field = self.field(points, generator)
        source_index, query_index = self._resample(points, thin, self.missing[0], generator)
        target_index, _ = self._resample(points, thin, self.missing[1], generator)
        source, query, target_points = points[source_index], points[query_index], points[target_index]
        target = target_points + field(target_points) + self.noise * torch.randn(target_points.shape, generator=generator).to(points)
        pair = SyntheticPair(source, target, field(source))
        pair.query, pair.query_flow = query, field(query)
        pair.source_index, pair.target_index = source_index, target_index
        return pair

    def _resample(self, points, thin, missing, generator):
        """Indices of (the kept points, the points of the missing branches) of one random resampling."""
        import torch

        n = points.shape[0]
        size = round(self.keep * n) if self.num_points is None else min(self.num_points, n)
        index = torch.randperm(n, generator=generator)[:size].sort().values
        kept = points[index]
        removed = torch.zeros(kept.shape[0], dtype=torch.bool, device=kept.device)
        for _ in range(missing):
            centre = kept[torch.randint(kept.shape[0], (), generator=generator)]
            low, high = self.missing_radius
            radius = low + (high - low) * float(torch.rand((), generator=generator))
            removed |= ((kept - centre).norm(dim=1) < radius) & thin[index].to(kept.device)
        return index[~removed], index[removed]


def torch_tensor(values):
    import torch

    return torch.tensor([float(v) for v in values], dtype=torch.float64)
