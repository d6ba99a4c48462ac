"""Neighbour search and sampling side by side with the libraries people use instead.

Points uniform in the unit cube, float32, D = 3; every search includes building its tree.

- knn (k = 16, each point among all, itself included): gdl with ``method="auto"`` and each method
  (kdtree, KeOps voxel grid, KeOps brute force), pykdtree, scipy's cKDTree (``workers=-1``), FAISS
  (exact flat index). The gdl-auto row records in its params the fraction of points whose
  neighbours are exactly pykdtree's, as a set and in order. Baseline: pykdtree.
- radius (r holding about 32 points, max_neighbors = 64 so that nothing is cut): gdl auto (a ball
  query) and KeOps (k nearest then a mask), cKDTree's ``query_ball_point``. Baseline: cKDTree.
- fps (10 % of the points): gdl auto and the torch greedy loop, fpsample's bucket FPS (what gdl
  auto calls on the CPU) and its vanilla FPS. Baseline: fpsample bucket FPS.

Rows that visit all pairs are skipped above ``QUADRATIC_MAX_CPU`` points on a CPU, rows whose one
call would take minutes are skipped with the reason; rows at ``LARGE`` points or more take the
median of ``LARGE_REPEATS`` calls without warm-up (a tree search has nothing to warm up).
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:
    from benchmarks.case import Case
except ImportError:
    from case import Case

K = 16
RADIUS_NEIGHBOURS = 32
RADIUS_MAX_NEIGHBORS = 64
FPS_RATIO = 0.1
QUADRATIC_MAX_CPU = 10_000
GREEDY_FPS_MAX_CPU = 10_000  # the torch loop: n/10 steps over n points
VANILLA_FPS_MAX_CPU = 100_000  # fpsample's vanilla FPS: 13 s at 100k points on this CPU
KEOPS_GRID_MAX_CPU = 100_000
LARGE, LARGE_REPEATS = 1_000_000, 3


def points(n: int, device) -> torch.Tensor:
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(n)).to(device)


def ball_radius(n: int, neighbours: int = RADIUS_NEIGHBOURS) -> float:
    """r such that a ball of radius r holds ``neighbours`` of n points uniform in the unit cube."""
    return (neighbours / (n * 4 / 3 * math.pi)) ** (1 / 3)


def package_skip(name: str) -> str | None:
    try:
        __import__(name)
    except ImportError:
        return f"{name} is not installed"
    return None


def quadratic_skip(n: int, device) -> str | None:
    if device.type == "cpu" and n > QUADRATIC_MAX_CPU:
        return f"visits all n^2 pairs: skipped above {QUADRATIC_MAX_CPU} points on CPU"
    return None


def _pykdtree_knn(data: np.ndarray) -> np.ndarray:
    from pykdtree.kdtree import KDTree

    return KDTree(data, leafsize=16).query(data, k=K)[1]


def agreement_with_pykdtree(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Fractions of query points whose k neighbours are pykdtree's as a set, and in the same order
    (near-ties may be ordered differently: gdl sorts by distances recomputed in torch)."""
    return {
        "same_neighbour_sets_as_pykdtree": float((np.sort(ours, 1) == np.sort(theirs, 1)).all(1).mean()),
        "same_order_as_pykdtree": float((ours == theirs).all(1).mean()),
    }


def knn_setup(n, device, implementation, params):
    def setup():
        import gdl.ops

        x = points(n, device)
        if implementation.startswith("gdl-"):
            method, _, backend = implementation[4:].partition("-")
            knn = gdl.ops.get("knn", k=K, method=method, backend=backend or "auto")
            if method == "auto":
                ours, theirs = knn(x)[1].cpu().numpy(), _pykdtree_knn(x.cpu().numpy()).astype(np.int64)
                params.update(agreement_with_pykdtree(ours, theirs))
            return lambda: knn(x)
        data = x.cpu().numpy()
        if implementation == "pykdtree":
            return lambda: _pykdtree_knn(data)
        if implementation == "ckdtree":
            from scipy.spatial import cKDTree

            return lambda: cKDTree(data).query(data, k=K, workers=-1)
        import faiss

        def flat():
            index = faiss.IndexFlatL2(3)
            index.add(data)
            return index.search(data, K)

        return flat

    return setup


