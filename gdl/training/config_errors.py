"""The error raised for a bad configuration, before any run folder, logger or model is made."""

from __future__ import annotations

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
