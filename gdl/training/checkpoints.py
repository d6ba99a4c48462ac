"""Finding the checkpoint to resume from: ``ckpt_path=last`` is the newest ``last.ckpt`` of an experiment."""

from __future__ import annotations

from pathlib import Path

from gdl.training.config_errors import ConfigError


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
