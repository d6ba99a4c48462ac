"""The run configuration: the OmegaConf resolvers its files use, and the checks of a composed config.

``${gdl_run_name:}`` (registered by :func:`register_resolvers`) is the chosen experiment's name.

The checks fail before training starts, naming the key at fault. Hydra already rejects unknown
top-level keys (``foo=1``); :func:`check_config` covers what it cannot see: targets that do not
import, keys that the target's constructor does not take, values of the wrong type for the
constructor's annotation, values out of range for parameters whose range is known by name
(``max_epochs``, ``batch_size``, ``lr`` ...), data files and folders that do not exist, and the
run-level settings. Every error reads ``<key>: <what is wrong> (got <value>)``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import pydoc
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from omegaconf import DictConfig, ListConfig, OmegaConf

from gdl.training.errors import ConfigError

_PATH_KEY = re.compile(r"(^|_)(dir|root|folder|path)$")
_OUTPUT_KEY = re.compile(r"^(cache|output|log|save|out)_")
_SCALARS = (bool, int, float, str)


def run_name() -> str:
    """The chosen experiment's name, else the data config's name: the folder of a run under ``logs/``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "train"
    choices = HydraConfig.get().runtime.choices
    return choices.get("experiment") or choices.get("data") or "train"


def sample_dir(name: str) -> str:
    """The folder of the sample ``name`` shipped in ``gdl/samples`` (``${gdl_sample:proteins}``)."""
    from gdl.data.synthetic import sample_folder

    path = sample_folder(name)
    if not path.is_dir():
        raise ValueError(f"no sample {name!r} in {path.parent}")
    return str(path)


def register_resolvers() -> None:
    """Register ``${gdl_run_name:}`` and ``${gdl_sample:NAME}``; safe to call more than once."""
    OmegaConf.register_new_resolver("gdl_run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("gdl_sample", sample_dir, replace=True)


def _at_least(low: float, note: str = ""):
    return lambda value: value >= low, f"must be at least {low:g}{note}"


def _fraction_or_count(value) -> bool:
    return value >= 0 if isinstance(value, int) else 0.0 <= value <= 1.0


# parameter name -> (test of a number, what the number must be); applied wherever the name appears
_RANGES = {
    "max_epochs": _at_least(-1, " (-1: no limit)"),
    "min_epochs": _at_least(0),
    "max_steps": _at_least(-1, " (-1: no limit)"),
    "min_steps": _at_least(0),
    "batch_size": _at_least(1),
    "num_workers": _at_least(0),
    "num_nodes": _at_least(1),
    "num_points": _at_least(1),
    "accumulate_grad_batches": _at_least(1),
    "check_val_every_n_epoch": _at_least(1),
    "log_every_n_steps": _at_least(1),
    "every_n_epochs": _at_least(0),
    "num_sanity_val_steps": _at_least(-1, " (-1: all validation batches)"),
    "patience": _at_least(0),
    "save_top_k": _at_least(-1, " (-1: keep all)"),
    "gradient_clip_val": _at_least(0),
    "weight_decay": _at_least(0),
    "lr": (lambda value: value > 0, "must be positive"),
    "devices": (lambda value: value >= 1 or value == -1, "must be at least 1, or -1 for all devices"),
    **{
        f"limit_{split}_batches": (_fraction_or_count, "must be a fraction in [0, 1] or a count of batches >= 0")
        for split in ("train", "val", "test", "predict")
    },
    "overfit_batches": (_fraction_or_count, "must be a fraction in [0, 1] or a count of batches >= 0"),
}


# targets that need an optional package: (modules any of which will do, the gdl extra that installs one)
_OPTIONAL = {"lightning.pytorch.loggers.TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard")}


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _check_optional(key: str, target: str) -> None:
    modules, extra = _OPTIONAL.get(target, ((), ""))
    if modules and not any(_installed(module) for module in modules):
        raise ConfigError(f"{key}: {target.rsplit('.', 1)[-1]} needs the {modules[0]} package, not installed: pip install 'gdl[{extra}]' (or pip install {modules[0]})")


