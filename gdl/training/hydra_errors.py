"""Hydra's own errors (an override it cannot apply, a config option that does not exist) in one line.

Hydra prints these over several lines, with a hint about ``HYDRA_FULL_ERROR``. ``train.py`` and
``eval.py`` let Hydra raise them (``HYDRA_FULL_ERROR=1``, unless the user set it) and print
``error: <Hydra's message on one line>`` instead.
"""

from __future__ import annotations

import os
import re
import sys


def run_reporting_hydra_errors(main) -> None:
    """Call the ``@hydra.main`` function ``main``; exit with one ``error:`` line on a Hydra error."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        sys.exit(f"error: {one_line(error)}")
    except ValueError as error:  # Hydra refuses GROUP=null with a bare ValueError
        if not str(error).startswith("Config group override must be"):
            raise
        sys.exit(f"error: {null_group(sys.argv[1:])}")


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
