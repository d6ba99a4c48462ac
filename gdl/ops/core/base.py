"""The base class of gdl operators: backend selection and chunking for the dense torch backend."""

from __future__ import annotations

import torch

from gdl.ops.core.backend import check_backend_name, resolve_backend

# Elements of an (rows x M) dense block the torch backend builds at once: bounds its memory.
TORCH_BLOCK_ELEMENTS = 2**22


class Operator(torch.nn.Module):
    """An ``nn.Module`` computing one formula with the KeOps or the (dense, chunked) torch backend."""

    registry_name: str = ""

    def __init__(self, backend: str = "auto"):
        super().__init__()
        self.backend = check_backend_name(backend)

    def backend_for(self, device: torch.device) -> str:
        """The backend used for inputs on ``device``: ``"keops"`` or ``"torch"``."""
        return resolve_backend(self.backend, device)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


def row_chunks(n: int, m: int, elements: int = TORCH_BLOCK_ELEMENTS):
    """Slices of rows such that each (rows x m) block holds at most about ``elements`` entries."""
    step = max(1, elements // max(m, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))
