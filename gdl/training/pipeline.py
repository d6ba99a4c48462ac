"""What ``train.py`` and ``eval.py`` do with a composed configuration.

Order: per-process KeOps cache and W&B mode, config checks and the checkpoint's task (fail before
anything is built), seed, instantiate datamodule, model, task, callbacks, loggers and trainer, log
the resolved config and the git commit, fit (resuming from ``ckpt_path``), test the best checkpoint,
print where the files are and the final metrics. A configuration error met before training removes
the run folder Hydra made for it, so failed attempts leave nothing under ``logs/``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gdl.training.checkpoints import resolve_ckpt_path
from gdl.training.config_checks import check_config
from gdl.training.config_errors import ConfigError
from gdl.training.last_checkpoint import LastCheckpoint
from gdl.training.provenance import git_state
from gdl.training.wandb_mode import choose_wandb_mode

_PARALLEL_STRATEGIES = ("ddp", "fsdp", "deepspeed")


def is_distributed(trainer_cfg: DictConfig) -> bool:
    """Whether the trainer config starts several processes (DDP-like strategy, several devices or nodes)."""
    strategy = trainer_cfg.get("strategy", "auto")
    text = str(strategy.get("_target_", "") if isinstance(strategy, DictConfig) else strategy).lower()
    devices = trainer_cfg.get("devices", 1)
    several_devices = (isinstance(devices, int) and (devices > 1 or devices == -1)) or (not isinstance(devices, (int, str)) and len(devices) > 1)
    return any(name in text for name in _PARALLEL_STRATEGIES) or several_devices or int(trainer_cfg.get("num_nodes", 1)) > 1


def _build(key: str, node: DictConfig, **provided):
    """``hydra.utils.instantiate`` whose errors name the config key."""
    from hydra.utils import instantiate

    try:
        return instantiate(node, **provided)
    except Exception as error:  # noqa: BLE001 - any constructor failure is a configuration error here
        cause = error.__cause__ or error
        message = (str(cause).splitlines() or [""])[0]
        raise ConfigError(f"{key}: {type(cause).__name__}: {message}") from error


def _build_group(key: str, group: DictConfig | None) -> list:
    if not group:
        return []
    return [_build(f"{key}.{name}", node) for name, node in group.items() if isinstance(node, DictConfig) and "_target_" in node]


def prepare(cfg: DictConfig) -> None:
    """Process-wide set-up, then the config checks; call before anything imports pykeops."""
    from gdl.training.quiet import quiet_libraries

    quiet_libraries()
    if any("wandb" in str(node.get("_target_", "")).lower() for node in (cfg.get("logger") or {}).values() if isinstance(node, DictConfig)):
        choose_wandb_mode()
    check_config(cfg)


def build_run(cfg: DictConfig):
    """Seed, then instantiate ``(datamodule, task, trainer)`` from the config."""
    import lightning.pytorch as pl

    from gdl.training.checkpoint_task import RecordTask
    from gdl.training.nan_guard import StopOnNonFiniteLoss
    from gdl.training.rng_state import CheckpointRNGState

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = _build("data", cfg.data)
    model = _build("model", cfg.model)
    task = _build("task", cfg.task, model=model)
    callbacks = _build_group("callbacks", cfg.get("callbacks")) + [StopOnNonFiniteLoss(), CheckpointRNGState(), RecordTask(cfg.task_name)]
    loggers = _build_group("logger", cfg.get("logger"))
    trainer = _build("trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, task, trainer


def log_run_config(cfg: DictConfig, trainer, source_folder) -> dict:
    """Write ``config_resolved.yaml`` into the run folder and send config and git commit to every logger."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["git"] = git_state(source_folder)
    if trainer.is_global_zero:
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(config), output_dir / "config_resolved.yaml")
    for logger in trainer.loggers:
        logger.log_hyperparams(config)
    return config


def _metrics(trainer) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(trainer.callback_metrics.items()) if getattr(value, "numel", lambda: 1)() == 1}


def _report(cfg: DictConfig, trainer, metrics: dict[str, float], config: dict, tested: str | None) -> None:
    from lightning.pytorch.loggers import WandbLogger

    lines = [f"Run folder: {Path(cfg.paths.output_dir).resolve()}"]
    commit = config["git"]["commit"]
    lines.append(f"  git commit: {commit}{' (with uncommitted changes)' if config['git']['dirty'] else ''}")
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint):
            if callback.path:
                lines.append(f"  last checkpoint: {callback.path}")
        elif callback.best_model_path and callback.best_model_score is not None:
            lines.append(f"  best checkpoint: {callback.best_model_path} ({callback.monitor} = {float(callback.best_model_score):.6g})")
    if tested:
        lines.append(f"  tested checkpoint: {tested} (epoch {_checkpoint_epoch(tested)})")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run_dir = Path(logger.experiment.dir).parent
            offline = logger.experiment.settings.mode == "offline" if hasattr(logger.experiment, "settings") else False
            url = None if offline else getattr(logger.experiment, "url", None)
            lines.append(f"  W&B run: {url} (files in {run_dir})" if url else f"  W&B run: {run_dir}" + (f" (offline; upload with: wandb sync {run_dir})" if offline else ""))
        elif isinstance(getattr(logger, "log_dir", None), str):
            lines.append(f"  {type(logger).__name__}: {logger.log_dir}")
    lines.append("Final metrics:")
    width = max((len(name) for name in metrics), default=0)
    lines += [f"  {name:<{width}}  {value:.6g}" for name, value in metrics.items()] or ["  (none logged)"]
    print("\n".join(lines), flush=True)