def radius_setup(n, device, implementation, r):
    def setup():
        import gdl.ops

        x = points(n, device)
        if implementation.startswith("gdl-"):
            method, _, backend = implementation[4:].partition("-")
            op = gdl.ops.get("radius", r=r, max_neighbors=RADIUS_MAX_NEIGHBORS, method=method, backend=backend or "auto")
            return lambda: op(x)
        from scipy.spatial import cKDTree

        data = x.cpu().numpy()
        return lambda: cKDTree(data).query_ball_point(data, r, workers=-1)

    return setup


def fps_setup(n, device, implementation):
    def setup():
        import fpsample

        import gdl.ops

        x = points(n, device)
        m = math.ceil(FPS_RATIO * n)
        if implementation.startswith("gdl-"):
            op = gdl.ops.get("fps", ratio=FPS_RATIO, method=implementation[4:])
            return lambda: op(x)
        data = x.cpu().numpy()
        if implementation == "fpsample-bucket":
            height = max(1, min(9, int(math.log2(n)) - 7))  # as gdl chooses it
            return lambda: fpsample.bucket_fps_kdline_sampling(data, m, h=height, start_idx=0)
        return lambda: fpsample.fps_sampling(data, m, start_idx=0)

    return setup


def cases(device: torch.device, sizes: list[int]) -> list[Case]:
    device = torch.device(device)
    cpu = device.type == "cpu"
    out = []
    for n in sizes:
        long = {"repeats": LARGE_REPEATS, "warmup": False} if n >= LARGE else {}
        knn_rows = {
            "gdl-auto": None,
            "gdl-kdtree": "on the CPU gdl-auto runs this method: not repeated at this size" if cpu and n >= LARGE else None,
            "gdl-grid-keops": f"the KeOps grid on a CPU: run up to {KEOPS_GRID_MAX_CPU} points" if cpu and n > KEOPS_GRID_MAX_CPU else None,
            "gdl-brute-keops": quadratic_skip(n, device),
            "pykdtree": package_skip("pykdtree"),
            "ckdtree": package_skip("scipy"),
            "faiss": package_skip("faiss") or quadratic_skip(n, torch.device("cpu")),  # faiss-cpu's flat index
        }
        for implementation, skip in knn_rows.items():
            params = {"k": K, "dim": 3, "dtype": "float32", "self": True}
            slow = implementation in ("gdl-grid-keops", "gdl-brute-keops", "faiss")
            out.append(Case("knn", n, implementation, "forward", knn_setup(n, device, implementation, params), skip,
                            params, baseline="pykdtree", **({} if slow else long)))
        r = ball_radius(n)
        radius_rows = {
            "gdl-auto": None,
            "gdl-brute-keops": quadratic_skip(n, device),
            "ckdtree-ball": package_skip("scipy"),
        }
        for implementation, skip in radius_rows.items():
            params = {"r": r, "max_neighbors": RADIUS_MAX_NEIGHBORS, "about": f"{RADIUS_NEIGHBOURS} neighbours"}
            out.append(Case("radius", n, implementation, "forward", radius_setup(n, device, implementation, r), skip,
                            params, baseline="ckdtree-ball", **long))
        fps_rows = {
            "gdl-auto": None,
            "gdl-greedy": f"{n // 10} sequential torch steps over {n} points: run up to {GREEDY_FPS_MAX_CPU} on CPU"
            if cpu and n > GREEDY_FPS_MAX_CPU
            else None,
            "fpsample-bucket": package_skip("fpsample"),
            "fpsample-vanilla": package_skip("fpsample")
            or (f"O(n^2/10) vanilla FPS: run up to {VANILLA_FPS_MAX_CPU} points" if n > VANILLA_FPS_MAX_CPU else None),
        }
        for implementation, skip in fps_rows.items():
            out.append(Case("fps", n, implementation, "forward", fps_setup(n, device, implementation), skip,
                            {"ratio": FPS_RATIO}, baseline="fpsample-bucket", **long))
    return out
