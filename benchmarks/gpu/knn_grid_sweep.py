"""Block-sparse KNN on the GPU: time, exactness and the voxel occupancy that suits the device.

For N points (uniform cube and unit sphere, float32, k = 16) times raw pykeops argKmin (brute
force, up to --brute-max) and gdl's knn with method="grid" for several ``grid_cell_points``;
checks that the grid's neighbour distances equal brute force's. Median of repeats after a warm-up,
CUDA events. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

import gdl.ops
from gdl.ops.core.backend import import_pykeops
from gdl.ops.knn import pairwise_distance

K = 16


def timed(fn, device, repeats):
    fn()  # warm-up (compilation)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            import time

            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times), out


def cloud(kind, n, device):
    generator = torch.Generator().manual_seed(n)
    x = torch.rand(n, 3, generator=generator)
    if kind == "sphere":
        x = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=1)
    return x.to(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cell-points", default="16,32,64,128")
    parser.add_argument("--brute-max", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/knn_grid_sweep.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    LazyTensor = import_pykeops().LazyTensor
    rows = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}")
    print(f"{'cloud':8} {'N':>8} {'implementation':>22} {'seconds':>10} {'vs raw':>8} {'exact':>6}")
    for kind in ("uniform", "sphere"):
        for n in [int(s) for s in args.sizes.split(",")]:
            x = cloud(kind, n, device)
            raw_time, ref_dists = None, None
            if n <= args.brute_max:
                d_ij = ((LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1)
                raw_time, ref_idx = timed(lambda: d_ij.argKmin(K, dim=1), device, args.repeats)
                ref_dists = pairwise_distance(x[:, None, :], x[ref_idx.long()], "euclidean").sort(dim=1).values
                rows.append(dict(cloud=kind, n=n, implementation="raw-keops-brute", seconds=raw_time))
            for cell_points in [int(c) for c in args.cell_points.split(",")]:
                knn = gdl.ops.get("knn", k=K, method="grid", grid_cell_points=cell_points, backend="keops")
                seconds, (dists, _) = timed(lambda: knn(x), device, args.repeats)
                exact = None if ref_dists is None else bool(torch.equal(dists, ref_dists))
                rows.append(dict(cloud=kind, n=n, implementation=f"gdl-grid-{cell_points}", seconds=seconds,
                                 exact=exact))
            for row in rows:
                if row["n"] == n and row["cloud"] == kind:
                    ratio = f"{raw_time / row['seconds']:.1f}x" if raw_time else "-"
                    print(f"{kind:8} {n:>8} {row['implementation']:>22} {row['seconds']:>10.4f} {ratio:>8} "
                          f"{str(row.get('exact', '-')):>6}", flush=True)
            with open(args.json, "w") as f:
                json.dump({"device": name, "k": K, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