def _summary(cfg: DictConfig, task, trainer, ckpt_path: str | None) -> str:
    """One line: what is trained (or tested), how big, where, for how long, and the run folder."""
    import torch

    model = getattr(task, "model", task)
    count = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size = f"{count / 1e6:.2f} M" if count >= 1e6 else f"{count / 1e3:.1f} K" if count >= 1e3 else str(count)
    frozen = "" if trainable == count else f", {trainable:,} trainable"
    device = str(cfg.trainer.get("accelerator", "auto"))
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    if cfg.get("train", True):
        last = trainer.max_epochs
        epochs = f"{last} epochs (0-{last - 1})" if last is not None and last > 0 else "unlimited epochs"
        doing = f"training {type(task).__name__} ({type(model).__name__}, {size} parameters{frozen}) on {device}, {epochs}"
        if ckpt_path:
            doing += f", resuming from {ckpt_path} (saved after epoch {_checkpoint_epoch(ckpt_path)})"
    else:
        doing = f"testing {type(task).__name__} ({type(model).__name__}, {size} parameters) on {device}"
    return f"{cfg.task_name}: {doing}; run folder {cfg.paths.output_dir}"


def _checkpoint_epoch(path: str) -> int | None:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("epoch")


def _best_checkpoint(trainer) -> str | None:
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint):
            continue
        if callback.best_model_path and Path(callback.best_model_path).is_file():
            return callback.best_model_path
    return None


def check_checkpoint(cfg: DictConfig, ckpt_path: str | None) -> None:
    """``ckpt_path`` must be a checkpoint of the configured task (``task._target_``)."""
    if ckpt_path is None:
        return
    import torch

    from gdl.training.checkpoint_task import WrongTaskError, check_task

    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure: not a checkpoint
        raise ConfigError.at("ckpt_path", f"not a checkpoint file ({type(error).__name__})", ckpt_path) from None
    try:
        check_task(checkpoint, cfg.task._target_, cfg.task_name, source="ckpt_path")
    except WrongTaskError as error:
        raise ConfigError(f"{error} (got {ckpt_path!r})") from None


def remove_run_folder(cfg: DictConfig) -> None:
    """Delete this run's folder when it holds only what Hydra wrote (``.hydra/``, the job log), and empty parents below ``logs/``."""
    try:
        folder, log_dir = Path(cfg.paths.output_dir).resolve(), Path(cfg.paths.log_dir).resolve()
    except Exception:  # noqa: BLE001 - no Hydra run folder (e.g. composed in a test)
        return
    if not folder.is_dir() or log_dir not in folder.parents:
        return
    if any(entry.name != ".hydra" and not (entry.is_file() and entry.suffix == ".log") for entry in folder.iterdir()):
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == log_dir or log_dir not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def run(cfg: DictConfig, source_folder) -> float | None:
    """Train and/or test as the config says; returns ``cfg.optimized_metric``'s final value (for sweeps)."""
    try:
        prepare(cfg)
        experiment_dir = Path(cfg.paths.log_dir) / cfg.task_name
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), experiment_dir)
        check_checkpoint(cfg, ckpt_path)
        datamodule, task, trainer = build_run(cfg)
    except ConfigError:
        remove_run_folder(cfg)
        raise
    config = log_run_config(cfg, trainer, source_folder)
    if trainer.is_global_zero:
        print(_summary(cfg, task, trainer, ckpt_path), flush=True)
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        metrics.update(_metrics(trainer))
    checkpoint = None
    if cfg.get("test", False):
        checkpoint = _best_checkpoint(trainer) if cfg.get("train", True) else ckpt_path
        if checkpoint is None and trainer.is_global_zero:
            print("No checkpoint to test: testing the weights in memory.", flush=True)
        trainer.test(task, datamodule=datamodule, ckpt_path=checkpoint, weights_only=False, verbose=False)
        metrics.update(_metrics(trainer))
    if trainer.is_global_zero:
        _report(cfg, trainer, metrics, config, tested=checkpoint)
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric: {name} was not logged (logged: {', '.join(metrics)})")
    return metrics[name] if math.isfinite(metrics[name]) else float("nan")
