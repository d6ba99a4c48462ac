"""The registry of symbolic operators: ``gdl.ops.get(name, **params)`` builds an ``nn.Module``.

Every operator takes ``backend="auto" | "keops" | "torch"``, points of shape (N, D) and ragged
batches as sorted int64 ``batch`` vectors. :func:`available` lists the registered names.
"""

import importlib
import pkgutil

from gdl.ops.core.backend import keops_status, resolve_backend
from gdl.ops.core.registry import available, get, register

# Built-in operators register themselves when their module is imported: import them all.
# gdl.ops.core holds the machinery they share (backends, batches, locality, the windowed engine).
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and not _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["available", "get", "register", "keops_status", "resolve_backend"]
