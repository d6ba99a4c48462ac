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


def test_cosine_learning_rate_decays_to_zero_over_the_epochs():
    import lightning as L

    from gdl.models.dmasif import DMaSIF
    from gdl.tasks.protein_site import ProteinSiteTask

    model = DMaSIF(head="site", curvature_scales=[], resolution=3.0)
    constant = ProteinSiteTask(model, lr=0.01)
    assert isinstance(constant.configure_optimizers(), torch.optim.Adam)
    task = ProteinSiteTask(model, lr=0.01, lr_schedule="cosine")
    task.trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    setup = task.configure_optimizers()
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    np.testing.assert_allclose(rates, [0.01 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(5)], atol=1e-12)
    with pytest.raises(ValueError, match="lr_schedule"):
        ProteinSiteTask(model, lr_schedule="linear")


def test_the_share_of_patches_centred_on_the_interface_is_a_setting():
    from gdl.models.dmasif import DMaSIF
    from gdl.tasks.protein_search import ProteinSearchTask
    from gdl.tasks.protein_site import ProteinSiteTask

    site = DMaSIF(head="site", curvature_scales=[], resolution=3.0)
    search = DMaSIF(head="search", curvature_scales=[], resolution=3.0)
    assert ProteinSiteTask(site).hparams.crop_interface_fraction == 0.5
    assert ProteinSearchTask(search).hparams.crop_interface_fraction == 1.0
    assert ProteinSearchTask(search, crop_interface_fraction=0.25).hparams.crop_interface_fraction == 0.25
    with pytest.raises(ValueError, match="crop_interface_fraction must be a fraction"):
        ProteinSiteTask(site, crop_interface_fraction=1.5)
