"""The flow model of a ``FlowTask`` checkpoint, for the flow step of a registration."""

from __future__ import annotations

from pathlib import Path

import torch


def load_flow_model(checkpoint, **model_options) -> torch.nn.Module:
    """The flow model of a ``FlowTask`` checkpoint, in eval mode.

    The architecture comes from ``model_options`` (FlowPyramid arguments) when given, else from the
    settings the checkpoint records, else from the Hydra config of its run
    (``<run>/.hydra/config.yaml`` beside ``<run>/checkpoints/``, for checkpoints that record none).
    """
    from gdl.models.registration.flow import FlowPyramid
    from gdl.tasks.flow import MODEL_CONFIG_KEY

    if checkpoint is None:
        raise ValueError("checkpoint: expected a FlowTask checkpoint file, got None")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"flow checkpoint not found: {checkpoint}")
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(content, dict) or "state_dict" not in content:
        raise ValueError(f"{checkpoint}: not a Lightning checkpoint (no state_dict)")
    state = {k[len("model."):]: v for k, v in content["state_dict"].items() if k.startswith("model.")}
    if not state:
        raise ValueError(f"{checkpoint}: holds no model.* weights: not a FlowTask checkpoint")
    run_config = checkpoint.resolve().parent.parent / ".hydra" / "config.yaml"
    if model_options:
        model, source = FlowPyramid(**model_options), "the given model options"
    elif MODEL_CONFIG_KEY in content:
        model, source = FlowPyramid(**content[MODEL_CONFIG_KEY]), "the settings it records"
    elif run_config.is_file():
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        model, source = instantiate(OmegaConf.load(run_config).model), str(run_config)
    else:
        model, source = FlowPyramid(), "FlowPyramid's defaults"
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise ValueError(
            f"{checkpoint}: its weights do not fit the network built from {source} ({first}); "
            "keep the checkpoint in its run folder (beside .hydra/) or give the model options of its training"
        ) from None
    return model.eval()
