"""Point clouds logged as media to Weights & Biases (and to nothing else)."""

from __future__ import annotations

import numpy as np
import torch


def _rgb(values: torch.Tensor, n: int) -> np.ndarray:
    """(N,) scalars mapped through viridis, or (N, 3) colours in [0, 1]; returned as (N, 3) in [0, 255]."""
    values = values.detach().to("cpu", torch.float64)
    if values.shape == (n,):
        low, high = values.min(), values.max()
        scaled = ((values - low) / (high - low)) if high > low else torch.zeros_like(values)
        from matplotlib import colormaps

        return colormaps["viridis"](scaled.numpy())[:, :3] * 255
    if values.shape == (n, 3):
        return values.clamp(0, 1).numpy() * 255
    raise ValueError(f"values must have shape ({n},) or ({n}, 3) to match points, got {tuple(values.shape)}")


def log_point_cloud(task, key: str, points: torch.Tensor, values: torch.Tensor | None = None) -> None:
    """Log ``points`` (N, 3) as a ``wandb.Object3D`` under ``key`` to the task's W&B loggers.

    ``values`` colours the points: (N,) scalars (viridis, min to max) or (N, 3) RGB in [0, 1].
    Does nothing when the task has no W&B logger, or on processes other than global rank zero.
    """
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"points must be a non-empty (N, 3) tensor, got {getattr(points, 'shape', type(points))}")
    if values is not None and not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a tensor or None, got {type(values).__name__}")
    loggers = [logger for logger in task.loggers if isinstance(logger, WandbLogger)]
    if not loggers or not task.trainer.is_global_zero:
        return
    array = points.detach().to("cpu", torch.float64).numpy()
    if values is not None:
        array = np.concatenate([array, _rgb(values, len(array))], axis=1)
    import wandb

    for logger in loggers:
        logger.experiment.log({key: wandb.Object3D(array), "trainer/global_step": task.global_step})
