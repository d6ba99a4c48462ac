"""Interaction search (MaSIF-search) with dMaSIF: matching surface points of binding partners."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

import gdl.ops
from gdl.tasks.protein import ProteinTask, log_surface


def pair_scores(sides, embeddings, generator=None):
    """Scores of true and random point pairs across the two sides of each complex.

    True pairs: every interface point i of one side with its nearest point j on the partner,
    scored <binder_i, target_j>; random pairs: the same i with a uniformly drawn point of the
    partner. Both directions (side 1 -> 2 and 2 -> 1). Returns (true_scores, random_scores).
    """
    nearest = gdl.ops.get("knn", k=1)
    true_scores, random_scores = [], []
    for s, o in ((0, 1), (1, 0)):
        mine, other = sides.surfaces[s], sides.surfaces[o]
        binder, target = embeddings[s][0], embeddings[o][1]
        interface = sides.labels[s].nonzero()[:, 0]
        if len(interface) == 0:
            continue
        _, j = nearest(mine.points[interface], other.points, mine.batch[interface], other.batch)
        true_scores.append((binder[interface] * target[j[:, 0]]).sum(-1))
        counts = torch.bincount(other.batch, minlength=int(mine.batch.max()) + 1)
        starts = torch.cumsum(counts, 0) - counts
        b = mine.batch[interface]
        draw = torch.rand(len(interface), generator=generator, device=b.device)
        j_random = starts[b] + (draw * counts[b]).long().clamp_max(counts[b] - 1)
        random_scores.append((binder[interface] * target[j_random]).sum(-1))
    empty = binder.new_zeros(0)
    return (torch.cat(true_scores) if true_scores else empty, torch.cat(random_scores) if random_scores else empty)


def contrastive_loss(true_scores: torch.Tensor, random_scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: true pairs scored as matches, random pairs as non-matches."""
    scores = torch.cat([true_scores, random_scores])
    targets = torch.cat([torch.ones_like(true_scores), torch.zeros_like(random_scores)])
    return F.binary_cross_entropy_with_logits(scores, targets)


def partner_ranks(binders: list[torch.Tensor], targets: list[torch.Tensor]) -> np.ndarray:
    """Rank (1 = best) of each complex's true partner among all partners of the set.

    The score of side 1 of complex c against side 2 of complex c' is the mean, over the interface
    points i of c, of max_j <binder_i, target_j(c')>.
    """
    scores = torch.stack(
        [torch.stack([(b @ t.T).max(1).values.mean() for t in targets]) for b in binders]
    )
    true = scores.diagonal()[:, None]
    return (1 + (scores > true).sum(1)).numpy()


class ProteinSearchTask(ProteinTask):
    """Trains a search-head :class:`DMaSIF` so that facing interface points of partners score high.

    Metrics: ``<stage>/roc_auc`` of true versus random point pairs, ``<stage>/partner_rank`` (mean
    rank of the true partner among all partners of the split, given side 1's interface points) and
    ``<stage>/top1`` (fraction ranked first). ``max_points`` caps the points kept per protein for ranks.
    """

    head = "search"

    def __init__(
        self,
        model,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        threshold: float = 3.0,
        random_rotation: bool = True,
        crop_radius: float | None = None,
        max_points: int = 2000,
        lr_schedule: str = "constant",
        crop_interface_fraction: float = 1.0,
    ):
        super().__init__(model, lr, weight_decay, threshold, random_rotation, crop_radius, lr_schedule, crop_interface_fraction)
        self.save_hyperparameters(ignore=["model"])

    def loss(self, sides, embeddings):
        true_scores, random_scores = pair_scores(sides, embeddings)
        if len(true_scores) == 0:  # no interface point in the batch: nothing to learn, a zero with gradients
            return sum(e.sum() for pair in embeddings for e in pair) * 0.0
        return contrastive_loss(true_scores, random_scores)

    def reset(self):
        self._pairs, self._binders, self._targets = [], [], []

    def collect(self, sides, embeddings, batch):
        self._pairs.append(tuple(s.detach().cpu() for s in pair_scores(sides, embeddings)))
        surface_1, surface_2 = sides.surfaces
        for b in range(batch.num_graphs):
            interface = (surface_1.batch == b) & sides.labels[0]
            self._binders.append(self._cap(embeddings[0][0][interface]))
            self._targets.append(self._cap(embeddings[1][1][surface_2.batch == b]))

    def _cap(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.randperm(len(x), device=x.device)[: self.hparams.max_points]
        return x[keep].detach().cpu()

    def metrics(self):
        out = {}
        true = torch.cat([t for t, _ in self._pairs]).numpy() if self._pairs else np.zeros(0)
        rand = torch.cat([r for _, r in self._pairs]).numpy() if self._pairs else np.zeros(0)
        if len(true) and len(rand):
            out["roc_auc"] = float(roc_auc_score(np.r_[np.ones(len(true)), np.zeros(len(rand))], np.r_[true, rand]))
        with_interface = [i for i, b in enumerate(self._binders) if len(b)]
        if with_interface:
            ranks = partner_ranks([self._binders[i] for i in with_interface], [self._targets[i] for i in with_interface])
            out["partner_rank"] = float(ranks.mean())
            out["top1"] = float((ranks == 1).mean())
        return out

    def log_media(self, stage, sides, embeddings):
        log_surface(self, f"{stage}/interface", sides.surfaces[0], sides.labels[0].float())
