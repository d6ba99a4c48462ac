"""The flow model of a ``FlowTask`` checkpoint, for the flow step of a registration."""

from __future__ import annotations

from pathlib import Path

import torch


def load_flow_model(checkpoint, **model_options) -> torch.nn.Module:
    """The flow model of a ``FlowTask`` checkpoint, in eval mode.

    The architecture comes from the Hydra config of the run (``<run>/.hydra/config.yaml`` beside
    ``<run>/checkpoints/``) when present, else from ``model_options`` (FlowPyramid arguments).
    """
    from gdl.models.registration.flow import FlowPyramid

    if checkpoint is None:
        raise ValueError("checkpoint: expected a FlowTask checkpoint file, got None")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"flow checkpoint not found: {checkpoint}")
    config = checkpoint.resolve().parent.parent / ".hydra" / "config.yaml"
    if config.is_file() and not model_options:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        model = instantiate(OmegaConf.load(config).model)
    else:
        model = FlowPyramid(**model_options)
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(content, dict) or "state_dict" not in content:
        raise ValueError(f"{checkpoint}: not a Lightning checkpoint (no state_dict)")
    state = {k[len("model."):]: v for k, v in content["state_dict"].items() if k.startswith("model.")}
    if not state:
        raise ValueError(f"{checkpoint}: holds no model.* weights: not a FlowTask checkpoint")
    model.load_state_dict(state)
    return model.eval()
