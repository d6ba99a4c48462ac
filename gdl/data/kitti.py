"""KITTI scene flow pairs (HPLFlowNet and FlowNet3D layouts) and the standard evaluation protocol.

HPLFlowNet layout: a folder ``NNNNNN/`` holding ``pc1.npy`` and ``pc2.npy`` (float32 (N, 3), metres,
x right, y up, z forward) whose rows correspond, so that the ground-truth flow is ``pc2 - pc1``.
FlowNet3D layout: a ``.npz`` file with ``pos1`` (N, 3), ``pos2`` (M, 3) and ``gt`` (N, 3), the flow
of ``pos1``.

Protocol: drop ground points (y < ``ground_height`` = -1.4 m) and far points (z >= ``max_depth`` =
35 m), then draw ``num_points`` points of each frame independently (without replacement when there
are enough, all points when None). For corresponding rows a point is dropped when either of its two
positions fails a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdl.data.synthetic import SyntheticDeformation, SyntheticFlowDataModule, sample_folder

GROUND_HEIGHT = -1.4  # m: the standard protocol's ground cut (y up)
MAX_DEPTH = 35.0  # m: the standard protocol's depth cut (z forward)


@dataclass
class ScenePair:
    """Two lidar frames and the flow of the first: ``source + flow`` lies on the second frame."""

    name: str
    source: np.ndarray  # (N, 3) float32
    target: np.ndarray  # (M, 3) float32
    flow: np.ndarray  # (N, 3) float32


def _array(path: Path, array, key: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(f"{path}: {key} must have shape (N, 3) with N > 0, got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise ValueError(f"{path}: {key} must hold finite floating-point coordinates")
    return array.astype(np.float32, copy=False)


def read_hplflownet_pair(folder) -> ScenePair:
    """Read ``folder/pc1.npy`` and ``folder/pc2.npy`` (corresponding rows)."""
    folder = Path(folder)
    files = [folder / "pc1.npy", folder / "pc2.npy"]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"KITTI pair folder {folder} lacks {file.name}")
    pc1, pc2 = (_array(f, np.load(f, allow_pickle=False), f.stem) for f in files)
    if pc1.shape != pc2.shape:
        raise ValueError(f"{folder}: pc1 and pc2 must have the same shape (rows correspond), got {pc1.shape} and {pc2.shape}")
    return ScenePair(folder.name, pc1, pc2, pc2 - pc1)


def read_flownet3d_pair(path) -> ScenePair:
    """Read a FlowNet3D ``.npz`` file with keys ``pos1``, ``pos2`` and ``gt``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("pos1", "pos2", "gt") if k not in archive.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; found {archive.files}")
        pos1, pos2, gt = (_array(path, archive[k], k) for k in ("pos1", "pos2", "gt"))
    if gt.shape != pos1.shape:
        raise ValueError(f"{path}: gt must have the shape of pos1 {pos1.shape}, got {gt.shape}")
    return ScenePair(path.stem, pos1, pos2, gt)


def read_scene_pair(path) -> ScenePair:
    """A pair in either layout: a folder (HPLFlowNet) or a ``.npz`` file (FlowNet3D)."""
    path = Path(path)
    if path.is_dir():
        return read_hplflownet_pair(path)
    if path.suffix == ".npz":
        return read_flownet3d_pair(path)
    raise ValueError(f"{path}: expected a folder with pc1.npy/pc2.npy or a FlowNet3D .npz file")


def list_scene_pairs(root) -> list[Path]:
    """Pair folders (holding ``pc1.npy``) and ``.npz`` files directly under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"KITTI data folder not found: {root}")
    pairs = sorted(p for p in root.iterdir() if (p.is_dir() and (p / "pc1.npy").is_file()) or p.suffix == ".npz")
    if not pairs:
        raise ValueError(f"{root} holds no KITTI pair (NNNNNN/pc1.npy folders or .npz files)")
    return pairs


def _kept(points: np.ndarray, ground_height: float, max_depth: float) -> np.ndarray:
    return (points[:, 1] >= ground_height) & (points[:, 2] < max_depth)


def _draw(n: int, num_points: int | None, rng: np.random.Generator) -> np.ndarray:
    if num_points is None or num_points >= n:
        return np.arange(n) if num_points is None else np.concatenate([np.arange(n), rng.choice(n, num_points - n)])
    return rng.choice(n, num_points, replace=False)


def standard_protocol(
    pair: ScenePair, num_points: int | None = 8192, seed: int = 0, ground_height: float = GROUND_HEIGHT, max_depth: float = MAX_DEPTH
) -> ScenePair:
    """Remove ground (y < ``ground_height``) and far (z >= ``max_depth``) points, then sample
    ``num_points`` of each frame independently, reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    cut = dict(ground_height=ground_height, max_depth=max_depth)
    corresponding = pair.source.shape == pair.target.shape and np.allclose(pair.source + pair.flow, pair.target)
    if corresponding:
        keep = _kept(pair.source, **cut) & _kept(pair.target, **cut)
        keep_source, keep_target = keep, keep
    else:
        keep_source, keep_target = _kept(pair.source, **cut) & _kept(pair.source + pair.flow, **cut), _kept(pair.target, **cut)
    source, flow, target = pair.source[keep_source], pair.flow[keep_source], pair.target[keep_target]
    if len(source) == 0 or len(target) == 0:
        raise ValueError(f"pair {pair.name}: no point is left after removing ground and far points")
    i, j = _draw(len(source), num_points, rng), _draw(len(target), num_points, rng)
    return ScenePair(pair.name, source[i], target[j], flow[i])


class KittiFlowDataModule(SyntheticFlowDataModule):
    """Synthetic deformations of real KITTI frames for training; real pairs for validation and test.

    Training deforms the first frame of each pair (ground and far points removed); validation and
    test use the real pairs under the standard protocol with ``num_points`` points per frame, drawn
    from ``eval_seed``. ``data_dir`` defaults to the sample shipped in ``gdl/samples/kitti``; the
    other parameters are those of :class:`SyntheticFlowDataModule` (``mm_per_unit`` 1000: the frames
    are in metres).
    """

    def __init__(
        self,
        data_dir=None,
        num_points: int = 2048,
        deformation: Callable[..., SyntheticDeformation] | None = None,
        train_length: int = 16,
        batch_size: int = 2,
        num_workers: int = 0,
        ground_height: float = GROUND_HEIGHT,
        max_depth: float = MAX_DEPTH,
        eval_seed: int = 0,
        mm_per_unit: float = 1000.0,
    ):
        super().__init__(num_points, deformation, train_length, batch_size, num_workers, mm_per_unit)
        self.data_dir = Path(data_dir) if data_dir is not None else sample_folder("kitti")
        self.ground_height, self.max_depth, self.eval_seed = ground_height, max_depth, eval_seed

    def training_clouds(self):
        clouds = []
        for path in list_scene_pairs(self.data_dir):
            pair = read_scene_pair(path)
            cut = dict(ground_height=self.ground_height, max_depth=self.max_depth)
            keep = _kept(pair.source, **cut) & _kept(pair.target, **cut)
            clouds.append(pair.source[keep])
        return clouds

    def evaluation_pairs(self):
        pairs = [
            standard_protocol(read_scene_pair(p), self.num_points, self.eval_seed, self.ground_height, self.max_depth)
            for p in list_scene_pairs(self.data_dir)
        ]
        return [(p.source, p.target, p.flow) for p in pairs]
