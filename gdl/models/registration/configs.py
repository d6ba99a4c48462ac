"""Registration configs: the Hydra config folder ``configs/registration/`` (one file per preset, a
``_target_`` for the pipeline and each step; the fine-tuning step is the group ``finetune/``, so that
``kitti_lddmm`` is ``kitti`` with ``finetune: kitti_lddmm``), composed with command-line overrides.

    cfg = registration_config("lung", ["finetune.blurs=[0.03,0.01]"])   # or "registration.finetune..."
    pipeline = build_pipeline(["prealign", "finetune"], "lung", overrides=["prealign.num_points=2048"])

The package reads the presets at ``PRESETS`` (``gdl/models/registration/presets``, a link to
``configs/registration`` in the repository, a copy in an installed package): edit them in ``configs/``.
Overrides use Hydra's grammar (``key=value``, ``+key=value``, ``~key``, ``finetune=lung_lddmm``);
``sweep(overrides)`` expands ``key=a,b,c`` choices into one override list per combination, as a Hydra
multirun does.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from gdl.models.registration.pipeline import STEPS

PRESETS = Path(__file__).parent / "presets"
FINETUNE_MODELS = ("ot", "lddmm")


def presets() -> list[str]:
    """The preset names: the files of ``configs/registration/`` (its sub-folders are config groups)."""
    if not PRESETS.is_dir():
        raise FileNotFoundError(f"registration presets not found at {PRESETS}")
    return sorted(path.stem for path in PRESETS.glob("*.yaml"))


def _parse(overrides):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides([str(o) for o in overrides])
    except OverrideParseException as error:
        raise ValueError(f"overrides: {error}") from None


def registration_config(preset: str = "kitti", overrides=()):
    """The composed config of ``preset`` (a file of configs/registration/) with ``overrides`` applied;
    ``registration=NAME`` among them picks the preset, as on a training command line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    names = presets()
    relative = []
    for override in _parse(overrides):
        if override.key_or_group == "registration" and not override.is_delete():
            preset = str(override.value())
        elif override.is_sweep_override():
            raise ValueError(f"overrides: {override.input_line!r} is a sweep; expand it with sweep() first")
        else:
            relative.append(re.sub(r"^([+~]*)registration\.", r"\1", override.input_line))
    if preset not in names:
        raise ValueError(f"preset must be one of {names}, got {preset!r}")
    outer = get_gh_backup()  # composing inside a running Hydra application leaves it as it was
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(PRESETS.absolute()), version_base="1.3"):
            return compose(preset, relative)
    except HydraException as error:
        raise ValueError(f"overrides of the {preset} preset: {error}".replace("\n", " ")) from None
    finally:
        restore_gh_from_backup(outer)


def sweep(overrides) -> list[list[str]]:
    """One override list per combination of the ``key=a,b,c`` choices in ``overrides``."""
    choices = []
    for override in _parse(overrides):
        if override.is_sweep_override():
            choices.append([f"{override.key_or_group}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combination) for combination in itertools.product(*choices)]


def build_pipeline(steps, preset: str = "kitti", checkpoint=None, finetune_model: str = "ot", overrides=()):
    """A ``RegistrationPipeline`` of the named ``steps`` (any subset of prealign, flow, finetune)
    from the ``preset`` config. ``finetune_model``: "ot" (robust OT + Nadaraya-Watson smoothing, may
    tear) or "lddmm" (optimised geodesic shooting, a diffeomorphism: the ``<preset>_lddmm`` config).
    ``checkpoint``: the FlowTask checkpoint of the flow step. Each step's settings, its ``backend``
    included, are the preset's and the ``overrides`` (``finetune.backend=torch``)."""
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
