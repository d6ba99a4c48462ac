"""Evaluate a checkpoint on the test split: ``python eval.py experiment=NAME ckpt_path=PATH|last``.

Same configs as ``train.py`` (``eval.yaml`` sets ``train=false``, ``test=true``); the metrics are
printed and logged like a training run's.
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from gdl.training.resolvers import register_resolvers

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("GDL_PROJECT_ROOT", str(ROOT))
register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from gdl.training.config_errors import ConfigError
    from gdl.training.pipeline import run

    try:
        return run(cfg, source_folder=ROOT)
    except (ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    from gdl.training.hydra_errors import run_reporting_hydra_errors

    run_reporting_hydra_errors(main, ROOT / "configs", "eval")
