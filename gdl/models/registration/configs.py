"""Registration configs: the Hydra group ``configs/registration/`` (one file per preset, a
``_target_`` for the pipeline and each step), composed with command-line style overrides.

    cfg = registration_config("lung", ["finetune.blurs=[0.03,0.01]"])   # or "registration.finetune..."
    pipeline = build_pipeline(["prealign", "finetune"], "lung", overrides=["prealign.num_points=2048"])

Overrides use Hydra's grammar (``key=value``, ``+key=value``, ``~key``); ``sweep(overrides)`` expands
``key=a,b,c`` choices into one override list per combination, as a Hydra multirun does.
"""

from __future__ import annotations

import itertools
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "registration"
STEPS = ("prealign", "flow", "finetune")
FINETUNE_MODELS = ("ot", "lddmm")


def presets() -> list[str]:
    """The preset names: the files of ``configs/registration/``."""
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(f"registration configs not found at {CONFIG_DIR} (run from a clone of the gdl repository)")
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def _parse(overrides):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides([str(o) for o in overrides])
    except OverrideParseException as error:
        raise ValueError(f"overrides: {error}") from None


def _relative(key: str) -> str:
    return key[len("registration."):] if key.startswith("registration.") else key


def registration_config(preset: str = "kitti", overrides=()):
    """The composed config of ``preset`` (a file of configs/registration/) with ``overrides`` applied."""
    from omegaconf import OmegaConf

    names = presets()
    parsed = _parse(overrides)
    for override in parsed:  # registration=NAME picks the preset, as on a Hydra command line
        if override.key_or_group == "registration" and not override.is_delete():
            preset = str(override.value())
    if preset not in names:
        raise ValueError(f"preset must be one of {names}, got {preset!r}")
    cfg = OmegaConf.load(CONFIG_DIR / f"{preset}.yaml")
    for override in parsed:
        if override.key_or_group == "registration":
            continue
        if override.is_sweep_override():
            raise ValueError(f"overrides: {override.input_line!r} is a sweep; expand it with sweep() first")
        key = _relative(override.key_or_group)
        exists = OmegaConf.select(cfg, key, default="__missing__") != "__missing__"
        if override.is_delete():
            if not exists:
                raise ValueError(f"overrides: cannot delete {key!r}: the {preset} preset has no such key")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            node.pop(leaf)
        elif override.is_add() or exists:
            OmegaConf.update(cfg, key, override.value(), force_add=True)
        else:
            raise ValueError(f"overrides: {key!r} is not a key of the {preset} preset (add it with +{key}=...)")
    return cfg


def sweep(overrides) -> list[list[str]]:
    """One override list per combination of the ``key=a,b,c`` choices in ``overrides``."""
    choices = []
    for override in _parse(overrides):
        if override.is_sweep_override():
            choices.append([f"{override.key_or_group}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combination) for combination in itertools.product(*choices)]


def build_pipeline(
    steps, preset: str = "kitti", checkpoint=None, backend: str = "auto", finetune_model: str = "ot", overrides=()
):
    """A ``RegistrationPipeline`` of the named ``steps`` (any subset of prealign, flow, finetune)
    from the ``preset`` config. ``finetune_model``: "ot" (robust OT + Nadaraya-Watson smoothing, may
    tear) or "lddmm" (optimised geodesic shooting, a diffeomorphism: the ``<preset>_lddmm`` config).
    ``checkpoint``: the FlowTask checkpoint of the flow step."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    steps = [steps] if isinstance(steps, str) else list(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ValueError(f"steps must be a non-empty subset of {STEPS}, got {steps}")
    if finetune_model not in FINETUNE_MODELS:
        raise ValueError(f"finetune_model must be one of {FINETUNE_MODELS}, got {finetune_model!r}")
    if finetune_model == "lddmm":
        preset = f"{preset}_lddmm"
    cfg = registration_config(preset, overrides)
    for step in STEPS:
        if step not in steps:
            cfg[step] = None
        elif cfg.get(step) is None:
            raise ValueError(f"the {preset} preset has no {step} step")
        elif "backend" in cfg[step]:
            cfg[step].backend = backend
    if "flow" in steps:
        if checkpoint is not None:
            cfg.flow.model.checkpoint = str(checkpoint)
        if cfg.flow.model.get("checkpoint") is None:
            raise ValueError("the flow step needs a checkpoint (train one with: python train.py experiment=kitti_flow)")
    try:
        return instantiate(cfg, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError)):
            raise type(cause)(f"{preset} preset: {cause}") from None
        raise
