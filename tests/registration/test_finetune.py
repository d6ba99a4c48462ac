"""A synthetic smooth deformation of a real surface is recovered by robust-OT fine-tuning."""

import pytest
import torch

from gdl.data.pointclouds import read_points
from gdl.data.synthetic import SyntheticDeformation
from gdl.models.registration.finetune import Finetune


@pytest.fixture(scope="module")
def bunny(shared_data):
    points, _ = read_points(shared_data / "shapes" / "bunny_30k.ply")
    points = torch.from_numpy(points).double()
    return (points - points.mean(0)) / points.std(0).max()  # unit scale


@pytest.mark.slow
def test_recovers_a_smooth_deformation_to_15_percent_of_its_size(bunny, generator):
    # The target is the same 1500 points, deformed and shuffled: their spacing is well below the motion.
    # Amplitude 0.25 keeps the deformation close to an OT map; at 0.5 some random fields rotate enough
    # that OT matches differ from the true motion (error 20-40 % of it for 5 seeds in 10).
    cloud = bunny[torch.randperm(len(bunny), generator=generator)[:1500]]
    deformation = SyntheticDeformation(scales=(1.0,), amplitudes=(0.25,), num_controls=32)
    pair = deformation(cloud, generator)
    source, flow = pair.source, pair.flow
    finetune = Finetune(blurs=(0.1, 0.03), reach_factor=None, smoothing=(0.1, 0.05), iterations=2, backend="torch")
    displacement = finetune(source, pair.target)
    before = flow.norm(dim=1).mean()
    after = (displacement - flow).norm(dim=1).mean()
    print(f"mean displacement {before:.4f}, mean error after fine-tuning {after:.4f}")
    assert after < 0.15 * before  # 3 to 7 % over 10 seeds


def test_initial_displacement_is_refined_not_replaced(bunny, generator):
    source = bunny[:400]
    shift = torch.tensor([0.05, -0.02, 0.01], dtype=torch.float64)
    finetune = Finetune(blurs=(0.05,), reach_factor=None, smoothing=0.2, backend="torch")
    displacement = finetune(source, source + shift, initial=shift.expand_as(source).clone())
    assert (displacement - shift).norm(dim=1).max() < 0.01


def test_per_scale_parameters_are_checked():
    finetune = Finetune(blurs=(0.1, 0.05), reach_factor=(2.0, None), smoothing=(0.3, 0.1), backend="torch")
    assert [m.reach for m in finetune.matchings] == [0.2, None]
    assert [s.sigmas for s in finetune.smoothers] == [(0.3,), (0.1,)]
    with pytest.raises(ValueError, match="smoothing must be one number or 2 numbers"):
        Finetune(blurs=(0.1, 0.05), smoothing=(0.3, 0.2, 0.1))
    with pytest.raises(ValueError, match="smoothing"):
        Finetune(blurs=(0.1,), smoothing=-1.0)
