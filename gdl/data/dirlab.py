"""DirLab COPDGene landmarks: file reader, per-case voxel spacing, and the target registration error.

Landmark files ``copdN_300_{iBH,eBH}_xyz_r1.txt`` hold 300 rows of tab-separated 1-based voxel
indices (x, y, z). A voxel index v maps to millimetres as (v - 1) * spacing, and

    TRE (mm) = mean_l || (warped_l - target_l) * spacing ||     (landmarks in voxel units).

``landmark_points`` reads landmarks in a point cloud's own coordinates: text files of x y z rows
(``format="xyz"``), or DirLab voxel-index files (``format="dirlab"``) mapped to cloud units as
((v - 1) * spacing - origin_mm) / unit_mm.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

SLICE_THICKNESS_MM = 2.5

IN_PLANE_SPACING_MM = {
    "copd1": 0.625, "copd2": 0.645, "copd3": 0.652, "copd4": 0.590, "copd5": 0.647,
    "copd6": 0.633, "copd7": 0.625, "copd8": 0.586, "copd9": 0.664, "copd10": 0.742,
}

NUM_SLICES = {
    "copd1": 121, "copd2": 102, "copd3": 126, "copd4": 126, "copd5": 131,
    "copd6": 119, "copd7": 112, "copd8": 115, "copd9": 116, "copd10": 135,
}


def voxel_spacing(case: str) -> np.ndarray:
    """(x, y, z) voxel size in mm of a DirLab COPD case such as ``"copd1"``."""
    if case not in IN_PLANE_SPACING_MM:
        raise ValueError(f"case must be one of {sorted(IN_PLANE_SPACING_MM)}, got {case!r}")
    s = IN_PLANE_SPACING_MM[case]
    return np.array([s, s, SLICE_THICKNESS_MM])


def volume_shape(case: str) -> tuple[int, int, int]:
    voxel_spacing(case)
    return 512, 512, NUM_SLICES[case]


def case_of(path) -> str:
    """The case name (``copdN``) in a landmark file name."""
    match = re.match(r"(copd\d+)_", Path(path).name)
    if match is None or match.group(1) not in IN_PLANE_SPACING_MM:
        raise ValueError(f"{path}: the file name does not start with a DirLab case name copd1..copd10")
    return match.group(1)


def read_landmarks(path) -> np.ndarray:
    """Landmarks as float64 1-based voxel indices, shape (L, 3)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected three numbers, got {line.strip()!r}") from None
        if len(values) != 3:
            raise ValueError(f"{path}, line {number}: expected three tab-separated values, got {len(values)}")
        if min(values) < 1:
            raise ValueError(f"{path}, line {number}: voxel indices are 1-based, got {values}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{path}: the file holds no landmark")
    return np.array(rows, dtype=np.float64)


def voxels_to_mm(landmarks: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """1-based voxel indices to millimetres: (v - 1) * spacing."""
    return (np.asarray(landmarks) - 1) * np.asarray(spacing)


def tre_mm(warped, target, spacing) -> float:
    """Mean over landmarks of ||(warped - target) * spacing||, both in voxel units."""
    warped, target = torch.as_tensor(np.asarray(warped, dtype=np.float64)), torch.as_tensor(np.asarray(target, dtype=np.float64))
    if warped.shape != target.shape or warped.dim() != 2 or warped.shape[1] != 3:
        raise ValueError(f"warped and target must both have shape (L, 3), got {tuple(warped.shape)} and {tuple(target.shape)}")
    spacing = torch.as_tensor(np.asarray(spacing, dtype=np.float64))
    return float(((warped - target) * spacing).norm(dim=1).mean())


LANDMARK_FORMATS = ("xyz", "dirlab")


def read_xyz(path, what: str = "landmark") -> np.ndarray:
    """Rows of three numbers x y z (spaces, tabs or commas; ``#`` comments), float64 (L, 3).

    ``what`` names the points in error messages ("landmark file not found: ...")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected three numbers x y z, got {line.strip()!r}") from None
        if len(values) != 3:
            raise ValueError(f"{path}, line {number}: expected three numbers x y z, got {len(values)}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{path}: the file holds no {what}")
    return np.array(rows, dtype=np.float64)


def landmark_points(path, format: str = "xyz", spacing=None, origin_mm=(0.0, 0.0, 0.0), unit_mm: float = 1.0) -> np.ndarray:
    """Landmarks (L, 3) in the clouds' units.

    ``format="xyz"``: the file's rows as they are. ``format="dirlab"``: 1-based voxel indices v
    mapped to ((v - 1) * spacing - origin_mm) / unit_mm, ``spacing`` (mm, 3 numbers) defaulting to
    the DirLab case named by the file (``copdN_...``).
    """
    if format not in LANDMARK_FORMATS:
        raise ValueError(f"format must be one of {LANDMARK_FORMATS}, got {format!r}")
    if not unit_mm > 0:
        raise ValueError(f"unit_mm must be a positive number of mm per cloud unit, got {unit_mm!r}")
    if format == "xyz":
        return read_xyz(path)
    spacing = voxel_spacing(case_of(path)) if spacing is None else np.asarray(spacing, dtype=np.float64)
    origin_mm = np.asarray(origin_mm, dtype=np.float64)
    if spacing.shape != (3,) or not (spacing > 0).all():
        raise ValueError(f"spacing must hold 3 positive numbers (mm), got {spacing.tolist()}")
    if origin_mm.shape != (3,):
        raise ValueError(f"origin_mm must hold 3 numbers (mm), got {origin_mm.tolist()}")
    return (voxels_to_mm(read_landmarks(path), spacing) - origin_mm) / unit_mm


def landmark_errors_mm(warped, target, unit_mm: float = 1.0) -> np.ndarray:
    """|warped_i - target_i| * unit_mm for each landmark i of two (L, 3) arrays, float64 (L,)."""
    warped, target = np.asarray(warped, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if warped.shape != target.shape or warped.ndim != 2 or warped.shape[1] != 3:
        raise ValueError(f"warped and target landmarks must both have shape (L, 3), got {warped.shape} and {target.shape}")
    return np.linalg.norm(warped - target, axis=1) * unit_mm


def tre_statistics_mm(warped, target, unit_mm: float = 1.0, before=None) -> dict:
    """TRE statistics over landmarks (L, 3), errors e_i = |warped_i - target_i| * unit_mm: mean,
    median, 90th percentile (linear interpolation), max, the landmark of the max (``worst``, a row
    index) and ``over_10mm``, the count of e_i > 10 mm; given the landmarks ``before`` registration,
    also ``worse_than_before``, the count of e_i > |before_i - target_i| * unit_mm."""
    errors = landmark_errors_mm(warped, target, unit_mm)
    statistics = {
        "mean": float(errors.mean()), "median": float(np.median(errors)), "p90": float(np.percentile(errors, 90)),
        "max": float(errors.max()), "worst": int(errors.argmax()), "over_10mm": int((errors > 10.0).sum()), "count": len(errors),
    }
    if before is not None:
        statistics["worse_than_before"] = int((errors > landmark_errors_mm(before, target, unit_mm)).sum())
    return statistics
