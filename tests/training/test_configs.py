"""Every config composes, passes the checks and instantiates; wrong overrides fail naming the key."""

from __future__ import annotations

import os
import time

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gdl.tasks.media import log_point_cloud
from gdl.training.checkpoints import resolve_ckpt_path
from gdl.training.config_checks import check_config
from gdl.training.config_errors import ConfigError
from gdl.training.pipeline import is_distributed
from gdl.training.resolvers import register_resolvers
from gdl.training.wandb_mode import choose_wandb_mode
from tests.training.conftest import REPO, TEST_CONFIGS

CONFIGS = REPO / "configs"
FIXTURE = ["data=bumps", "model=bumps_mlp", "task=bumps"]


def names(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIGS / group).glob("*.yaml"))


def compose_train(*overrides: str, tmp_path, config_name: str = "train", hydra_config: bool = False):
    register_resolvers()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(
            config_name,
            overrides=[f"hydra.searchpath=[file://{TEST_CONFIGS}]", *overrides, f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path}"],
            return_hydra_config=hydra_config,
        )


def experiment_choices(name: str) -> dict[str, str]:
    """The data/model/task a file in configs/experiment/ picks (``override /group: choice``)."""
    raw = OmegaConf.load(CONFIGS / "experiment" / f"{name}.yaml")
    choices = {}
    for entry in raw.get("defaults", []):
        if isinstance(entry, dict) or OmegaConf.is_dict(entry):
            for key, value in entry.items():
                choices[key.replace("override ", "").strip("/ ")] = value
    return choices


@pytest.mark.parametrize("name", names("data"))
def test_data_config_instantiates(name, tmp_path):
    cfg = compose_train(*FIXTURE, f"data={name}", tmp_path=tmp_path)
    check_config(cfg)
    assert isinstance(instantiate(cfg.data), pl.LightningDataModule)


@pytest.mark.parametrize("name", names("model"))
def test_model_config_instantiates(name, tmp_path):
    cfg = compose_train(*FIXTURE, f"model={name}", tmp_path=tmp_path)
    check_config(cfg)
    assert isinstance(instantiate(cfg.model), torch.nn.Module)


@pytest.mark.parametrize("name", names("task"))
def test_task_config_instantiates_with_its_experiments_model(name, tmp_path):
    users = [experiment for experiment in names("experiment") if experiment_choices(experiment).get("task") == name]
    if not users:
        pytest.skip(f"no experiment in configs/experiment/ uses task={name}, so no model to pair it with")
    cfg = compose_train(f"experiment={users[0]}", tmp_path=tmp_path)
    check_config(cfg)
    task = instantiate(cfg.task, model=instantiate(cfg.model))
    assert isinstance(task, pl.LightningModule)
    assert task.hparams and "model" not in task.hparams


@pytest.mark.parametrize("name", names("experiment"))
def test_experiment_builds_trainer_callbacks_and_loggers(name, tmp_path):
    cfg = compose_train(f"experiment={name}", "logger=csv", tmp_path=tmp_path)
    check_config(cfg)
    callbacks = [instantiate(node) for node in cfg.callbacks.values() if node]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[instantiate(node) for node in cfg.logger.values()])
    assert isinstance(trainer, pl.Trainer)
    monitored = cfg.callbacks.model_checkpoint.monitor
    assert monitored == cfg.monitor == cfg.callbacks.early_stopping.monitor
    assert monitored.startswith("val/") and monitored == monitored.lower()


@pytest.mark.parametrize("name", names("trainer"))
def test_trainer_config(name, tmp_path):
    cfg = compose_train(*FIXTURE, f"trainer={name}", tmp_path=tmp_path)
    check_config(cfg)
    assert is_distributed(cfg.trainer) == name.startswith("ddp")
    if cfg.trainer.accelerator == "cpu":
        assert isinstance(instantiate(cfg.trainer), pl.Trainer)


@pytest.mark.parametrize("name", names("logger"))
def test_logger_config(name, tmp_path):
    cfg = compose_train(*FIXTURE, f"logger={name}", tmp_path=tmp_path)
    check_config(cfg)
    loggers = [instantiate(node) for node in cfg.logger.values()]
    assert loggers and all(isinstance(logger, pl.loggers.Logger) for logger in loggers)


@pytest.mark.parametrize("name", names("callbacks") + names("debug"))
def test_callbacks_and_debug_configs(name, tmp_path):
    group = "callbacks" if (CONFIGS / "callbacks" / f"{name}.yaml").exists() else "debug"
    cfg = compose_train(*FIXTURE, f"{group}={name}", tmp_path=tmp_path)
    check_config(cfg)
    for node in (cfg.callbacks or {}).values():
        if node:
            assert isinstance(instantiate(node), pl.Callback)


