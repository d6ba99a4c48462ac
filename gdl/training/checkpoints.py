"""Checkpoints of a run: which file to resume from, the last and best checkpoints, the RNG states.

- ``ckpt_path=last`` is the newest ``last.ckpt`` of an experiment (:func:`resolve_ckpt_path`).
- :class:`LastCheckpoint` writes ``last.ckpt``: the state after the latest epoch, every epoch,
  whatever the monitored metric did. Lightning 2.6's ``ModelCheckpoint(save_last=True)`` rewrites
  ``last.ckpt`` only in an epoch where it also saves a top-k checkpoint, i.e. when the monitored
  metric improves: after a worsening epoch ``last.ckpt`` is an older epoch, so resuming from it
  retrains epochs and evaluating it tests stale weights.
- :class:`BestCheckpoint` keeps the best checkpoints by a monitored metric across a resume into a
  new run folder. A resumed run writes into its own folder, and Lightning's ``ModelCheckpoint`` then
  forgets the scores of the best checkpoints saved before the interruption (their folder differs),
  so the resumed run's "best" would be only the best since the resume and its test step would
  evaluate other weights than the uninterrupted run.
- :class:`CheckpointRNGState` carries the random number generator states in checkpoints, so that a
  resumed run draws what the uninterrupted run would have drawn (data shuffling, random sampling,
  dropout).

Which task a checkpoint belongs to is recorded and checked by :mod:`gdl.tasks.checkpoint_task`.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from gdl.training.errors import ConfigError

_RNG_KEY = "rng_states"


def newest_last_checkpoint(experiment_dir) -> Path | None:
    """The most recently written ``last.ckpt`` anywhere under ``experiment_dir``, or None."""
    candidates = list(Path(experiment_dir).glob("**/last.ckpt")) if Path(experiment_dir).is_dir() else []
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def resolve_ckpt_path(ckpt_path, experiment_dir) -> str | None:
    """Turn the ``ckpt_path`` setting into a file to resume from (None: start afresh).

    ``last`` means the newest ``last.ckpt`` under ``experiment_dir`` (``logs/<experiment>/``); any
    other value must be an existing file.
    """
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        found = newest_last_checkpoint(experiment_dir)
        if found is None:
            raise ConfigError.at("ckpt_path", f"no last.ckpt under {experiment_dir} (no earlier run of this experiment to resume)", "last")
        return str(found)
    if not Path(ckpt_path).is_file():
        raise ConfigError.at("ckpt_path", "no such checkpoint file", str(ckpt_path))
    return str(ckpt_path)


class LastCheckpoint(ModelCheckpoint):
    """Write ``<dirpath>/last.ckpt`` after every ``every_n_epochs`` epochs, replacing the previous one.

    A ``ModelCheckpoint`` without a monitor that keeps exactly one file, overwritten at the same
    points of the loop as the best checkpoint (after validation), so resuming from it continues with
    the next epoch.
    """

    def __init__(self, dirpath, every_n_epochs: int = 1):
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            every_n_epochs=every_n_epochs,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name="last", every_n_epochs=self._every_n_epochs)

    def load_state_dict(self, state_dict) -> None:
        """Nothing to restore: a resumed run writes its own ``last.ckpt`` in its own folder."""

    @property
    def path(self) -> str:
        """The file written last ('' before the first save)."""
        return self.best_model_path


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) whose top-k survive a resume into another ``dirpath``.

    On a resume into a new folder it copies the best checkpoints of the previous folder there and
    keeps their scores: the resumed run's folder holds the best checkpoints of the whole training.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        previous = state_dict.get("dirpath")
        if self.dirpath is None or previous is None or Path(previous) == Path(self.dirpath):
            return super().load_state_dict(state_dict)
        moved = {}
        for path, score in state_dict.get("best_k_models", {}).items():
            if Path(path).is_file():
                target = Path(self.dirpath) / Path(path).name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():  # atomic: every process of a distributed run may copy
                    partial = target.with_name(f".{target.name}.{os.getpid()}")
                    shutil.copy2(path, partial)
                    os.replace(partial, target)
                moved[path] = (str(target), score)
        self.best_k_models = {target: score for target, score in moved.values()}
        relocated = {old: new for old, (new, _) in moved.items()}
        self.best_model_path = relocated.get(state_dict.get("best_model_path", ""), "")
        self.best_model_score = state_dict.get("best_model_score") if self.best_model_path else None
        self.kth_best_model_path = relocated.get(state_dict.get("kth_best_model_path", ""), "")
        self.kth_value = state_dict.get("kth_value", self.kth_value) if self.kth_best_model_path else self.kth_value


def collect_rng_states() -> dict:
    """The global Python, NumPy, torch (and CUDA) RNG states, as tensors and plain Python values."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached_gauss],
        "python": [version, list(python_state), python_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Inverse of :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gauss))
    version, python_state, python_gauss = states["python"]
    random.setstate((version, tuple(python_state), python_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class CheckpointRNGState(Callback):
    """Save the RNG states with each checkpoint; restore them as soon as training resumes from one.

    Restoring when the checkpoint is loaded (before the training loop builds its first data
    iterator) replays the draws of the uninterrupted run; Lightning's sanity validation that runs in
    between keeps the global RNG states as they were.
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[_RNG_KEY] = collect_rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if _RNG_KEY in checkpoint:
            set_rng_states(checkpoint[_RNG_KEY])
