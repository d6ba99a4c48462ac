"""The registry of symbolic operators: ``gdl.ops.get(name, **params)`` builds an ``nn.Module``.

Every operator takes ``backend="auto" | "keops" | "torch"``, points of shape (N, D) and ragged
batches as sorted int64 ``batch`` vectors. See :func:`available` for the registered names.
"""

from gdl.ops.registry import available, get, register
from gdl.ops.backend import keops_status, resolve_backend

# Built-in operators register themselves on import.
from gdl.ops import kernel_conv, knn  # noqa: F401  (registration side effects)

__all__ = ["available", "get", "register", "keops_status", "resolve_backend"]
