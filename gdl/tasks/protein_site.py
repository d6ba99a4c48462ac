"""Interaction-site prediction (MaSIF-site) with dMaSIF: which surface points bind a partner."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from gdl.tasks.protein import ProteinTask, log_surface


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


class ProteinSiteTask(ProteinTask):
    """Trains a site-head :class:`DMaSIF` on both sides of each complex with a balanced BCE loss.

    Metrics ``<stage>/roc_auc`` (per-protein median) and ``<stage>/roc_auc_pooled`` over every
    surface point of the split.
    """

    head = "site"

    def loss(self, sides, logits):
        return balanced_bce(torch.cat(logits), torch.cat(sides.labels))

    def reset(self):
        self._outputs: list[tuple[np.ndarray, np.ndarray]] = []

    def collect(self, sides, logits, batch):
        for surface, scores, labels in zip(sides.surfaces, logits, sides.labels):
            for b in range(batch.num_graphs):
                mine = surface.batch == b
                self._outputs.append((scores[mine].detach().cpu().numpy(), labels[mine].cpu().numpy()))

    def metrics(self):
        scores, labels = zip(*self._outputs) if self._outputs else ((), ())
        return site_roc_auc(list(scores), list(labels))

    def log_media(self, stage, sides, logits):
        log_surface(self, f"{stage}/site_scores", sides.surfaces[0], torch.sigmoid(logits[0]))
