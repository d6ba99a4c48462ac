"""Interaction-site prediction (MaSIF-site) with dMaSIF: which surface points bind a partner."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from gdl.models.dmasif import DMaSIF
from gdl.tasks.protein_common import complex_surfaces, log_surface, side_outputs


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
    """Binary cross-entropy on all points of the rarer class and as many random points of the other."""
    positive, negative = labels.nonzero()[:, 0], (~labels).nonzero()[:, 0]
    n = min(len(positive), len(negative))
    if n == 0:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    pick = lambda idx: idx[torch.randperm(len(idx), generator=generator, device=idx.device)[:n]]  # noqa: E731
    chosen = torch.cat([pick(positive), pick(negative)])
    return F.binary_cross_entropy_with_logits(logits[chosen], labels[chosen].to(logits.dtype))


def site_roc_auc(scores: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """ROC-AUC over all surface points: per-protein median (proteins with both classes) and pooled."""
    per_protein = [roc_auc_score(y, s) for s, y in zip(scores, labels) if 0 < y.sum() < len(y)]
    all_labels = np.concatenate(labels) if labels else np.zeros(0)
    pooled = (
        roc_auc_score(all_labels, np.concatenate(scores)) if 0 < all_labels.sum() < len(all_labels) else float("nan")
    )
    median = float(np.median(per_protein)) if per_protein else float("nan")
    return {"roc_auc": median, "roc_auc_pooled": float(pooled)}


class ProteinSiteTask(L.LightningModule):
    """Trains a site-head :class:`DMaSIF` on both sides of each complex with a balanced BCE loss.

    Labels: points within ``threshold`` angstroms of the partner's surface. Augmentation: a random
    rotation of each complex. Metrics ``<stage>/roc_auc`` (per-protein median) and
    ``<stage>/roc_auc_pooled`` over every surface point.
    """

    def __init__(
        self,
        model: DMaSIF,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        threshold: float = 1.0,
        random_rotation: bool = True,
    ):
        super().__init__()
        if getattr(model, "head_kind", None) != "site":
            raise ValueError("ProteinSiteTask needs a DMaSIF model with head='site'")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self._outputs: list[tuple[np.ndarray, np.ndarray]] = []

    def _shared_step(self, batch, rotate: bool):
        sides = complex_surfaces(self.model, batch, self.hparams.threshold, rotate)
        return sides, side_outputs(self.model, sides)

    def training_step(self, batch, batch_idx):
        sides, logits = self._shared_step(batch, self.hparams.random_rotation)
        loss = balanced_bce(torch.cat(logits), torch.cat(sides.labels))
        self.log("train/loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def _eval_step(self, batch, stage: str):
        sides, logits = self._shared_step(batch, False)
        loss = balanced_bce(torch.cat(logits), torch.cat(sides.labels))
        self.log(f"{stage}/loss", loss, batch_size=batch.num_graphs)
        for surface, scores, labels in zip(sides.surfaces, logits, sides.labels):
            for b in range(batch.num_graphs):
                mine = surface.batch == b
                self._outputs.append((scores[mine].detach().cpu().numpy(), labels[mine].cpu().numpy()))
        if not self._logged_media:
            self._logged_media = True
            log_surface(self, f"{stage}/site_scores", sides.surfaces[0], torch.sigmoid(logits[0]))
        return loss

    def on_validation_epoch_start(self):
        self._outputs, self._logged_media = [], False

    on_test_epoch_start = on_validation_epoch_start

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test")

    def _log_metrics(self, stage: str):
        scores, labels = zip(*self._outputs) if self._outputs else ((), ())
        for name, value in site_roc_auc(list(scores), list(labels)).items():
            self.log(f"{stage}/{name}", value)
        self._outputs = []

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
