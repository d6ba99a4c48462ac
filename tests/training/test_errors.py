"""A mistake in a train.py / eval.py command gives one ``error: <key>: ...`` line, exit status 1 and no run folder."""

from __future__ import annotations

import pytest
import torch

from gdl.training.checkpoint_task import WrongTaskError, check_task, load_task_checkpoint
from tests.training.conftest import REPO, run_script

FIXTURE = ["experiment=bumps", "logger=csv"]


def assert_one_error_line(run, log_dir, starts: str) -> None:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 1, (run.returncode, lines)
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}"), lines
    assert not list(log_dir.rglob("*")), f"left behind: {sorted(log_dir.rglob('*'))}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, starts",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer or null (got 'abc')"),
        ("trainer.max_epochs=-3", "trainer.max_epochs: must be at least -1 (-1: no limit) (got -3)"),
        ("data.batch_size=0", "data.batch_size: must be at least 1 (got 0)"),
        ("ckpt_path=no/such.ckpt", "ckpt_path: no such checkpoint file (got 'no/such.ckpt')"),
        ("trainer.max_epoch=3", "trainer.max_epoch: no such key in the config; did you mean trainer.max_epochs? (a new key is added with +trainer.max_epoch=3)"),
        ("experiment=nope", "experiment: no option 'nope' (available: bumps, bumps_sweep, kitti_flow,"),
        ("trainer.max_epochs=[1", "trainer.max_epochs=[1: cannot parse this override"),
        ("trainer=null", "trainer: a config group cannot be null (drop its default with ~trainer)"),
    ],
)
def test_bad_override_gives_one_error_line_and_no_run_folder(override, starts, tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    assert_one_error_line(run_script("train.py", *FIXTURE, override, log_dir=log_dir), log_dir, starts)


@pytest.mark.slow
def test_missing_data_folder_of_the_default_run(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    run = run_script("train.py", f"data.data_dir={tmp_path / 'kitti'}", log_dir=log_dir)
    assert_one_error_line(run, log_dir, f"data.data_dir: no such file or folder (got '{tmp_path / 'kitti'}')")


@pytest.mark.slow
def test_eval_without_checkpoint_and_with_a_checkpoint_of_another_task(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    assert_one_error_line(run_script("eval.py", *FIXTURE, log_dir=log_dir), log_dir, "ckpt_path: testing without training needs a checkpoint")
    other = tmp_path / "flow.ckpt"
    torch.save({"state_dict": {}, "gdl_task": {"class": "gdl.tasks.flow.FlowTask", "name": "kitti_flow"}}, other)
    run = run_script("eval.py", *FIXTURE, f"ckpt_path={other}", log_dir=log_dir)
    assert_one_error_line(run, log_dir, f"ckpt_path: this is a kitti_flow checkpoint (gdl.tasks.flow.FlowTask), not a bumps one (got '{other}')")


def test_checkpoint_task_check(tmp_path):
    expected = "gdl.tasks.protein_site.ProteinSiteTask"
    recorded = {"state_dict": {}, "gdl_task": {"class": "gdl.tasks.flow.FlowTask", "name": "kitti_flow"}}
    with pytest.raises(WrongTaskError, match=r"^ckpt: this is a kitti_flow checkpoint \(gdl.tasks.flow.FlowTask\), not a protein_site one$"):
        check_task(recorded, expected, "protein_site", source="ckpt")
    check_task({**recorded, "gdl_task": {"class": expected, "name": "protein_site"}}, expected, "protein_site")
    # written before the record existed: told apart by the names of the task's settings
    old_flow = {"state_dict": {}, "hyper_parameters": {"lr": 1e-3, "level_weights": [1.0], "mm_per_unit": 1000.0}}
    with pytest.raises(WrongTaskError, match="not a protein_site checkpoint .*level_weights, mm_per_unit"):
        check_task(old_flow, expected, "protein_site")
    path = tmp_path / "old.ckpt"
    torch.save(old_flow, path)
    with pytest.raises(WrongTaskError, match=f"^{path}: not a protein_site"):
        load_task_checkpoint(path, expected, "protein_site")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_task_checkpoint(tmp_path / "none.ckpt", expected, "protein_site")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(WrongTaskError, match="not a checkpoint file"):
        load_task_checkpoint(tmp_path / "text.ckpt", expected, "protein_site")


def test_predict_sites_refuses_a_checkpoint_of_another_task(tmp_path, capsys):
    from gdl.cli.predict_sites import main

    other = tmp_path / "flow.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "gdl_task": {"class": "gdl.tasks.flow.FlowTask", "name": "kitti_flow"}}, other)
    pdb = REPO / "gdl" / "samples" / "proteins" / "1I07_A.pdb.gz"
    with pytest.raises(SystemExit, match=f"^error: {other}: this is a kitti_flow checkpoint \\(gdl.tasks.flow.FlowTask\\), not a protein_site one$"):
        main([str(pdb), "--ckpt", str(other), "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*_sites.*"))
