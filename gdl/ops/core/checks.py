"""Input validation shared by every operator: clear errors that name the argument at fault."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_points(name: str, x, dim: int | None = None, allow_empty: bool = False) -> torch.Tensor:
    """A finite float32/float64 tensor of shape (N, D), N > 0, with D == ``dim`` when given."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no coordinates: got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns, got shape {tuple(x.shape)}")
    check_finite(name, x)
    return x


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=-1).sum()) if x.dim() > 1 else int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains NaN or Inf values ({bad} rows affected)")
    return x


def check_values(name: str, values, n: int, like: torch.Tensor) -> torch.Tensor:
    """Per-point values of shape (n,) or (n, E), float, finite, on the device and dtype of ``like``.

    Returns a 2-D view (n, E).
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() not in (1, 2) or values.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, E), got {tuple(values.shape)}")
    check_same_device_dtype(name, values, like)
    check_finite(name, values)
    return values if values.dim() == 2 else values[:, None]


def check_same_device_dtype(name: str, x: torch.Tensor, ref: torch.Tensor, ref_name: str = "x"):
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {ref.device}")
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {ref_name} has dtype {ref.dtype}")


def check_pair(x: torch.Tensor, y: torch.Tensor, x_name: str = "x", y_name: str = "y"):
    """Two point clouds that can interact: same D, device and dtype."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same dimension D, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    check_same_device_dtype(y_name, y, x, x_name)


def check_batch(name: str, batch, n: int, device: torch.device) -> torch.Tensor | None:
    """A sorted, non-negative int64 vector of length ``n`` on ``device`` (or None)."""
    if batch is None:
        return None
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of int64, got {type(batch).__name__}")
    if batch.dtype != torch.int64:
        raise TypeError(f"{name} must be int64, got {batch.dtype}")
    if batch.dim() != 1 or batch.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the points, got {tuple(batch.shape)}")
    if batch.device != device:
        raise ValueError(f"{name} is on {batch.device} but the points are on {device}")
    if n > 0:
        if int(batch[0]) < 0:
            raise ValueError(f"{name} must hold non-negative batch indices, got {int(batch.min())}")
        if n > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(f"{name} must be sorted in increasing order (PyTorch Geometric style)")
    return batch


def check_positive(name: str, value, integer: bool = False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
