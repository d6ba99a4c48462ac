"""Scene-flow training: a flow model learns synthetic deformations; validation on fixed pairs.

Loss: sum_l w_l mean_i |u_l(x_i) - u*_l(x_i)|  over the pyramid levels l returned by
``model.forward_levels`` (finest first; missing weights count as the last one given).
Validation and test log ``loss`` and either the KITTI scene-flow metrics (``metric="scene_flow"``:
epe3d, acc3ds, acc3dr, outliers, in metres) or the synthetic-recovery error in millimetres
(``metric="recovery_mm"``: mean |u - u*| times ``mm_per_unit``). Landmark pairs (a second
validation loader, see ``SyntheticFlowDataModule.landmark_pairs``) log ``val/tre_mm``: the flow u
predicted at the source points is carried to the source landmarks l by Gaussian Nadaraya-Watson
regression at scale ``landmark_sigma`` (units), and TRE = mean |l + u(l) - l'| times ``mm_per_unit``.
"""

from __future__ import annotations

import lightning
import torch

import gdl.ops
from gdl.models.registration.metrics import scene_flow_metrics
from gdl.ops.core.checks import check_choice
from gdl.tasks.media import log_point_cloud

METRICS = ("scene_flow", "recovery_mm")
# checkpoint entry holding the FlowPyramid settings (``FlowPyramid.config``) of the trained network
MODEL_CONFIG_KEY = "flow_model_config"


class FlowTask(lightning.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        level_weights=(1.0, 0.8, 0.4, 0.2),
        metric: str = "scene_flow",
        mm_per_unit: float = 1000.0,
        landmark_sigma: float = 0.02,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.metric = check_choice("metric", metric, METRICS)
        self.level_weights = [float(w) for w in level_weights]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the network's settings, so the checkpoint alone rebuilds it (``MODEL_CONFIG_KEY``)."""
        if hasattr(self.model, "config"):
            checkpoint[MODEL_CONFIG_KEY] = dict(self.model.config)

    def forward(self, source, target, batch_source=None, batch_target=None):
        return self.model(source, target, batch_source, batch_target)

    def _loss(self, batch) -> torch.Tensor:
        levels = self.model.forward_levels(batch.source, batch.target, batch.source_batch, batch.target_batch)
        loss = 0.0
        for level, (index, flow) in enumerate(levels):
            weight = self.level_weights[min(level, len(self.level_weights) - 1)]
            loss = loss + weight * (flow - batch.flow[index]).norm(dim=1).mean()
        return loss, levels[0][1]

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def _evaluate(self, batch, batch_idx, stage: str):
        loss, flow = self._loss(batch)
        self.log(f"{stage}/loss", loss, batch_size=batch.num_graphs, prog_bar=True, add_dataloader_idx=False)
        for item in range(batch.num_graphs):
            rows = batch.source_batch == item
            if self.metric == "scene_flow":
                values = {k.lower(): v for k, v in scene_flow_metrics(flow[rows], batch.flow[rows]).items()}
            else:
                values = {"recovery_mm": float((flow[rows] - batch.flow[rows]).norm(dim=1).mean()) * self.hparams.mm_per_unit}
            for name, value in values.items():
                self.log(
                    f"{stage}/{name}", value, batch_size=1, prog_bar=name in ("epe3d", "recovery_mm"), add_dataloader_idx=False
                )
        if stage == "val" and batch_idx == 0:
            rows = batch.source_batch == 0
            error = (flow[rows] - batch.flow[rows]).norm(dim=1)
            log_point_cloud(self, "val/warped_source_error", batch.source[rows] + flow[rows], error)

    def landmark_error_mm(self, batch) -> float:
        """TRE of one landmark pair (module docstring), in mm."""
        flow = self.model(batch.source, batch.target)
        interpolate = gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=self.hparams.landmark_sigma)
        warped = batch.landmarks_source + interpolate(batch.landmarks_source, batch.source, flow)
        return float((warped - batch.landmarks_target).norm(dim=1).mean()) * self.hparams.mm_per_unit

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        if "landmarks_source" in batch:
            self.log("val/tre_mm", self.landmark_error_mm(batch), batch_size=1, prog_bar=True, add_dataloader_idx=False)
        else:
            self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, batch_idx, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
