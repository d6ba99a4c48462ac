"""``python -m gdl.ops``: whole operator descriptions, the KD-tree path named as such, no KeOps noise on a CPU."""

import subprocess
import sys

import torch

import gdl.ops
from tests.conftest import REPO


def test_listing_and_knn_timing():
    done = subprocess.run(
        [sys.executable, "-m", "gdl.ops", "--n", "3000", "--brute-queries", "500"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ") and " gdl." in line}
    assert set(listed) == set(gdl.ops.available())
    for name, line in listed.items():  # a first paragraph, not its first line: no sentence cut short
        assert line.rstrip().endswith((".", ")")) and "``" not in line, line
    assert "method=auto -> kdtree (pykdtree on the CPU, either backend)" in output
    assert "keops method=auto (kdtree)" not in output
    if not torch.cuda.is_available():
        assert "CUDA libraries not found" not in output
