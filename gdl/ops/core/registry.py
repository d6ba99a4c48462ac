"""The operator registry: names to ``nn.Module`` classes, extended by installed plugins.

Built-in operators register themselves with ``@register(name)``. A third-party package adds its own
by declaring an entry point in the group ``gdl.ops``; the entry point's name is the operator name and
its object is the class::

    [project.entry-points."gdl.ops"]
    my_op = "my_package.my_module:MyOperator"
"""

from __future__ import annotations

import difflib
import warnings
from importlib.metadata import entry_points

import torch

ENTRY_POINT_GROUP = "gdl.ops"

_operators: dict[str, type[torch.nn.Module]] = {}
_plugins_loaded = False


def register(name: str):
    """Class decorator adding an ``nn.Module`` subclass to the registry under ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty string, got {name!r}")

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise TypeError(f"register({name!r}): expected an nn.Module subclass, got {cls!r}")
        existing = _operators.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"register: the name {name!r} is already taken by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _operators[name] = cls
        cls.registry_name = name
        return cls

    return decorator


def _load_plugins() -> None:
    """Import every entry point of the ``gdl.ops`` group once; a broken plugin only warns."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if _operators.get(entry.name) is not cls:
                register(entry.name)(cls)
        except Exception as error:  # a third-party failure must not break gdl itself
            warnings.warn(
                f"gdl.ops: plugin {entry.name!r} ({entry.value}) could not be loaded: {error}",
                RuntimeWarning,
                stacklevel=2,
            )


def available() -> list[str]:
    """Sorted names of every registered operator, plugins included."""
    _load_plugins()
    return sorted(_operators)


def get(name: str, **params) -> torch.nn.Module:
    """Build the operator registered as ``name`` with keyword parameters ``params``."""
    _load_plugins()
    if name not in _operators:
        close = difflib.get_close_matches(str(name), list(_operators), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise KeyError(
            f"unknown operator {name!r}: {hint}available operators: {', '.join(available())}"
        )
    return _operators[name](**params)
