"""The best checkpoints by a monitored metric, kept across a resume into a new run folder.

A resumed run writes into its own folder. Lightning's ``ModelCheckpoint`` then forgets the scores of
the best checkpoints saved before the interruption (their folder differs), so the resumed run's
"best" is only the best since the resume and its test step evaluates other weights than the
uninterrupted run would. This ``ModelCheckpoint`` copies those checkpoints into the new folder and
keeps their scores: the resumed run's folder holds the best checkpoints of the whole training.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) whose top-k survive a resume into another ``dirpath``."""

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
