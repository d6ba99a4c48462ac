"""Warping points other than the fitted ones, transport masses, and the registration configs."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from gdl.data.pointclouds import read_points
from gdl.data.synthetic import SyntheticDeformation, random_rotation
from gdl.models.registration.finetune import Finetune
from gdl.models.registration.flow import FlowPyramid, FlowStep
from gdl.models.registration.lddmm import LDDMMRegistration
from gdl.models.registration.matching import random_subset, subset_pair
from gdl.models.registration.pipeline import RegistrationPipeline
from gdl.models.registration.prealign import Prealign
from gdl.models.registration import configs
from gdl.models.registration.configs import build_pipeline, registration_config, sweep
from tests.registration.toy_steps import Shift


@pytest.fixture(scope="module")
def bunny(shared_data):
    points, _ = read_points(shared_data / "shapes" / "bunny_30k.ply")
    points = torch.from_numpy(points).double()
    return (points - points.mean(0)) / points.std(0).max()  # unit scale


def random_affine(generator, size=0.1):
    linear = torch.eye(3, dtype=torch.float64) + size * torch.randn(3, 3, generator=generator, dtype=torch.float64)
    return linear, torch.randn(3, generator=generator, dtype=torch.float64) * size


def test_the_warp_of_the_fitted_points_is_the_displacement(bunny, generator):
    cloud = bunny[torch.randperm(len(bunny), generator=generator)[:600]]
    pair = SyntheticDeformation(scales=(1.0,), amplitudes=(0.15,), num_controls=16, rotation_deg=10, translation=0.2)(cloud, generator)
    pipeline = RegistrationPipeline(
        prealign=Prealign("affine", blurs=(0.3, 0.1), reach_factor=None, num_points=None, backend="torch"),
        finetune=Finetune(blurs=(0.1,), reach_factor=3.0, smoothing=0.2, keep_sigma=0.2, background="rigid",
                          rigid_scales=(0.05,), rigid_layers=2, backend="torch"),
    )
    result = pipeline.register(pair.source, pair.target)
    assert result.steps == ["prealign", "finetune"]
    torch.testing.assert_close(result.warp(pair.source), pair.source + result.displacement, atol=1e-9, rtol=0)
    torch.testing.assert_close(pipeline(pair.source, pair.target), result.displacement, atol=1e-9, rtol=0)


def test_prealign_warps_any_point_exactly_by_rigid_and_affine_motions(bunny, generator):
    source = bunny[torch.randperm(len(bunny), generator=generator)[:800]]
    queries = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    rotation = random_rotation(math.radians(20), generator, torch.float64)
    for mode, (linear, shift) in (("rigid", (rotation, torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64))),
                                  ("affine", random_affine(generator))):
        target = (source @ linear.T + shift)[torch.randperm(len(source), generator=generator)]
        step = Prealign(mode, blurs=(0.3, 0.03, 0.01), reach_factor=None, iterations=3, num_points=None, backend="torch")
        result = RegistrationPipeline(prealign=step).register(source, target)
        torch.testing.assert_close(result.warp(queries), queries @ linear.T + shift, atol=2e-3, rtol=0)


def test_finetune_recovers_a_smooth_field_at_held_out_points(bunny, generator):
    # The target is the fitted points deformed and shuffled; 500 other points of the surface are
    # never seen by the fit. (Two independent samplings as sparse as the motion is large leave OT
    # matches with errors of the order of the point spacing, whatever the smoothing.)
    cloud = bunny[torch.randperm(len(bunny), generator=generator)[:2000]]
    field = SyntheticDeformation(scales=(1.0,), amplitudes=(0.2,), num_controls=32).displacement_field(cloud, generator)
    fitted, held_out = cloud[:1500], cloud[1500:]
    target = fitted[torch.randperm(1500, generator=generator)]
    finetune = Finetune(blurs=(0.1, 0.03), reach_factor=None, smoothing=(0.1, 0.05), iterations=2, backend="torch")
    result = RegistrationPipeline(finetune=finetune).register(fitted, target + field(target))
    error = (result.displacement_at(held_out) - field(held_out)).norm(dim=1).mean()
    motion = field(held_out).norm(dim=1).mean()
    print(f"held-out points: mean motion {motion:.4f}, mean error {error:.4f}")
    assert error < 0.2 * motion  # about 10 %


@pytest.mark.parametrize("options", [{}, {"debias": True}])
def test_finetune_on_a_subset_warps_every_source_point_by_its_field(bunny, generator, options):
    source = bunny[torch.randperm(len(bunny), generator=generator)[:800]]
    target = source + torch.tensor([0.05, 0.0, -0.03], dtype=torch.float64)
    finetune = Finetune(blurs=(0.1,), reach_factor=3.0, smoothing=0.2, num_points=300, backend="torch", **options)
    fitted = finetune.fit(source, target)
    torch.testing.assert_close(fitted.displacement, fitted.at(source), atol=1e-12, rtol=0)
    # 300 of 800 points on each side: the fit saw other points than most of those it warps
    assert fitted.passes[0].anchors.shape == (300, 3)


def test_lddmm_and_flow_warp_the_fitted_points_as_their_displacement(generator):
    source = torch.randn(200, 3, generator=generator)
    target = source + torch.tensor([0.2, 0.0, -0.1])
    lddmm = LDDMMRegistration(sigma=1.0, steps=3, num_controls=20, blur=0.1, iterations=3, lr=0.1, backend="torch")
    model = FlowPyramid(channels=(8, 16), k=8, hidden_units=4, backend="torch")
    torch.nn.init.normal_(model.heads[0].weight, std=0.1)
    for step in (lddmm, FlowStep(model)):
        fitted = step.fit(source, target)
        torch.testing.assert_close(fitted.at(source), fitted.displacement, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(FlowStep(model).fit(source, target).displacement, model(source, target), atol=1e-6, rtol=0)
        subset = FlowStep(model, num_points=100).fit(source, target)
    assert subset.displacement.shape == source.shape


def test_a_heavy_subset_pulls_the_fit_and_masses_are_normalised_per_cloud(generator):
    # Two blobs move by different translations: uniform masses fit their average, a 10 times
    # heavier first blob pulls the rigid fit towards its own motion.
    blob = 0.1 * torch.randn(300, 3, generator=generator, dtype=torch.float64)
    offset = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    source = torch.cat([blob - offset, blob + offset])
    moves = torch.tensor([[0.0, 0.1, 0.0], [0.0, -0.1, 0.0]], dtype=torch.float64)
    target = torch.cat([blob - offset + moves[0], blob + offset + moves[1]])
    masses = torch.cat([torch.full((300,), 10.0), torch.ones(300)]).double()
    step = Prealign("rigid", blurs=(0.5, 0.05), reach_factor=None, num_points=None, backend="torch")
    uniform = step(source, target).mean(0)
    heavy = step(source, target, weights_source=masses, weights_target=masses)[:300].mean(0)
    assert uniform.abs().max() < 0.01
    assert (heavy - moves[0]).norm() < 0.3 * moves[0].norm()
    torch.testing.assert_close(step(source, target, weights_source=7 * masses, weights_target=masses / 3)[:300].mean(0), heavy)
    with pytest.raises(ValueError, match="weights_source must have shape"):
        step(source, target, weights_source=masses[:10])
    with pytest.raises(ValueError, match="weights_target must be finite and non-negative"):
        step(source, target, weights_target=-masses)


def test_registration_configs_compose_override_and_sweep():
    kitti = registration_config("kitti")
    assert kitti.finetune.rigid_layers == 2 and list(kitti.prealign.blurs) == [2.0, 1.0, 0.5, 0.25, 0.1, 0.05]
    lung = registration_config("kitti", ["registration=lung", "registration.finetune.blurs=[0.04,0.02]", "prealign.iterations=3"])
    assert list(lung.finetune.blurs) == [0.04, 0.02] and lung.prealign.mode == "affine" and lung.prealign.iterations == 3
    pipeline = build_pipeline(["prealign"], "lung", overrides=["prealign.num_points=100"])
    assert pipeline.steps == ["prealign"] and pipeline.prealign.num_points == 100
    assert isinstance(build_pipeline(["finetune"], "lung", finetune_model="lddmm").finetune, LDDMMRegistration)
    assert sweep(["finetune.smoothing=0.1,0.2", "prealign.iterations=2"]) == [
        ["finetune.smoothing=0.1", "prealign.iterations=2"], ["finetune.smoothing=0.2", "prealign.iterations=2"]
    ]
    with pytest.raises(ValueError, match="lung preset: Could not override 'finetune.smoothness'"):
        registration_config("lung", ["finetune.smoothness=0.1"])
    with pytest.raises(ValueError, match="preset must be one of"):
        registration_config("liver")
    with pytest.raises(ValueError, match="lung preset: smoothing must be"):
        build_pipeline(["finetune"], "lung", overrides=["finetune.smoothing=-1"])
    with pytest.raises(ValueError, match="checkpoint"):
        build_pipeline(["prealign", "flow"], "lung")


def test_the_backend_of_a_step_is_the_one_asked_for():
    pipeline = build_pipeline(["prealign", "finetune"], "kitti", overrides=["registration.finetune.backend=torch"])
    assert pipeline.finetune.nearest.backend == "torch" and pipeline.finetune.smoothers[0].backend == "torch"
    assert pipeline.prealign.procrustes.backend == "auto"
    lddmm = build_pipeline(["finetune"], "lung", finetune_model="lddmm", overrides=["finetune.backend=torch"])
    assert lddmm.finetune.sampler.backend == "torch"


def test_the_presets_are_the_files_of_configs_registration():
    repository = Path(__file__).resolve().parents[2]
    assert configs.PRESETS.resolve() == (repository / "configs" / "registration").resolve()
    assert configs.presets() == ["kitti", "kitti_lddmm", "lung", "lung_lddmm"]


def test_an_lddmm_preset_follows_its_base_preset(tmp_path, monkeypatch):
    presets = tmp_path / "registration"
    shutil.copytree(configs.PRESETS, presets)
    kitti = (presets / "kitti.yaml").read_text()
    assert kitti.count("  iterations: 3\n") == 1 and kitti.count("  num_points: null\n") == 1
    kitti = kitti.replace("  iterations: 3\n", "  iterations: 7\n").replace("  num_points: null\n", "  num_points: 99\n")
    (presets / "kitti.yaml").write_text(kitti)
    monkeypatch.setattr(configs, "PRESETS", presets)
    lddmm = registration_config("kitti_lddmm")
    assert lddmm.prealign.iterations == 7 and lddmm.flow.num_points == 99
    assert lddmm.finetune._target_.endswith("LDDMMRegistration") and "smoothing" not in lddmm.finetune
    assert registration_config("kitti").finetune._target_.endswith("Finetune")


def test_the_pipeline_takes_registration_steps_only(generator):
    with pytest.raises(TypeError, match="finetune must be a RegistrationStep"):
        RegistrationPipeline(prealign=Shift(), finetune=torch.nn.Linear(3, 3))
    x = torch.randn(20, 3, generator=generator)
    result = RegistrationPipeline(prealign=Shift()).register(x, x)
    torch.testing.assert_close(result.displacement, torch.full_like(x, 0.5))
    torch.testing.assert_close(result.warp(x[:4]), x[:4] + 0.5)
    with pytest.raises(ValueError, match="points"):
        result.warp(torch.zeros(4, 2))


def test_subset_seeds_draw_independent_source_and_target_subsets():
    source, target = subset_pair(None, 50, None, 40, 10, seed=3)
    torch.testing.assert_close(source, random_subset(None, 50, 10, seed=3))
    torch.testing.assert_close(target, random_subset(None, 40, 10, seed=4))
    assert not torch.equal(source, subset_pair(None, 50, None, 40, 10, seed=5)[0])
    with pytest.raises(ValueError, match="subset_seed must be a non-negative integer"):
        Prealign(subset_seed=-1)
    with pytest.raises(ValueError, match="subset_seed"):
        build_pipeline(["finetune"], "lung", overrides=["finetune.subset_seed=0.5"])
