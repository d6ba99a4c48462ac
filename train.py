"""Train a task: ``python train.py experiment=NAME key=value ...`` (configs in ``configs/``, entry ``train.yaml``).

With no arguments it trains the default experiment on the sample shipped with gdl. ``ckpt_path=last``
resumes the newest ``last.ckpt`` of the experiment; ``-m`` sweeps over comma-separated values.
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


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from gdl.training.config_errors import ConfigError
    from gdl.training.nan_guard import NonFiniteLossError
    from gdl.training.pipeline import run

    try:
        return run(cfg, source_folder=ROOT)
    except (ConfigError, NonFiniteLossError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    from gdl.training.hydra_errors import run_reporting_hydra_errors

    run_reporting_hydra_errors(main, ROOT / "configs", "train")
