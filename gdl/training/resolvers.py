"""OmegaConf resolvers used by the training configs."""

from __future__ import annotations

from omegaconf import OmegaConf


def run_name() -> str:
    """The chosen experiment's name, else the data config's name: the folder of a run under ``logs/``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "train"
    choices = HydraConfig.get().runtime.choices
    return choices.get("experiment") or choices.get("data") or "train"


def register_resolvers() -> None:
    """Register ``${gdl_run_name:}``; safe to call more than once."""
    OmegaConf.register_new_resolver("gdl_run_name", run_name, replace=True)
