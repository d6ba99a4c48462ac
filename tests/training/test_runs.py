"""train.py and eval.py end to end, in subprocesses: experiments, resume, W&B offline, DDP, NaN, sweeps."""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.training.conftest import REPO, assert_ok, run_script

DURATION = r"(\d\.\ds|\d+s|\d+m\d\ds)"  # gdl.progress.format_duration

FIXTURE = ["experiment=bumps"]
EXPERIMENTS = sorted(path.stem for path in (REPO / "configs" / "experiment").glob("*.yaml"))


def read_wandb_records(path: Path) -> list:
    """Protobuf records of a ``.wandb`` transaction log (LevelDB log format: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        if block - position % block < 7:
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            raw, pending = pending + chunk, b""
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            records.append(record)
        elif kind in (2, 3):
            pending += chunk
    return records


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_fast_dev_run(name, tmp_path):
    run = run_script("train.py", f"experiment={name}", "trainer.fast_dev_run=true", "logger=csv", log_dir=tmp_path, timeout=1800)
    assert_ok(run)
    assert (run.folder / "config_resolved.yaml").is_file()
    metrics = run.printed_metrics()  # fast_dev_run replaces the loggers by a dummy: read what train.py prints
    assert math.isfinite(metrics["train/loss"]), metrics
    assert any(name.startswith("val/") for name in metrics), metrics
    tested = OmegaConf.load(run.folder / "config_resolved.yaml").test  # pooled experiments leave test to a benchmark
    assert tested == any(name.startswith("test/") for name in metrics), metrics


def _default_configs_present() -> bool:
    defaults = OmegaConf.load(REPO / "configs" / "train.yaml").defaults
    choices = {key: value for entry in defaults if isinstance(entry, dict) or OmegaConf.is_dict(entry) for key, value in entry.items()}
    return all((REPO / "configs" / group / f"{choices[group]}.yaml").is_file() for group in ("data", "model", "task"))


@pytest.mark.slow
@pytest.mark.skipif(not _default_configs_present(), reason="the default experiment's data/model/task configs are not in configs/ yet")
def test_default_train_py_on_shipped_sample(tmp_path):
    run = run_script(
        "train.py", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "logger=csv", log_dir=tmp_path,
    )
    assert_ok(run)
    metrics = run.printed_metrics()
    assert "val/roc_auc" in metrics and "test/roc_auc" in metrics and all(map(math.isfinite, metrics.values())), metrics
    assert (run.folder / "checkpoints" / "last.ckpt").is_file()
    assert str(tmp_path) in str(run.folder)  # no data or logs outside the run's folder tree


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    # the monitored metric (val/mae) gets worse from epoch 1 on: the best checkpoint stays at epoch 0
    common = [*FIXTURE, "logger=csv", "trainer.max_epochs=4", "seed=7", "task.worse_from_epoch=1"]
    straight = run_script("train.py", *common, log_dir=tmp_path / "straight")
    assert_ok(straight)
    assert torch.load(straight.folder / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 3
    assert [path.name for path in (straight.folder / "checkpoints").glob("epoch_*.ckpt")] == ["epoch_000.ckpt"]
    kill = ["+callbacks.kill._target_=tests.training.fixture_task.KillAtEpoch", "+callbacks.kill.epoch=2"]
    killed = run_script("train.py", *common, *kill, log_dir=tmp_path / "resumed")
    assert killed.returncode != 0 and "Final metrics" not in killed.stdout
    resumed = run_script("train.py", *common, "ckpt_path=last", log_dir=tmp_path / "resumed")
    assert_ok(resumed)
    epochs = {row["epoch"] for row in resumed.csv_rows() if row.get("train/loss")}
    assert epochs == {"2", "3"}, f"the resumed run should train epochs 2 and 3 only, logged {epochs}"
    for name in ("train/loss", "val/loss", "val/mae", "test/loss", "test/mae", "lr-Adam"):
        assert resumed.last_value(name) == straight.last_value(name), name
    last = resumed.folder / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["epoch"] == 3 and checkpoint["optimizer_states"][0]["state"]
    assert (resumed.folder / "checkpoints" / "epoch_000.ckpt").is_file(), "the best checkpoint of before the kill is kept"

    evaluated = run_script("eval.py", *FIXTURE, "logger=csv", "ckpt_path=last", log_dir=tmp_path / "resumed")
    assert_ok(evaluated)
    assert f"tested checkpoint: {last} (epoch 3)" in evaluated.stdout


@pytest.mark.slow
def test_wandb_offline_run_folder_then_eval_py_on_best_checkpoint(tmp_path):
    run = run_script("train.py", *FIXTURE, "logger=many", "logger.wandb.log_model=true", "trainer.max_epochs=2", log_dir=tmp_path)
    assert_ok(run)
    (log,) = run.folder.glob("wandb/offline-run-*/run-*.wandb")
    records = read_wandb_records(log)
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item} for r in records if r.HasField("history")]
    logged = [row["val/loss"] for row in history if "val/loss" in row]
    in_csv = [float(row["val/loss"]) for row in run.csv_rows() if row.get("val/loss")]
    assert len(logged) == 2 and logged == pytest.approx(in_csv, rel=1e-6)
    config = {item.key: json.loads(item.value_json) for r in records if r.HasField("config") for item in r.config.update}
    assert config["git"]["commit"] and config["seed"] == 12345
    media = [row["val/prediction/path"] for row in history if "val/prediction/path" in row]
    assert media, "no point cloud logged"
    points = json.loads((log.parent / "files" / media[-1]).read_text())
    assert len(points) == 256 // 4 and len(points[0]) == 6  # first validation batch of 64 points, xyz + rgb
    assert any(r.HasField("artifact") for r in records), "log_model=true should log the checkpoint as an artifact"
    assert list(run.folder.glob("tensorboard/**/events.out.tfevents.*"))

    best = next(line.split()[2] for line in run.stdout.splitlines() if line.strip().startswith("best checkpoint:"))
    evaluated = run_script("eval.py", *FIXTURE, "logger=csv", f"ckpt_path={best}", log_dir=tmp_path)
    assert_ok(evaluated)
    for name in ("test/loss", "test/mae"):
        assert evaluated.last_value(name) == run.last_value(name), name


@pytest.mark.slow
def test_ddp_cpu_runs_two_processes(tmp_path):
    run = run_script("train.py", *FIXTURE, "logger=csv", "trainer=ddp_cpu", "trainer.max_epochs=1", log_dir=tmp_path, env={"KEOPS_CACHE_FOLDER": str(tmp_path / "keops")})
    assert_ok(run)
    output = run.stdout + run.stderr
    assert "MEMBER: 1/2" in output and "MEMBER: 2/2" in output
    assert (run.folder / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    run = run_script("train.py", *FIXTURE, "logger=csv", "task.nan_from_epoch=2", "trainer.max_epochs=4", log_dir=tmp_path)
    assert run.returncode == 1
    assert "error: training loss is nan at epoch 2, step 32" in run.stderr
    assert "Traceback" not in run.stderr
    (last,) = tmp_path.glob("bumps/runs/*/checkpoints/last.ckpt")
    assert f"last good checkpoint: {last}" in run.stderr
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values())


@pytest.mark.slow
def test_multirun_sweep_from_experiment_file(tmp_path):
    run = run_script("train.py", "-m", "experiment=bumps_sweep", "logger=csv", log_dir=tmp_path)
    assert_ok(run)
    jobs = sorted(tmp_path.glob("bumps_sweep/multiruns/*/*/config_resolved.yaml"))
    assert [OmegaConf.load(job).task.lr for job in jobs] == [0.01, 0.03]
    assert run.stdout.count("Final metrics:") == 2
    assert all(math.isfinite(float(line.split()[1])) for line in run.stdout.splitlines() if line.strip().startswith("val/mae"))


@pytest.mark.slow
def test_progress_lines_and_no_library_noise_when_output_is_not_a_terminal(tmp_path):
    run = run_script("train.py", *FIXTURE, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "callbacks.progress.every_seconds=0", log_dir=tmp_path)
    assert_ok(run)
    lines = (run.stdout + run.stderr).splitlines()
    assert re.fullmatch(r"bumps: training BumpsRegression \(MLP, 161 parameters\) on cpu, 2 epochs \(0-1\); run folder .+", lines[0]), lines[0]
    batches = [line for line in lines if line.startswith("epoch 0/1, batch ")]
    assert [line.split(",")[1] for line in batches] == [" batch 1/3", " batch 2/3", " batch 3/3"], lines
    assert re.search(rf", {DURATION} elapsed$", batches[0]), "no estimate from the first batch alone (it holds one-time work)"
    assert re.search(rf", {DURATION} elapsed, about {DURATION} left$", batches[1]), batches
    (done,) = [line for line in lines if line.startswith("epoch 1/1 done")]
    checkpoints = sorted((run.folder / "checkpoints").glob("epoch_*.ckpt"))
    assert checkpoints, "no best checkpoint saved"
    for path in checkpoints:  # one numbering: the file name, the progress lines and the checkpoint agree
        assert int(path.stem.removeprefix("epoch_")) == torch.load(path, weights_only=False)["epoch"], path.name
    logs = list(run.folder.glob("*.log"))
    assert logs and not [line for log in logs for line in log.read_text().splitlines() if "ERROR" in line], logs
    assert re.fullmatch(rf"epoch 1/1 done: train/loss [\d.e-]+, val/loss [\d.e-]+, val/mae [\d.e-]+; {DURATION} elapsed", done), done
    noise = ("Seed set", "GPU available", "TPU available", "litlogger", "LeafSpec", "wandb:", "][INFO]", "logging interval", "┏")
    assert not [line for line in lines if any(word in line for word in noise)], lines
    assert len(lines) == len(set(lines)), "a line printed twice"


def test_help_says_what_gdl_is_and_lists_the_experiments(tmp_path):
    run = run_script("train.py", "--help", log_dir=tmp_path)
    assert_ok(run)
    assert run.stdout.startswith("gdl: geometric deep learning")
    (listed,) = [line for line in run.stdout.splitlines() if line.startswith("experiment: ")]
    assert set(listed.removeprefix("experiment: ").split(", ")) >= set(EXPERIMENTS)
    assert not list(tmp_path.iterdir())
