"""Metric helpers of the protein tasks on known cases (tests/training runs both experiments end to end)."""


import numpy as np
import pytest
import torch

from gdl.tasks.protein import random_rotations
from gdl.tasks.protein_search import partner_ranks
from gdl.tasks.protein_site import balanced_bce, site_roc_auc


def test_site_roc_auc_per_protein_and_pooled():
    labels = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1, 1, 1])]
    scores = [np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.4, 0.3, 0.2, 0.1]), np.array([0.5, 0.5, 0.5])]
    metrics = site_roc_auc(scores, labels)
    assert metrics["roc_auc"] == pytest.approx(np.median([1.0, 0.25]))  # the one-class protein is skipped
    from sklearn.metrics import roc_auc_score

    assert metrics["roc_auc_pooled"] == pytest.approx(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


def test_balanced_bce_weighs_classes_equally(generator):
    labels = torch.zeros(1000, dtype=torch.bool)
    labels[:10] = True
    logits = torch.where(labels, 2.0, -2.0)
    loss = balanced_bce(logits, labels, generator)
    assert loss == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-2.0))), rel=1e-5)
    wrong = balanced_bce(-logits, labels, generator)
    assert wrong == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(2.0))), rel=1e-5)


def test_partner_ranks_find_the_matching_partner(generator):
    targets = [torch.randn(50, 64, generator=generator) for _ in range(4)]
    binders = [t[:5] * 10 for t in targets]  # each binder aligns with its own partner's points
    assert partner_ranks(binders, targets).tolist() == [1, 1, 1, 1]
    assert sorted(partner_ranks(binders, targets[1:] + targets[:1]).tolist()) != [1, 1, 1, 1]


def test_random_rotations_are_rotations(generator):
    r = random_rotations(16, torch.float64, generator=generator)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(r), torch.ones(16, dtype=torch.float64))
