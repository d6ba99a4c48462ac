"""Shared test fixtures: reproducible random inputs, the real data folder, device selection.

Every test draws its random inputs from a seed fixed by its name, so two runs of the suite on the same
code give the same result. ``GDL_TEST_SEED=<n>`` replays one seed for every test; ``GDL_TEST_SEED=random``
draws a new seed per test (printed on failure) to explore. ``tests/sweep_seeds.py`` runs the suite over
many seeds and reports every failing one.
"""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SEED_VARIABLE = "GDL_TEST_SEED"


def _shared_data_dir() -> Path | None:
    candidates = [os.environ.get("GDL_SHARED_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def seed_for(test_id: str) -> int:
    """The seed of one test: ``$GDL_TEST_SEED`` if it is a number, a fresh one if it is ``random``, else
    the CRC32 of the test's id (its file, name and parameters), the same on every run and machine."""
    requested = os.environ.get(SEED_VARIABLE, "").strip()
    if requested == "random":
        return random.SystemRandom().randrange(2**31)
    if requested:
        try:
            return int(requested)
        except ValueError:
            raise pytest.UsageError(f"{SEED_VARIABLE} must be an integer or 'random', got {requested!r}") from None
    return zlib.crc32(test_id.encode())


RANDOM_FIXTURES = {"generator", "numpy_rng"}


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--random-only", action="store_true",
        help="run only the tests that draw from a seeded generator (generator or numpy_rng fixtures), for seed sweeps",
    )


def pytest_collection_modifyitems(config, items) -> None:
    if not config.getoption("--random-only"):
        return
    kept = [item for item in items if RANDOM_FIXTURES & set(getattr(item, "fixturenames", ()))]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


MISSING_DATA = "needs the real data folder: set GDL_SHARED_DATA or place shared/data beside the repo"


def seed_rule() -> str:
    requested = os.environ.get(SEED_VARIABLE, "").strip()
    if not requested:
        return f"fixed per test (CRC32 of the test id; {SEED_VARIABLE}=<n> or =random to change)"
    if requested == "random":
        return "random per test (printed with each failure)"
    return f"{requested} for every test ({SEED_VARIABLE})"


def pytest_report_header(config) -> str:
    data = _shared_data_dir()
    return f"random seeds: {seed_rule()}\nreal data: {data if data else 'NOT FOUND: ' + MISSING_DATA}"


def pytest_terminal_summary(terminalreporter) -> None:
    """The seed rule, and how many tests the missing real data folder skipped, file by file."""
    terminalreporter.write_line(f"random seeds: {seed_rule()}")
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if MISSING_DATA in str(report.longrepr)]
    if skipped:
        files = sorted({report.nodeid.split("::")[0] for report in skipped})
        terminalreporter.write_line(
            f"real data folder not found: {len(skipped)} tests in {len(files)} files skipped ({', '.join(files)}); "
            "set GDL_SHARED_DATA or place shared/data beside the repo", yellow=True,
        )


@pytest.fixture(autouse=True)
def test_seed(request) -> int:
    """Seeds torch, NumPy and ``random`` from the test's seed, and prints it (shown when the test fails)."""
    seed = seed_for(request.node.nodeid)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    print(f"random seed: {seed} (replay with {SEED_VARIABLE}={seed})")
    return seed


@pytest.fixture
def generator(test_seed) -> torch.Generator:
    """A torch generator seeded with the test's seed."""
    return torch.Generator().manual_seed(test_seed)


@pytest.fixture
def numpy_rng(test_seed) -> np.random.Generator:
    """A NumPy generator seeded with the test's seed."""
    return np.random.default_rng(test_seed)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (../shared/data or $GDL_SHARED_DATA); skips, saying so, when it is absent."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip(MISSING_DATA)
    return path


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
