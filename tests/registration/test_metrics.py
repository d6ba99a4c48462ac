import pytest
import torch

from gdl.data.dirlab import tre_mm
from gdl.models.registration.metrics import scene_flow_metrics


def test_scene_flow_metrics_on_a_hand_computed_example():
    gt = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 0.5], [10.0, 0, 0]])
    # errors: 0.04 (abs ok), 0.15 (rel 0.075), 0.2 (rel 0.4), 0.9 (rel 0.09)
    pred = gt + torch.tensor([[0.04, 0, 0], [0, 0.15, 0], [0, 0, 0.2], [0, 0.9, 0]])
    m = scene_flow_metrics(pred, gt)
    assert m["EPE3D"] == pytest.approx((0.04 + 0.15 + 0.2 + 0.9) / 4, rel=1e-5)
    assert m["Acc3DS"] == pytest.approx(1 / 4)  # only the first: 0.04 < 0.05
    assert m["Acc3DR"] == pytest.approx(3 / 4)  # 0.04 < 0.1; 0.075 < 0.1; 0.09 < 0.1
    assert m["Outliers"] == pytest.approx(2 / 4)  # 0.2 rel 0.4 > 0.1; 0.9 > 0.3


def test_scene_flow_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="flow_pred"):
        scene_flow_metrics(torch.zeros(3, 3), torch.ones(4, 3))


def test_tre_in_mm_uses_the_anisotropic_spacing():
    target = [[10.0, 10.0, 10.0], [1.0, 1.0, 1.0]]
    warped = [[11.0, 10.0, 10.0], [1.0, 1.0, 3.0]]
    spacing = [0.625, 0.625, 2.5]
    assert tre_mm(warped, target, spacing) == pytest.approx((0.625 + 5.0) / 2)
