"""Shared test fixtures: fresh random generators, the real data folder, device selection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    candidates = [os.environ.get("GDL_SHARED_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (../shared/data or $GDL_SHARED_DATA); skips when it is absent."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("real data folder not found: set GDL_SHARED_DATA or place shared/data beside the repo")
    return path


@pytest.fixture
def generator() -> torch.Generator:
    """A generator with a fresh random seed, printed so that a failure can be replayed."""
    seed = int(os.environ.get("GDL_TEST_SEED", torch.seed() % 2**31))
    print(f"random seed: {seed} (replay with GDL_TEST_SEED={seed})")
    return torch.Generator().manual_seed(seed)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
