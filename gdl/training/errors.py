"""The errors a run reports in one line: ``error: <what is wrong>``, never a traceback.

- :class:`ConfigError`: a configuration value that cannot work, found before any run folder, logger
  or model is made;
- :class:`NonFiniteLossError`: the training loss became NaN or infinite (raised by
  :class:`gdl.training.callbacks.StopOnNonFiniteLoss`);
- Hydra's own errors (an override it cannot apply, a config option that does not exist), which Hydra
  prints over several lines with a hint about ``HYDRA_FULL_ERROR``. ``train.py`` and ``eval.py`` let
  Hydra raise them (``HYDRA_FULL_ERROR=1``, unless the user set it) and print
  ``error: <Hydra's message on one line>`` instead. A key that does not exist
  (``trainer.max_epoch=3``) is answered with the closest existing one, found in the config composed
  from the command line's group choices.
"""

from __future__ import annotations

import difflib
import inspect
import os
import pydoc
import re
import sys
from pathlib import Path

_NOTHING = object()


class ConfigError(ValueError):
    """A configuration value that cannot work: ``<key>: <what is wrong> (got <value>)``, one line."""

    @classmethod
    def at(cls, key: str, problem: str, got=_NOTHING) -> ConfigError:
        """The error for ``key``; ``got`` is the value found (left out when there is none)."""
        shown = "" if got is _NOTHING else f" (got {_show(got)})"
        return cls(f"{key}: {problem}{shown}")


def _show(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 200 else text[:197] + "..."


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def run_reporting_hydra_errors(main, config_dir: Path, config_name: str) -> None:
    """Call the ``@hydra.main`` function ``main`` (whose primary config is ``config_dir/config_name``);
    exit with one ``error:`` line on a Hydra error."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        message = one_line(error)
        unknown = re.match(r"(\S+): no such key in the config", message)
        if unknown:
            closest = closest_key(unknown.group(1), config_dir, config_name, sys.argv[1:])
            if closest:
                message = message.replace("no such key in the config", f"no such key in the config; did you mean {closest}?")
        sys.exit(f"error: {message}")
    except ValueError as error:  # Hydra refuses GROUP=null with a bare ValueError
        if not str(error).startswith("Config group override must be"):
            raise
        sys.exit(f"error: {null_group(sys.argv[1:])}")


def closest_key(key: str, config_dir: Path, config_name: str, arguments: list[str]) -> str | None:
    """The existing key closest to ``key`` (same parent node): among the node's keys and the parameters
    of its ``_target_``, in the config composed with the group choices and ``hydra.*`` overrides of
    ``arguments`` (other values cannot add or remove keys, and may hold more mistakes)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, OmegaConf

    parent, _, name = key.rpartition(".")
    settings = [(argument, argument.partition("=")[0]) for argument in arguments if "=" in argument]
    others = [argument for argument, setting in settings if "." not in setting.lstrip("+~") or setting.startswith("hydra.")]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base="1.3"):
            config = compose(config_name, overrides=others)
        node = OmegaConf.select(config, parent) if parent else config
    except Exception:  # noqa: BLE001 - no suggestion rather than a second error
        return None
    if not isinstance(node, DictConfig):
        return None
    candidates = [str(k) for k in node.keys() if not str(k).startswith("_")]
    target = pydoc.locate(node["_target_"]) if isinstance(node.get("_target_"), str) else None
    if callable(target):
        try:
            candidates += [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
        except (TypeError, ValueError):
            pass
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"{parent}.{close[0]}" if close and parent else (close[0] if close else None)


def null_group(arguments) -> str:
    """What is wrong with ``GROUP=null`` on the command line, and how to drop a group's default."""
    for argument in arguments:
        key, _, value = argument.partition("=")
        if value == "null" and "." not in key and not key.startswith(("+", "~")):
            return f"{key}: a config group cannot be null (drop its default with ~{key})"
    return "a config group cannot be null (drop its default with ~GROUP)"


def one_line(error: BaseException) -> str:
    """``<key>: <what is wrong>`` for the common cases, else Hydra's message on one line without its hints."""
    text = str(error)
    unknown = re.search(r"Could not override '([^']+)'\.\s*To append to your config use (\S+)", text)
    if unknown:
        return f"{unknown.group(1)}: no such key in the config (a new key is added with {unknown.group(2)})"
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing:
        group, option = missing.groups()
        listed = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        options = ", ".join(line.strip() for line in listed.group(1).splitlines() if line.strip()) if listed else ""
        return f"{group}: no option {option!r}" + (f" (available: {options})" if options else "")
    text = " ".join(text.split("Config search path:")[0].split("See https://")[0].split())
    override = getattr(error, "override", None)
    return f"{override}: cannot parse this override ({text})" if override else text
