"""DirLab COPD lung vessel trees: the VTK pair of a case and its synthetic-recovery DataModule.

A case folder holds ``<case>_source.vtk`` (expiration) and ``<case>_target.vtk`` (inspiration),
POLYDATA point sets with per-point ``weights``, in normalised units (1 unit = 100 mm). DirLab
landmarks (1-based voxel indices v, spacing s) map to these units as ((v - 1) s - origin) / 100 for
the ``origin`` (mm) of the clouds' frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gdl.data.dirlab import read_landmarks, voxel_spacing, voxels_to_mm
from gdl.data.pointclouds import read_points
from gdl.data.synthetic import SyntheticFlowDataModule, SyntheticPairs, sample_folder

MM_PER_UNIT = 100.0


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
        **options,
    ):
        super().__init__(**options)
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
            self._pair = read_lung_pair(self.data_dir, self.case)[:2]
        return self._pair

    def _inspiration_tree(self):
        return self._trees()[1]

    def training_clouds(self):
        return [self._inspiration_tree()]

    def evaluation_pairs(self):
        import torch

        pairs = SyntheticPairs([torch.from_numpy(self._inspiration_tree())], self.deformation, self.eval_length, seed=self.eval_seed)
        return [(pair.source, pair.target, pair.flow) for pair in pairs]

    def landmarks_in_units(self, phase: str) -> np.ndarray:
        """The (300, 3) landmarks of ``phase`` "eBH" (expiration) or "iBH" (inspiration), in cloud units."""
        voxels = read_landmarks(self.landmarks_dir / f"{self.case}_300_{phase}_xyz_r1.txt")
        return (voxels_to_mm(voxels, voxel_spacing(self.case)) - self.landmarks_origin_mm) / MM_PER_UNIT

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
