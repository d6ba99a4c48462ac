"""Which task a checkpoint belongs to, so that loading one of another task fails in one clear line.

Every checkpoint written by ``train.py`` records its task class and run name (``kitti_flow``,
``protein_site`` ...). :func:`load_task_checkpoint` reads a checkpoint and refuses it when its task is
not the expected one: ``run.ckpt: this is a kitti_flow checkpoint (gdl.tasks.flow.FlowTask), not a
protein_site one``, instead of a list of missing weights. Checkpoints written before the record
existed are compared by their hyper-parameter names with the expected task's constructor.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from lightning.pytorch import Callback

KEY = "gdl_task"


class WrongTaskError(ValueError):
    """A checkpoint of another task than the one expected."""


def class_path(obj) -> str:
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class RecordTask(Callback):
    """Store ``{"class": <task class path>, "name": run_name}`` in every checkpoint under ``gdl_task``."""

    def __init__(self, run_name: str):
        self.run_name = run_name

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[KEY] = {"class": class_path(pl_module), "name": self.run_name}


def _constructor_parameters(target: str) -> set[str] | None:
    from hydra.utils import get_class

    try:
        return set(inspect.signature(get_class(target)).parameters) - {"self", "model"}
    except Exception:  # noqa: BLE001 - the expected class cannot be inspected: no fallback check
        return None


def check_task(checkpoint: dict, expected_class: str, expected_name: str, source="checkpoint") -> None:
    """Raise :class:`WrongTaskError` when ``checkpoint`` is not one of ``expected_class``."""
    record = checkpoint.get(KEY)
    if record is not None:
        if record["class"] != expected_class:
            raise WrongTaskError(f"{source}: this is a {record['name']} checkpoint ({record['class']}), not a {expected_name} one")
        return
    hyper_parameters = set(checkpoint.get("hyper_parameters") or {})
    expected = _constructor_parameters(expected_class)
    if hyper_parameters and expected is not None and not hyper_parameters <= expected:
        foreign = ", ".join(sorted(hyper_parameters - expected))
        raise WrongTaskError(f"{source}: not a {expected_name} checkpoint (its settings {foreign} are not those of {expected_class})")


def load_task_checkpoint(path, expected_class: str, expected_name: str) -> dict:
    """``torch.load`` of the checkpoint at ``path`` (on the CPU), after checking it is one of ``expected_class``.

    Raises ``FileNotFoundError`` or :class:`WrongTaskError`, each with a one-line message naming the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure: not a checkpoint
        raise WrongTaskError(f"{path}: not a checkpoint file ({type(error).__name__}: {(str(error).splitlines() or [''])[0]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise WrongTaskError(f"{path}: not a Lightning checkpoint (no state_dict)")
    check_task(checkpoint, expected_class, expected_name, source=path)
    return checkpoint
