"""Running train.py / eval.py in a subprocess with the test configs on Hydra's search path."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def folder(self) -> Path:
        found = re.search(r"^Run folder: (.+)$", self.stdout, re.MULTILINE)
        assert found, f"no run folder printed\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return Path(found.group(1))

    def printed_metrics(self) -> dict[str, float]:
        """The ``Final metrics:`` block that train.py prints."""
        block = self.stdout.split("Final metrics:\n", 1)[1].splitlines()
        return {line.split()[0]: float(line.split()[1]) for line in block if line.startswith("  ") and len(line.split()) == 2}

    def csv_rows(self) -> list[dict[str, str]]:
        (path,) = self.folder.glob("csv/version_*/metrics.csv")
        with open(path) as file:
            return list(csv.DictReader(file))

    def last_value(self, name: str) -> str:
        """The last logged value of ``name`` in the run's CSV log, as written (full precision)."""
        return [row[name] for row in self.csv_rows() if row.get(name)][-1]


def run_script(script: str, *overrides: str, log_dir: Path, env: dict | None = None, timeout: int = 600) -> Run:
    flags = [argument for argument in overrides if argument.startswith("-")]
    overrides = [argument for argument in overrides if not argument.startswith("-")]
    command = [sys.executable, script, *flags, f"hydra.searchpath=[file://{TEST_CONFIGS}]", f"paths.log_dir={log_dir}", *overrides]
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=environment)
    return Run(done.returncode, done.stdout, done.stderr)


def assert_ok(run: Run) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n--- stdout\n{run.stdout[-4000:]}\n--- stderr\n{run.stderr[-6000:]}"


@pytest.fixture
def train():
    """``train(*overrides, log_dir=...)`` runs train.py and returns a :class:`Run`."""
    return lambda *overrides, **kwargs: run_script("train.py", *overrides, **kwargs)
