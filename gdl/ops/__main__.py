"""``python -m gdl.ops``: the registered operators, KeOps status per device, and a timed KNN."""

from __future__ import annotations

import time

import torch

import gdl.ops
from gdl.command_line import ArgumentParser, plain
from gdl.ops.core.registry import _operators


def summary(cls) -> str:
    """The first paragraph of the class docstring on one line, without code-literal backticks."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return plain(" ".join(line.strip() for line in paragraph.splitlines()))


def print_registry() -> None:
    names = gdl.ops.available()
    print(f"{len(names)} registered operators:")
    width = max(map(len, names))
    for name in names:
        cls = _operators[name]
        print(f"  {name:<{width}}  {cls.__module__}.{cls.__qualname__}: {summary(cls)}")


def devices() -> list[torch.device]:
    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return found


def timed(function, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def time_knn(n: int, k: int, device: torch.device, brute_queries: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, generator=generator).to(device)
    print(f"\nKNN, k={k}, on {n:,} uniform random points in [0, 1]^3 (float32, {device}):")
    timed_methods = set()
    for backend in ("keops", "torch"):
        if backend == "keops" and not gdl.ops.keops_status(device)[0]:
            print("  keops: unavailable on this device")
            continue
        for method, queries in (("auto", n), ("brute", min(n, brute_queries))):
            knn = gdl.ops.get("knn", k=k, method=method, backend=backend)
            chosen = knn.method_for(x[:queries], x, 1)
            if chosen == "kdtree" and chosen in timed_methods:
                continue  # the KD-tree path does not depend on the backend: timed once
            timed_methods.add(chosen)
            # Warm-up with the same search method: KeOps compiles each formula once.
            gdl.ops.get("knn", k=k, method=chosen, backend=backend)(x[:1000])
            seconds, _ = timed(lambda: knn(x[:queries], x), device)
            subset = (
                "" if queries == n else f" ({queries:,} query points of the {n:,}, to keep the demo short)"
            )
            path = "kdtree (pykdtree on the CPU, either backend)" if chosen == "kdtree" else f"{chosen}, {backend} backend"
            print(f"  method={method} -> {path}: {seconds * 1e3:9.1f} ms{subset}")


def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m gdl.ops", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="number of points of the KNN timing")
    parser.add_argument("--k", type=int, default=16, help="neighbours per point of the KNN timing")
    parser.add_argument(
        "--brute-queries", type=int, default=10_000, help="query points of the brute-force timings"
    )
    args = parser.parse_args(argv)
    print_registry()
    print("\nKeOps status:")
    for device in devices():
        works, reason = gdl.ops.keops_status(device)
        print(f"  {device}: {'works' if works else 'unavailable'} ({reason})")
    for device in devices():
        time_knn(args.n, args.k, device, args.brute_queries)


if __name__ == "__main__":
    main()
