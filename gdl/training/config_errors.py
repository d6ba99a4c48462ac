"""The error raised for a bad configuration, before any training starts."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message starts with its key (``trainer.max_epochs: ...``)."""
