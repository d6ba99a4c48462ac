"""The deep flow pyramid, the pipeline on ragged batches, the task and the command line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gdl.cli.register import main as register_main
from gdl.models.registration.flow import FlowPyramid
from gdl.models.registration.configs import build_pipeline
from gdl.models.registration.pipeline import RegistrationPipeline
from tests.registration.toy_steps import Double, Shift

REPO = Path(__file__).resolve().parents[2]


def _ragged(generator, sizes=(300, 200)):
    x = torch.cat([torch.randn(n, 3, generator=generator) for n in sizes])
    batch = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    return x, batch


def test_flow_pyramid_levels_and_ragged_batches(generator):
    model = FlowPyramid(channels=(8, 16), k=8, hidden_units=4, backend="torch")
    torch.nn.init.normal_(model.heads[0].weight, std=0.1)
    x, bx = _ragged(generator)
    y, by = _ragged(generator, (250, 220))
    levels = model.forward_levels(x, y, bx, by)
    assert [flow.shape[0] for _, flow in levels] == [500, 250, 63]
    assert levels[0][1].shape == (500, 3)
    # each batch item is registered independently of the other
    alone = model(x[:300], y[:250])
    torch.testing.assert_close(levels[0][1][:300], alone, atol=1e-5, rtol=1e-5)
    levels[0][1].square().sum().backward()
    assert model.heads[0].weight.grad.abs().sum() > 0


def test_pipeline_composes_steps_and_checks_inputs(generator):
    pipeline = RegistrationPipeline(prealign=Shift(), finetune=Shift())
    x, bx = _ragged(generator)
    torch.testing.assert_close(pipeline(x, x, bx, bx), torch.ones_like(x))
    with pytest.raises(ValueError, match="target"):
        pipeline(x, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="batch_source"):
        pipeline(x, x, bx, None)
    with pytest.raises(ValueError, match="steps"):
        build_pipeline(["prealign", "teleport"])
    with pytest.raises(ValueError, match="checkpoint"):
        build_pipeline(["flow"])
    with pytest.raises(ValueError, match="finetune_model"):
        build_pipeline(["finetune"], finetune_model="spline")


def test_a_step_taking_initial_sees_the_original_source(generator):
    refine = Double()
    x, bx = _ragged(generator)
    displacement = RegistrationPipeline(prealign=Shift(), finetune=refine)(x, x, bx, bx)
    assert refine.seen[0] is x
    torch.testing.assert_close(refine.seen[1], torch.full_like(x, 0.5))
    torch.testing.assert_close(displacement, torch.ones_like(x))


def test_build_pipeline_picks_the_finetune_model():
    from gdl.models.registration.finetune import Finetune
    from gdl.models.registration.lddmm import LDDMMRegistration

    assert build_pipeline(["prealign", "finetune"], "lung").steps == ["prealign", "finetune"]
    assert isinstance(build_pipeline(["finetune"], "lung").finetune, Finetune)
    assert isinstance(build_pipeline(["finetune"], "lung", finetune_model="lddmm").finetune, LDDMMRegistration)


def test_command_line_writes_warped_source_displacement_and_png(tmp_path, generator):
    source = torch.randn(300, 3, generator=generator).numpy() * 5
    shift = np.array([0.8, 0.0, -0.5], dtype=np.float32)
    np.save(tmp_path / "source.npy", source)
    np.save(tmp_path / "target.npy", source + shift)
    out = tmp_path / "out"
    register_main([str(tmp_path / "source.npy"), str(tmp_path / "target.npy"), "--out", str(out), "--steps", "prealign"])
    displacement = np.load(out / "displacement.npy")
    np.testing.assert_allclose(displacement.mean(0), shift, atol=0.05)
    np.testing.assert_allclose(np.load(out / "warped_source.npy"), source + displacement, atol=1e-5)
    assert (out / "before_after.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment, metric, num_points",
    # the lung clouds keep 80 % of their points: 1024 leaves the coarsest level k=16 neighbours
    [("kitti_flow", "val/epe3d", 512), ("lung_flow", "val/recovery_mm", 1024)],
)
def test_experiment_fast_dev_run(tmp_path, experiment, metric, num_points):
    done = subprocess.run(
        [sys.executable, "train.py", f"experiment={experiment}", "debug=fast_dev_run", "logger=csv",
         f"paths.log_dir={tmp_path}", f"data.num_points={num_points}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert metric in done.stdout


def test_a_flow_checkpoint_rebuilds_its_network_wherever_it_lies(tmp_path, generator):
    from gdl.tasks.flow import FlowTask
    from gdl.training.flow_models import load_flow_model

    task = FlowTask(FlowPyramid(channels=(8, 16), k=8, hidden_units=4, backend="torch"))
    torch.nn.init.normal_(task.model.heads[0].weight, std=0.1)
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)  # Lightning's hook: records the network's settings
    path = tmp_path / "moved" / "epoch_003.ckpt"  # no .hydra run folder around it
    path.parent.mkdir()
    torch.save(checkpoint, path)
    loaded = load_flow_model(path)
    assert loaded.config == task.model.config and not loaded.training
    x, y = torch.randn(200, 3, generator=generator), torch.randn(180, 3, generator=generator)
    torch.testing.assert_close(loaded(x, y), task.model.eval()(x, y))

    del checkpoint["flow_model_config"]  # an older checkpoint: FlowPyramid's defaults do not fit it
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="do not fit the network built from FlowPyramid's defaults"):
        load_flow_model(path)
    assert load_flow_model(path, channels=(8, 16), k=8, hidden_units=4, backend="torch").config == task.model.config
