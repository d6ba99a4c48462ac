"""Point-cloud files: NPY, PLY and legacy VTK (POLYDATA or UNSTRUCTURED_GRID, read with NumPy), read and written.

Every reader returns ``(points, point_data)``: a float32 array of shape (N, 3) and a dict of
per-point arrays (N,) or (N, C), e.g. the ``weights`` of the DirLab vessel trees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".ply", ".vtk")


def read_points(path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read a point cloud from a ``.npy``, ``.ply`` or ``.vtk`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point-cloud file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points, data = _read_npy(path), {}
    elif suffix == ".ply":
        points, data = _read_ply(path)
    elif suffix == ".vtk":
        points, data = _read_vtk(path)
    else:
        raise ValueError(f"{path}: unsupported point-cloud format {suffix!r}, expected one of {SUFFIXES}")
    return _checked(path, points), data


def _checked(path: Path, points: np.ndarray) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{path}: expected points of shape (N, 3), got {points.shape}")
    if points.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no points")
    if not np.isfinite(points).all():
        raise ValueError(f"{path}: {int((~np.isfinite(points)).any(1).sum())} points have NaN or Inf coordinates")
    return np.ascontiguousarray(points, dtype=np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: not a valid .npy array file ({error})") from error
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    return array


def _read_ply(path: Path):
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except Exception as error:
        raise ValueError(f"{path}: not a valid PLY file with a 'vertex' element ({error})") from error
    names = vertex.data.dtype.names
    missing = [c for c in "xyz" if c not in names]
    if missing:
        raise ValueError(f"{path}: the PLY vertex element lacks the coordinate(s) {missing}")
    points = np.stack([np.asarray(vertex[c], dtype=np.float32) for c in "xyz"], axis=1)
    data = {n: np.asarray(vertex[n]) for n in names if n not in "xyz"}
    return points, data


def _read_vtk(path: Path):
    from gdl.data.legacy_vtk import read_legacy_vtk

    return read_legacy_vtk(path)


def write_points(path, points: np.ndarray, point_data: dict[str, np.ndarray] | None = None) -> Path:
    """Write points (N, 3) and optional per-point arrays to ``.npy`` (points only), ``.ply`` or ``.vtk``."""
    path = Path(path)
    points = np.ascontiguousarray(points, dtype=np.float32)
    point_data = point_data or {}
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, points)
    elif suffix == ".ply":
        from plyfile import PlyData, PlyElement

        fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
        columns = [points[:, 0], points[:, 1], points[:, 2]]
        for name, values in point_data.items():
            values = np.asarray(values, dtype=np.float32).reshape(len(points), -1)
            for c in range(values.shape[1]):
                fields.append((name if values.shape[1] == 1 else f"{name}_{c}", "f4"))
                columns.append(values[:, c])
        vertex = np.empty(len(points), dtype=fields)
        for (name, _), column in zip(fields, columns):
            vertex[name] = column
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    elif suffix == ".vtk":
        from gdl.data.legacy_vtk import write_legacy_vtk

        write_legacy_vtk(path, points, point_data)
    else:
        raise ValueError(f"{path}: unsupported point-cloud format {suffix!r}, expected one of {SUFFIXES}")
    return path
