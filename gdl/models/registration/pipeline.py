"""``RegistrationPipeline``: any subset of pre-alignment, deep flow and fine-tuning, in that order.

Each step sees the source as warped by the previous ones and adds its displacement:

    u_0 = 0,   u <- u + step(x + u, y),   pipeline(x, y) = u     (x: (N, 3), y: (M, 3)).

A step whose ``forward`` takes ``initial`` (``Finetune``) sees the original source instead,
u <- step(x, y, initial=u), so that the motions it fits (a rigid background) are motions of x.

Ragged batches: ``batch_source`` and ``batch_target`` as in the registry operators.
"""

from __future__ import annotations

import inspect

import torch

from gdl.ops.batching import batch_pair
from gdl.ops.checks import check_batch, check_pair, check_points

STEPS = ("prealign", "flow", "finetune")


class RegistrationPipeline(torch.nn.Module):
    """Compose ``prealign``, ``flow`` and ``finetune`` modules (each optional, None skips it)."""

    def __init__(self, prealign=None, flow=None, finetune=None):
        super().__init__()
        self.prealign, self.flow, self.finetune = prealign, flow, finetune
        if not any(step is not None for step in (prealign, flow, finetune)):
            raise ValueError("RegistrationPipeline needs at least one of prealign, flow, finetune")

    @property
    def steps(self) -> list[str]:
        return [name for name in STEPS if getattr(self, name) is not None]

    def forward(self, source, target, batch_source=None, batch_target=None, timings: dict | None = None):
        check_points("source", source, dim=3)
        check_points("target", target, dim=3)
        check_pair(source, target, "source", "target")
        check_batch("batch_source", batch_source, source.shape[0], source.device)
        check_batch("batch_target", batch_target, target.shape[0], target.device)
        batch_pair(batch_source, batch_target, source.shape[0], target.shape[0], "batch_source", "batch_target")
        displacement = torch.zeros_like(source)
        for name in self.steps:
            start = _clock(source.device)
            step = getattr(self, name)
            if "initial" in inspect.signature(step.forward).parameters:
                displacement = step(source, target, batch_source, batch_target, initial=displacement)
            else:
                displacement = displacement + step(source + displacement, target, batch_source, batch_target)
            if timings is not None:
                timings[name] = _clock(source.device) - start
        return displacement


def _clock(device: torch.device) -> float:
    import time

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# Step parameters for metre-scale lidar scenes (KITTI) and unit-scale lung trees (1 unit = 100 mm);
# "lddmm" parametrises the diffeomorphic fine-tuning (``finetune_model="lddmm"``).
PRESETS = {
    "kitti": {
        "prealign": dict(
            mode="rigid", blurs=(2.0, 1.0, 0.5, 0.25, 0.1, 0.05), reach_factor=3.0, iterations=3, num_points=2048,
            scaling=0.7, robust_factor=1.0,
        ),
        "finetune": dict(
            blurs=(1.0, 0.5, 0.2, 0.1), reach_factor=(5.0, 10.0, 10.0, 20.0), smoothing=(2.0, 2.0, 1.0, 0.5),
            iterations=1, keep_sigma=0.5, background="rigid",
            rigid_scales=(0.2, 0.1, 0.05, 0.02), rigid_layers=2,
        ),
        "lddmm": dict(sigma=2.0, steps=5, num_controls=512, blur=0.1, reach=2.0, iterations=30, lr=0.1),
    },
    "lung": {
        "prealign": dict(mode="affine", blurs=(0.2, 0.05), reach_factor=None, iterations=2, num_points=4096, scaling=0.7),
        "finetune": dict(blurs=(0.03, 0.01), reach_factor=5.0, smoothing=0.03, iterations=2),
        "lddmm": dict(sigma=0.1, steps=5, num_controls=512, blur=0.01, reach=None, iterations=30, lr=0.01),
    },
}


def load_flow(checkpoint, **model_options) -> torch.nn.Module:
    """The flow model of a ``FlowTask`` checkpoint.

    The architecture comes from the Hydra config of the run (``<run>/.hydra/config.yaml`` beside
    ``<run>/checkpoints/``) when present, else from ``model_options`` (FlowPyramid arguments).
    """
    from pathlib import Path

    from gdl.models.registration.flow import FlowPyramid

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
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model.eval()


FINETUNE_MODELS = ("ot", "lddmm")


def build_pipeline(
    steps, preset: str = "kitti", checkpoint=None, backend: str = "auto", finetune_model: str = "ot"
) -> RegistrationPipeline:
    """A pipeline of the named ``steps`` (any subset of prealign, flow, finetune) with ``preset``
    parameters. ``finetune_model``: "ot" (robust OT + Nadaraya-Watson smoothing, may tear) or
    "lddmm" (optimised geodesic shooting, a diffeomorphism)."""
    from gdl.models.registration.finetune import Finetune
    from gdl.models.registration.lddmm import LDDMMRegistration
    from gdl.models.registration.prealign import Prealign

    steps = [steps] if isinstance(steps, str) else list(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ValueError(f"steps must be a non-empty subset of {STEPS}, got {steps}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    if finetune_model not in FINETUNE_MODELS:
        raise ValueError(f"finetune_model must be one of {FINETUNE_MODELS}, got {finetune_model!r}")
    if "flow" in steps and checkpoint is None:
        raise ValueError("the flow step needs a checkpoint (train one with: python train.py experiment=kitti_flow)")
    params = PRESETS[preset]
    finetune = None
    if "finetune" in steps:
        finetune = (
            LDDMMRegistration(**params["lddmm"], backend=backend)
            if finetune_model == "lddmm"
            else Finetune(**params["finetune"], backend=backend)
        )
    return RegistrationPipeline(
        prealign=Prealign(**params["prealign"], backend=backend) if "prealign" in steps else None,
        flow=load_flow(checkpoint) if "flow" in steps else None,
        finetune=finetune,
    )
