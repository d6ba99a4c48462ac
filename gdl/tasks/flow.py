"""Scene-flow training: a flow model learns synthetic deformations; validation on fixed pairs.

Loss: sum_l w_l mean_i |u_l(x_i) - u*_l(x_i)|  over the pyramid levels l returned by
``model.forward_levels`` (finest first; missing weights count as the last one given).
Validation and test log ``loss`` and either the KITTI scene-flow metrics (``metric="scene_flow"``:
epe3d, acc3ds, acc3dr, outliers, in metres) or the synthetic-recovery error in millimetres
(``metric="recovery_mm"``: mean |u - u*| times ``mm_per_unit``). Landmark pairs (a second
validation loader, see ``SyntheticFlowDataModule.landmark_pairs``) log ``val/tre_mm``: the flow u
predicted at the source points is carried to the source landmarks l by Gaussian Nadaraya-Watson
regression at scale ``landmark_sigma`` (units), and TRE = mean |l + u(l) - l'| times ``mm_per_unit``.

:func:`load_flow_model` rebuilds the trained network of a ``FlowTask`` checkpoint, for the flow step
of a registration.
"""

from __future__ import annotations

from pathlib import Path

import lightning
import torch

import gdl.ops
from gdl.models.registration.flow import FlowPyramid
from gdl.models.registration.metrics import scene_flow_metrics
from gdl.ops.core.checks import check_choice
from gdl.tasks.checkpoint_task import class_path, load_task_checkpoint
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


def load_flow_model(checkpoint, **model_options) -> torch.nn.Module:
    """The flow model of a ``FlowTask`` checkpoint, in eval mode.

    The checkpoint is read by :func:`~gdl.tasks.checkpoint_task.load_task_checkpoint` (a checkpoint
    of another task is refused in one line). The architecture comes from ``model_options``
    (FlowPyramid arguments) when given, else from the settings the checkpoint records, else from the
    Hydra config of its run (``<run>/.hydra/config.yaml`` beside ``<run>/checkpoints/``, for
    checkpoints that record none).
    """
    if checkpoint is None:
        raise ValueError("checkpoint: expected a FlowTask checkpoint file, got None")
    checkpoint = Path(checkpoint)
    content = load_task_checkpoint(checkpoint, class_path(FlowTask), "FlowTask")
    state = {k[len("model."):]: v for k, v in content["state_dict"].items() if k.startswith("model.")}
    if not state:
        raise ValueError(f"{checkpoint}: holds no model.* weights: not a FlowTask checkpoint")
    run_config = checkpoint.resolve().parent.parent / ".hydra" / "config.yaml"
    if model_options:
        model, source = FlowPyramid(**model_options), "the given model options"
    elif MODEL_CONFIG_KEY in content:
        model, source = FlowPyramid(**content[MODEL_CONFIG_KEY]), "the settings it records"
    elif run_config.is_file():
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        model, source = instantiate(OmegaConf.load(run_config).model), str(run_config)
    else:
        model, source = FlowPyramid(), "FlowPyramid's defaults"
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise ValueError(
            f"{checkpoint}: its weights do not fit the network built from {source} ({first}); "
            "keep the checkpoint in its run folder (beside .hydra/) or give the model options of its training"
        ) from None
    return model.eval()