def test_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_train(*FIXTURE, "hydra/launcher=slurm", tmp_path=tmp_path, hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.timeout_min > 0


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer or null \\(got 'abc'\\)$"),
        ("trainer.max_epochs=-3", "trainer.max_epochs: must be at least -1"),
        ("data.batch_size=0", "data.batch_size: must be at least 1 \\(got 0\\)$"),
        ("task.lr=-0.1", "task.lr: must be positive \\(got -0.1\\)$"),
        ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches: must be a fraction in \\[0, 1\\]"),
        ("trainer.devices=0", "trainer.devices: must be at least 1, or -1"),
        ("+trainer.max_epoch=3", "trainer.max_epoch: not a parameter of lightning.pytorch.Trainer; did you mean max_epochs\\?"),
        ("+trainer.max_epochz=3", "trainer.max_epochz:"),
        ("task.lr=fast", "task.lr:"),
        ("seed=1.5", "seed:"),
        ("data._target_=gdl.no_such_module.Data", "data._target_:"),
        ("+callbacks.model_checkpoint.every_n_epoch=2", "callbacks.model_checkpoint.every_n_epoch:"),
        ("monitor_mode=maximum", "monitor_mode: expected min or max \\(got 'maximum'\\)$"),
        ("monitor=42", "monitor: expected a logged metric"),
    ],
)
def test_wrong_override_names_the_key(override, key, tmp_path):
    cfg = compose_train(*FIXTURE, override, tmp_path=tmp_path)
    with pytest.raises(ConfigError, match=f"^{key}"):
        check_config(cfg)


@pytest.mark.parametrize(
    "data, override, key",
    [
        ("kitti_flow", "+data.ground_hieght=0", "data.ground_hieght: not a parameter of gdl.data.kitti.KittiFlowDataModule; did you mean ground_height\\?"),
        ("kitti_flow", "+data.deformation.scalez=[1.0]", "data.deformation.scalez: not a parameter of gdl.data.synthetic.SyntheticDeformation"),
        ("lung_flow", "+data.breathing.diafragm=0.1", "data.breathing.diafragm: not a parameter of gdl.data.lung.BreathingDeformation; did you mean diaphragm\\?"),
    ],
)
def test_data_options_are_checked_against_their_targets(data, override, key, tmp_path):
    cfg = compose_train(*FIXTURE, f"data={data}", override, tmp_path=tmp_path)
    with pytest.raises(ConfigError, match=f"^{key}"):
        check_config(cfg)


@pytest.mark.parametrize("experiment, mm", [("kitti_flow", 1000.0), ("lung_flow", 100.0)])
def test_the_flow_task_measures_mm_in_the_unit_of_its_data(experiment, mm, tmp_path):
    cfg = compose_train(f"experiment={experiment}", tmp_path=tmp_path)
    assert cfg.task.mm_per_unit == cfg.data.mm_per_unit == mm
    assert instantiate(cfg.data).mm_per_unit == mm


def test_optional_package_missing_says_how_to_install_it(tmp_path, monkeypatch):
    import gdl.training.config_checks as config_checks

    cfg = compose_train(*FIXTURE, "logger=tensorboard", tmp_path=tmp_path)
    monkeypatch.setattr(config_checks, "_installed", lambda module: module not in ("tensorboard", "tensorboardX"))
    with pytest.raises(ConfigError, match=r"^logger.tensorboard: TensorBoardLogger needs the tensorboard package, not installed: pip install 'gdl\[tensorboard\]'"):
        check_config(cfg)


def test_unknown_top_level_key_is_refused_by_hydra(tmp_path):
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_train(*FIXTURE, "max_epoch=3", tmp_path=tmp_path)


def _folder_keys(name: str) -> list[str]:
    cfg = OmegaConf.load(CONFIGS / "data" / f"{name}.yaml")
    return [key for key in cfg if key.endswith(("dir", "root", "folder")) and not key.startswith(("cache", "output"))]


@pytest.mark.parametrize("name", [name for name in names("data") if _folder_keys(name)])
def test_missing_data_folder_names_the_key(name, tmp_path):
    key = _folder_keys(name)[0]
    cfg = compose_train(*FIXTURE, f"data={name}", f"data.{key}={tmp_path / 'missing'}", tmp_path=tmp_path)
    with pytest.raises(ConfigError, match=f"^data.{key}: no such file or folder \\(got '.*missing'\\)$"):
        check_config(cfg)


def test_ckpt_path_last_is_the_newest_last_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="^ckpt_path: no last.ckpt under .* \\(got 'last'\\)$"):
        resolve_ckpt_path("last", tmp_path)
    with pytest.raises(ConfigError, match="^ckpt_path: no such checkpoint file \\(got '.*nope.ckpt'\\)$"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path)
    older, newer = tmp_path / "runs/b/checkpoints/last.ckpt", tmp_path / "runs/a/checkpoints/last.ckpt"
    for path, stamp in ((older, time.time() - 100), (newer, time.time())):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        os.utime(path, (stamp, stamp))
    assert resolve_ckpt_path("last", tmp_path) == str(newer)
    assert resolve_ckpt_path(None, tmp_path) is None


def test_wandb_offline_unless_configured(tmp_path, monkeypatch):
    for variable in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert choose_wandb_mode() == "offline"
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password 0123456789\n")
    (tmp_path / "netrc").chmod(0o600)
    assert choose_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert choose_wandb_mode() == "disabled"


def test_log_point_cloud_checks_input_and_needs_wandb():
    task = pl.LightningModule()
    with pytest.raises(ValueError, match="points must be a non-empty"):
        log_point_cloud(task, "cloud", torch.zeros(5, 2))
    with pytest.raises(TypeError, match="values must be a tensor"):
        log_point_cloud(task, "cloud", torch.zeros(5, 3), values=[1, 2, 3, 4, 5])
    assert log_point_cloud(task, "cloud", torch.zeros(5, 3), torch.arange(5.0)) is None  # no W&B logger: nothing
