"""Timing and memory measurement of benchmark cases, the results table, JSON and plot.

Time: one warm-up call (unless the case has none to warm up), then the median of ``repeats`` calls
(or the case's own number; CUDA: CUDA events around each call). The cases of one comparison are
timed in turns (:func:`measure_group`), so that a shared machine's changing load hits them alike. Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the allocation before the
call; on CPU, the increase of the process' resident set size (RSS) over its value before the call,
sampled every millisecond by a background thread (psutil), so short spikes may be missed.
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

MB = 2**20


class RSSPeak:
    """Context manager sampling the process' RSS in a thread; ``peak_mb`` is the increase."""

    def __init__(self, interval: float = 1e-3):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak_mb = 0.0

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._start = self._peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self.process.memory_info().rss)
        self.peak_mb = (self._peak - self._start) / MB


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def time_call(function, device: torch.device) -> float:
    """Milliseconds of one call."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    begin = time.perf_counter()
    function()
    return (time.perf_counter() - begin) * 1e3


def _new_row(case) -> dict:
    return {
        "operator": case.operator,
        "n": case.n,
        "implementation": case.implementation,
        "mode": case.mode,
        "params": case.params,
        "baseline": case.baseline,
        "median_ms": None,
        "peak_mb": None,
        "status": f"skipped: {case.skip}" if case.skip else "ok",
    }


def _failed(error: BaseException) -> str:
    return "out of memory" if is_out_of_memory(error) else f"error: {type(error).__name__}: {error}"


def _timed_with_peak(function, device: torch.device) -> tuple[float, float]:
    """(milliseconds, peak memory increase in MB) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        ms = time_call(function, device)
        return ms, (torch.cuda.max_memory_allocated(device) - before) / MB
    with RSSPeak() as memory:
        ms = time_call(function, device)
    return ms, memory.peak_mb


def measure_group(cases: list, device: torch.device, repeats: int) -> list[dict]:
    """Time the cases of one comparison (same operator, n and mode) in turns: every round calls each
    case once, so that the load of a shared machine weighs on all of them alike. Returns their rows
    (median_ms, peak_mb, repeats, status)."""
    rows = [_new_row(case) for case in cases]
    functions, times, peaks = [], [[] for _ in cases], [0.0 for _ in cases]
    for case, row in zip(cases, rows):
        function = None
        if not case.skip:
            try:
                function = case.setup()
                if case.warmup:
                    function()  # warm-up (KeOps compilation, caches)
            except Exception as error:
                row["status"], function = _failed(error), None
        functions.append(function)
        row["repeats"] = case.repeats or repeats
    for _ in range(max(row["repeats"] for row in rows)):
        for i, function in enumerate(functions):
            if function is None or len(times[i]) >= rows[i]["repeats"]:
                continue
            try:
                ms, peak = _timed_with_peak(function, device)
            except Exception as error:
                rows[i]["status"], functions[i] = _failed(error), None
                continue
            times[i].append(ms)
            peaks[i] = max(peaks[i], peak)
    for row, spent, peak, function in zip(rows, times, peaks, functions):
        if function is not None and spent:
            row["median_ms"], row["peak_mb"], row["times_ms"] = statistics.median(spent), peak, spent
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Ratios between rows of one run (same operator, n and mode): ``ratio_to_keops`` to the
    gdl-keops row (of medians), ``ratio_to_baseline`` to the row of the case's ``baseline``
    implementation: the median over rounds of the time ratio within a round (rows timed in turns,
    so both calls of a round met the same machine load), or the ratio of medians otherwise."""
    found = {(r["operator"], r["n"], r["mode"], r["implementation"]): r for r in rows if r["median_ms"]}
    for r in rows:
        key = (r["operator"], r["n"], r["mode"])
        keops = found.get((*key, "gdl-keops"))
        r["ratio_to_keops"] = r["median_ms"] / keops["median_ms"] if keops and r["median_ms"] else None
        base = found.get((*key, r.get("baseline")))
        r["ratio_to_baseline"] = None
        if base and r["median_ms"]:
            ours, theirs = r.get("times_ms", []), base.get("times_ms", [])
            if ours and len(ours) == len(theirs):
                r["ratio_to_baseline"] = statistics.median(a / b for a, b in zip(ours, theirs))
            else:
                r["ratio_to_baseline"] = r["median_ms"] / base["median_ms"]


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'operator':<16} {'n':>8} {'implementation':<17} {'mode':<17} "
        f"{'median ms':>11} {'x keops':>8} {'x baseline':>21} {'peak MB':>9}  status"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ms = f"{r['median_ms']:.2f}" if r["median_ms"] is not None else "-"
        ratio = f"{r['ratio_to_keops']:.2f}" if r.get("ratio_to_keops") else "-"
        to_base = f"{r['ratio_to_baseline']:.2f} {r['baseline']}" if r.get("ratio_to_baseline") else "-"
        peak = f"{r['peak_mb']:.1f}" if r["peak_mb"] is not None else "-"
        lines.append(
            f"{r['operator']:<16} {r['n']:>8} {r['implementation']:<17} {r['mode']:<17} "
            f"{ms:>11} {ratio:>8} {to_base:>21} {peak:>9}  {r['status']}"
        )
    return "\n".join(lines)


def environment(device: torch.device) -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("pykeops", "faiss", "pykdtree", "geomloss", "ot"):
        try:
            module = __import__(package)
            versions[package] = getattr(module, "__version__", "unknown")
        except ImportError:
            versions[package] = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "cpu_count": __import__("os").cpu_count(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "memory_measure": (
            "cuda max_memory_allocated" if device.type == "cuda" else "RSS increase, sampled every 1 ms (psutil)"
        ),
    }


def row_key(row: dict) -> tuple:
    return row["operator"], row["n"], row["implementation"], row["mode"]


def write_results(rows: list[dict], device: torch.device, out: Path, repeats: int) -> tuple[Path, Path]:
    """Save this run's rows into ``ops_<device>.json`` (and its plot), keeping the rows of earlier
    runs that this one did not measure; each row records the run (date) it comes from, and its
    ratios only ever compare rows of one run."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ops_{device.type}"
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    info = environment(device)
    for r in rows:
        r.setdefault("run", info["date"])
    kept = []
    if json_path.exists():
        earlier = json.loads(json_path.read_text())
        measured = {row_key(r) for r in rows}
        for r in earlier.get("rows", []):
            if row_key(r) not in measured:
                r.setdefault("run", earlier.get("date"))
                kept.append(r)
    merged = kept + rows
    json_path.write_text(json.dumps({**info, "repeats": repeats, "rows": merged}, indent=1))
    plot(merged, png_path, device)
    return json_path, png_path


def plot(rows: list[dict], path: Path, device: torch.device) -> None:
    """Log-log median time against n, one panel per operator, one line per implementation and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    operators = sorted({r["operator"] for r in rows if r["median_ms"]})
    if not operators:
        return
    columns = min(3, len(operators))
    lines = -(-len(operators) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(5 * columns, 4 * lines), squeeze=False)
    for ax, operator in zip(axes.flat, operators):
        series = {}
        for r in rows:
            if r["operator"] == operator and r["median_ms"]:
                series.setdefault(f"{r['implementation']} ({r['mode']})", []).append((r["n"], r["median_ms"]))
        for label, points in sorted(series.items()):
            points.sort()
            ax.plot(*zip(*points), marker="o", label=label)
        ax.set(xscale="log", yscale="log", title=operator, xlabel="n points", ylabel="median ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(operators):]:
        ax.axis("off")
    figure.suptitle(f"gdl operators on {device}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