def _describe(annotation) -> str:
    """A type annotation in words: ``Optional[int]`` -> 'an integer or null'."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(option) for option in typing.get_args(annotation)))
    if origin is Literal:
        return "one of " + ", ".join(repr(option) for option in typing.get_args(annotation))
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in words:
        return words[annotation]
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _check_range(key: str, name: str, value) -> None:
    if name not in _RANGES or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    test, requirement = _RANGES[name]
    if not math.isfinite(value) or not test(value):
        raise ConfigError.at(f"{key}.{name}", requirement, value)


def _locate(key: str, target: str):
    """The class or function a ``_target_`` names (pydoc's lookup: nothing logged when it is not a class)."""
    try:
        found = pydoc.locate(target)
    except pydoc.ErrorDuringImport as error:
        raise ConfigError.at(f"{key}._target_", f"cannot import it ({str(error.value).splitlines()[0]})", target) from None
    if found is None:
        raise ConfigError.at(f"{key}._target_", "cannot import it (no such module or attribute)", target)
    return found


def _signature(obj) -> tuple[inspect.Signature | None, dict[str, Any]]:
    function = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None, {}
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type checks for this target
        hints = {}
    return signature, hints


def _matches(value, annotation) -> bool:
    """Whether a scalar value fits a simple annotation; annotations not understood here accept anything."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(annotation))
    if origin is Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def _check_node(key: str, node: DictConfig, provided: tuple[str, ...] = ()) -> None:
    _check_optional(key, node["_target_"])
    target = _locate(key, node["_target_"])
    signature, hints = _signature(target)
    if signature is None:
        return
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in node:
        if name.startswith("_") and name.endswith("_"):
            continue
        if name not in parameters and not takes_any:
            known = [p for p in parameters if p != "self"]
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{key}.{name}: not a parameter of {node['_target_']}; {hint}it takes {', '.join(known)}")
        value = node[name]
        none_by_default = value is None and name in parameters and parameters[name].default is None
        if name in hints and not none_by_default and (value is None or isinstance(value, _SCALARS)) and not _matches(value, hints[name]):
            raise ConfigError.at(f"{key}.{name}", f"expected {_describe(hints[name])}", value)
        _check_range(key, name, value)
    missing = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in node
        and name not in provided
        and name != "self"
    ]
    if missing and not node.get("_partial_", False):
        raise ConfigError(f"{key}: missing required parameter(s) {', '.join(missing)} of {node['_target_']} (add them with +{key}.NAME=VALUE)")


def _check_paths(key: str, node) -> None:
    """Every input ``*dir``/``*root``/``*folder``/``*path`` string under ``node`` must exist (outputs may not yet)."""
    if isinstance(node, DictConfig):
        for name in node:
            value = node[name]
            is_input = _PATH_KEY.search(str(name)) and not _OUTPUT_KEY.match(str(name))
            if isinstance(value, str) and is_input and not Path(value).exists():
                raise ConfigError.at(f"{key}.{name}", "no such file or folder", value)
            _check_paths(f"{key}.{name}", value)
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            _check_paths(f"{key}[{index}]", value)


def _instantiable_nodes(key: str, node):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield key, node
        for name in node:
            if name != "_target_":
                yield from _instantiable_nodes(f"{key}.{name}", node[name])
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            yield from _instantiable_nodes(f"{key}[{index}]", value)


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first key of ``cfg`` that cannot work."""
    try:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    except Exception as error:  # noqa: BLE001 - omegaconf names the key in its message
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{getattr(error, 'full_key', '') or 'config'}: {message}") from None
    seed = resolved.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError.at("seed", "expected an integer or null", seed)
    for flag in ("train", "test"):
        if flag in resolved and not isinstance(resolved[flag], bool):
            raise ConfigError.at(flag, "expected true or false", resolved[flag])
    if "monitor_mode" in resolved and resolved.monitor_mode not in ("min", "max"):
        raise ConfigError.at("monitor_mode", "expected min or max", resolved.monitor_mode)
    if "monitor" in resolved and not (isinstance(resolved.monitor, str) and "/" in resolved.monitor):
        raise ConfigError.at("monitor", "expected a logged metric such as val/loss", resolved.monitor)
    if resolved.get("train") is False and resolved.get("test") and resolved.get("ckpt_path") is None:
        raise ConfigError.at("ckpt_path", "testing without training needs a checkpoint: ckpt_path=PATH or ckpt_path=last", None)
    for group in ("data", "model", "task", "trainer"):
        if not isinstance(resolved.get(group), DictConfig) or "_target_" not in resolved[group]:
            raise ConfigError(f"{group}: no configuration with a _target_ (choose one with {group}=NAME)")
    _check_paths("data", resolved.data)
    provided = {"task": ("model",), "trainer": ("callbacks", "logger")}
    for group in ("data", "model", "task", "trainer", "callbacks", "logger"):
        for key, node in _instantiable_nodes(group, resolved.get(group)):
            _check_node(key, node, provided.get(key, ()))
