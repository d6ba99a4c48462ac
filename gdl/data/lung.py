"""DirLab COPD lung vessel trees: the VTK pair of a case and its synthetic-recovery DataModule.

A case folder holds ``<case>_source.vtk`` (expiration) and ``<case>_target.vtk`` (inspiration),
POLYDATA point sets with per-point ``weights``, in normalised units (1 unit = 100 mm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    """

    def __init__(self, data_dir=None, case: str = "copd1", eval_length: int = 4, eval_seed: int = 0, **options):
        super().__init__(**options)
        self.data_dir = Path(data_dir) if data_dir is not None else sample_folder("lung")
        self.case = case
        self.eval_length, self.eval_seed = eval_length, eval_seed
        self._tree = None

    def _inspiration_tree(self):
        if self._tree is None:
            self._tree = read_lung_pair(self.data_dir, self.case)[1]
        return self._tree

    def training_clouds(self):
        return [self._inspiration_tree()]

    def evaluation_pairs(self):
        import torch

        pairs = SyntheticPairs([torch.from_numpy(self._inspiration_tree())], self.deformation, self.eval_length, seed=self.eval_seed)
        return [(pair.source, pair.target, pair.flow) for pair in pairs]
