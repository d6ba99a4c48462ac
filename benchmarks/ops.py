"""Operator benchmark: every case of benchmarks/op_cases/, timed, printed, saved as JSON and PNG.

    python benchmarks/ops.py [--device cpu|cuda] [--sizes 1000,10000,100000] [--ops knn,kernel_conv]
                             [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from harness import add_ratios, format_table, measure_group, write_results  # noqa: E402


def load_case_modules():
    """Every module of benchmarks/op_cases/ (each defines ``cases(device, sizes)``)."""
    modules = []
    for path in sorted((HERE / "op_cases").glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"op_cases.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    parser.add_argument(
        "--sizes", default=None, help="comma-separated numbers of points (default 1k,10k,100k; 1M on cuda)"
    )
    parser.add_argument("--ops", default=None, help="comma-separated operator names (default: all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    default_sizes = "1000,10000,100000,1000000" if device.type == "cuda" else "1000,10000,100000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    wanted = set(args.ops.split(",")) if args.ops else None

    cases = [case for module in load_case_modules() for case in module.cases(device, sizes)]
    cases = [c for c in cases if wanted is None or c.operator in wanted]
    groups: dict[tuple, list] = {}  # one comparison: the same operator, n and mode
    for case in cases:
        groups.setdefault((case.operator, case.n, case.mode), []).append(case)
    rows = []
    for group in groups.values():
        for row in measure_group(group, device, args.repeats):
            print(f"  {row['operator']} n={row['n']} {row['implementation']} {row['mode']}: "
                  f"{row['median_ms'] if row['median_ms'] is not None else row['status']}", flush=True)
            rows.append(row)
    add_ratios(rows)
    print()
    print(format_table(rows))
    json_path, png_path = write_results(rows, device, args.out, args.repeats)
    print(f"\nwrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
