"""Landmark TRE of the lung_flow validation, on landmark files written from known points."""

import lightning
import numpy as np
import torch

from gdl.data.dirlab import voxel_spacing
from gdl.data.lung import LungFlowDataModule, read_lung_pair
from gdl.data.synthetic import sample_folder
from gdl.models.registration.flow import FlowPyramid
from gdl.tasks.flow import FlowTask

ORIGIN_MM = np.array([160.0, 160.0, 151.0])  # the centre of the copd1 volume
SHIFT = np.array([0.03, -0.04, 0.0])  # units: 3 mm, -4 mm


class ConstantFlow(torch.nn.Module):
    def __init__(self, shift):
        super().__init__()
        self.shift = torch.as_tensor(shift, dtype=torch.float32)

    def forward(self, source, target, batch_source=None, batch_target=None):
        return self.shift.expand_as(source)


def _write_landmarks(folder, points_units):
    spacing = voxel_spacing("copd1")
    for phase, points in (("eBH", points_units), ("iBH", points_units + SHIFT)):
        voxels = (points * 100 + ORIGIN_MM) / spacing + 1
        np.savetxt(folder / f"copd1_300_{phase}_xyz_r1.txt", voxels, fmt="%.6f", delimiter="\t")


def _datamodule(tmp_path):
    tree = read_lung_pair(sample_folder("lung"))[0]
    landmarks = tree[np.random.default_rng(0).permutation(len(tree))[:30]].astype(np.float64)
    _write_landmarks(tmp_path, landmarks)
    datamodule = LungFlowDataModule(
        landmarks_dir=tmp_path, landmarks_origin_mm=ORIGIN_MM, num_points=256, train_length=1, eval_length=1
    )
    return datamodule, landmarks


def test_landmarks_map_back_to_cloud_units(tmp_path):
    datamodule, landmarks = _datamodule(tmp_path)
    np.testing.assert_allclose(datamodule.landmarks_in_units("eBH"), landmarks, atol=1e-6)
    np.testing.assert_allclose(datamodule.landmarks_in_units("iBH"), landmarks + SHIFT, atol=1e-6)


def test_tre_is_zero_for_the_true_shift_and_its_length_for_none(tmp_path):
    datamodule, _ = _datamodule(tmp_path)
    datamodule.setup()
    batch = next(iter(datamodule.val_dataloader()[1]))
    exact = FlowTask(ConstantFlow(SHIFT), metric="recovery_mm", mm_per_unit=100.0)
    assert exact.landmark_error_mm(batch) < 1e-3
    still = FlowTask(ConstantFlow([0.0, 0.0, 0.0]), metric="recovery_mm", mm_per_unit=100.0)
    assert abs(still.landmark_error_mm(batch) - 5.0) < 1e-3  # |(3, -4, 0)| mm


def test_validation_logs_tre_beside_the_synthetic_recovery(tmp_path):
    datamodule, _ = _datamodule(tmp_path)
    model = FlowPyramid(channels=(8, 16), k=8, hidden_units=4, backend="torch")
    task = FlowTask(model, metric="recovery_mm", mm_per_unit=100.0)
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = {}
    for per_loader in trainer.validate(task, datamodule=datamodule, verbose=False):
        metrics.update(per_loader)
    assert {"val/tre_mm", "val/recovery_mm", "val/loss"} <= set(metrics), metrics
    assert np.isfinite(metrics["val/tre_mm"])
