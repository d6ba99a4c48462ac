"""Run the seeded tests over many seeds and report every failing seed (not part of CI).

    python tests/sweep_seeds.py --seeds 20                 # seeds 0..19, every test using a generator
    python tests/sweep_seeds.py --seeds 50 --first 100 tests/ops/test_sinkhorn.py -k ragged

Each seed is one pytest run with ``GDL_TEST_SEED=<seed>`` and ``--random-only`` (tests whose inputs
come from the ``generator`` or ``numpy_rng`` fixtures); extra arguments go to pytest. The report lists,
per failing test, the seeds it failed on, and is written as JSON with ``--json``. A test that fails
on some seeds has either a bug or a bound that is too tight: replay one with
``GDL_TEST_SEED=<seed> pytest <test id>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")
COUNTS = re.compile(r"(\d+) (passed|failed|error|errors|skipped|deselected)")


def run_seed(seed: int, pytest_args: list[str]) -> tuple[list[str], dict[str, int], float]:
    """Failing test ids, outcome counts and seconds of one pytest run with every test on ``seed``."""
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--random-only", *pytest_args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "GDL_TEST_SEED": str(seed)})
    seconds = time.perf_counter() - start
    lines = done.stdout.splitlines()
    failed = [match.group(1) for line in lines if (match := FAILED.match(line))]
    summary = lines[-1] if lines else ""
    counts = {kind: int(number) for number, kind in COUNTS.findall(summary)}
    if done.returncode not in (0, 1):
        raise SystemExit(f"error: pytest exited with {done.returncode} on seed {seed}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return failed, counts, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds (default 20)")
    parser.add_argument("--first", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args, pytest_args = parser.parse_known_args(argv)
    failures: dict[str, list[int]] = defaultdict(list)
    runs = []
    for seed in range(args.first, args.first + args.seeds):
        failed, counts, seconds = run_seed(seed, pytest_args)
        for test in failed:
            failures[test].append(seed)
        runs.append({"seed": seed, "counts": counts, "failed": failed, "seconds": round(seconds, 1)})
        print(f"seed {seed}: {counts.get('passed', 0)} passed, {len(failed)} failed in {seconds:.0f} s"
              + (f": {', '.join(failed)}" if failed else ""), flush=True)
    print(f"\n{len(runs)} seeds, {len(failures)} tests failed on at least one:")
    for test, seeds in sorted(failures.items()):
        print(f"  {test}: seeds {', '.join(map(str, seeds))}")
    if args.json:
        args.json.write_text(json.dumps({"pytest_args": pytest_args, "runs": runs, "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
