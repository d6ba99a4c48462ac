"""Random number generator states carried in checkpoints, so that a resumed run draws what the
uninterrupted run would have drawn (data shuffling, random sampling, dropout)."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import Callback

_KEY = "rng_states"


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
        checkpoint[_KEY] = collect_rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if _KEY in checkpoint:
            set_rng_states(checkpoint[_KEY])
