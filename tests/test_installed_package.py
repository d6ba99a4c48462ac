"""gdl installed as a package (not editable) works outside a clone: the registration presets, the
operator registry and the shipped dMaSIF models are found inside the installed package."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# the fewest passes that still run every step of a preset; the torch backend needs no KeOps build
OVERRIDES = [
    "registration.prealign.iterations=1", "registration.finetune.iterations=1",
    "registration.prealign.backend=torch", "registration.finetune.backend=torch",
]


def install(tmp_path: Path) -> Path:
    """``pip install`` of a copy of the repository (so that the build leaves no files in the clone)
    into a new folder, returned."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "configs", source / "configs")
    shutil.copytree(REPO / "gdl", source / "gdl", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), "."]
    subprocess.run(pip, cwd=source, check=True, capture_output=True, text=True)
    return site


@pytest.mark.slow
def test_an_installed_gdl_works_outside_the_repository(tmp_path):
    site = install(tmp_path)
    assert not (site / "gdl" / "models" / "registration" / "presets").is_symlink()
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    cloud = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    np.save(work / "source.npy", cloud)
    np.save(work / "target.npy", cloud + 0.05)
    for preset in ("kitti", "lung"):
        # the lung preset asks for KeOps' multiscale solver, which the torch backend cannot run
        solvers = ["registration.prealign.solver=auto", "registration.finetune.solver=auto"] if preset == "lung" else []
        command = [str(site / "bin" / "gdl-register"), "source.npy", "target.npy", "--preset", preset, "--out", preset, *OVERRIDES, *solvers]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        np.testing.assert_allclose(np.load(work / preset / "displacement.npy"), 0.05, atol=1e-3)
    check = (
        "import gdl, gdl.ops; from gdl.models.dmasif.model import DMaSIF; "
        "gdl.ops.get('knn', k=8); DMaSIF.from_pretrained('site'); print(gdl.__file__)"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == site / "gdl" / "__init__.py"
