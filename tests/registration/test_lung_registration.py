"""Synthetic breathing pairs, DirLab landmark files, landmark errors and their picture, the command
line on lung trees (query points, transport masses, progress lines and errors) and the lung
benchmark's landmark report."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gdl.cli.register import main as register_main
from gdl.data.dirlab import landmark_errors_mm, landmark_points, tre_statistics_mm
from gdl.data.lung import BreathingDeformation, read_lung_pair
from gdl.data.pointclouds import write_points
from gdl.data.synthetic import sample_folder
from gdl.models.registration.landmark_figure import plot_landmark_errors

REPO = Path(__file__).resolve().parents[2]


def test_dirlab_landmarks_map_to_cloud_units_as_computed_by_hand(tmp_path):
    path = tmp_path / "copd1_300_eBH_xyz_r1.txt"
    path.write_text("1\t1\t1\n11\t21\t5\n")
    points = landmark_points(path, format="dirlab", origin_mm=(1.0, 2.0, 3.0), unit_mm=100.0)
    # copd1: 0.625 x 0.625 x 2.5 mm voxels; ((v - 1) * spacing - origin) / 100
    np.testing.assert_allclose(points, [[-0.01, -0.02, -0.03], [0.0525, 0.105, 0.07]], atol=1e-12)
    spaced = landmark_points(path, format="dirlab", spacing=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(spaced[1], [10.0, 20.0, 4.0])
    xyz = tmp_path / "points.txt"
    xyz.write_text("# x y z\n0.1, 0.2, 0.3\n1 2 3\n")
    np.testing.assert_allclose(landmark_points(xyz), [[0.1, 0.2, 0.3], [1, 2, 3]])


def test_tre_statistics_match_a_hand_computation():
    warped = np.array([[0.03, 0.04, 0.0], [0.0, 0.0, 0.12], [0.01, 0.0, 0.0], [0.0, 0.2, 0.0]]) + 1.0
    target = np.ones((4, 3))
    # errors 5, 12, 1, 20 mm; sorted 1, 5, 12, 20: median (5 + 12) / 2, 90th percentile at rank
    # 0.9 * 3 = 2.7: 12 + 0.7 * (20 - 12)
    np.testing.assert_allclose(landmark_errors_mm(warped, target, unit_mm=100.0), [5.0, 12.0, 1.0, 20.0], atol=1e-9)
    stats = tre_statistics_mm(warped, target, unit_mm=100.0)
    assert stats == pytest.approx({"mean": 9.5, "median": 8.5, "p90": 17.6, "max": 20.0, "worst": 3, "over_10mm": 2, "count": 4})
    # before registration: errors 6, 12, 0.5, 30 mm: landmark 0 improved, 1 tied (not worse), 2 worse, 3 improved
    before = np.array([[0.06, 0.0, 0.0], [0.0, 0.12, 0.0], [0.0, 0.0, 0.005], [0.3, 0.0, 0.0]]) + 1.0
    assert tre_statistics_mm(warped, target, unit_mm=100.0, before=before)["worse_than_before"] == 1
    with pytest.raises(ValueError, match="must both have shape"):
        tre_statistics_mm(warped[:3], target)


def test_landmark_picture_is_written(tmp_path, generator):
    tree = torch.rand(500, 3, generator=generator).numpy()
    landmarks = tree[:20]
    moved = torch.rand(20, generator=generator).numpy() * 20
    errors = {"before": moved, "prealign": moved / 2, "finetune": moved / 4}
    path = plot_landmark_errors(tree, landmarks, errors, tmp_path / "errors.png", unit_mm=100.0, title="test")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="before registration and after at least one step"):
        plot_landmark_errors(tree, landmarks, {"before": moved}, tmp_path / "none.png")


def test_bad_landmark_files_and_options_say_what_is_wrong(tmp_path):
    bad = tmp_path / "copd1_300_iBH_xyz_r1.txt"
    bad.write_text("1 2 3\n4 five 6\n")
    with pytest.raises(ValueError, match="line 2: expected three numbers"):
        landmark_points(bad, format="dirlab")
    with pytest.raises(ValueError, match="format must be one of"):
        landmark_points(bad, format="nifti")
    with pytest.raises(ValueError, match="unit_mm"):
        landmark_points(bad, unit_mm=0)
    with pytest.raises(ValueError, match="case name"):
        landmark_points(_written(tmp_path / "lungA_landmarks.txt", "1 1 1\n"), format="dirlab")
    with pytest.raises(FileNotFoundError, match="landmark file not found"):
        landmark_points(tmp_path / "missing.txt")
    for format in ("dirlab", "xyz"):
        with pytest.raises(ValueError, match="the file holds no landmark"):
            landmark_points(_written(tmp_path / "copd1_empty.txt", "\n"), format=format)


def _written(path, text):
    path.write_text(text)
    return path


def test_breathing_pairs_expand_most_near_the_diaphragm(generator):
    tree, _, weights, _ = read_lung_pair(sample_folder("lung"))
    tree = torch.from_numpy(tree).double()
    pair = BreathingDeformation(mean_displacement=(0.2, 0.3))(tree, generator, torch.from_numpy(weights))
    motion = pair.flow.norm(dim=1)
    assert 0.15 < motion.mean() < 0.35  # the mean over the kept points, scaled on the whole tree
    height = pair.source[:, 2]
    assert motion[height < height.quantile(0.2)].mean() > motion[height > height.quantile(0.8)].mean()
    assert pair.target.shape[0] < tree.shape[0] and pair.source.shape[0] < pair.target.shape[0]
    torch.testing.assert_close(tree[pair.source_index], pair.source)
    assert pair.query.shape[0] > 0 and pair.query_flow.shape == pair.query.shape
    with pytest.raises(ValueError, match="mean_displacement"):
        BreathingDeformation(mean_displacement=(0.3, 0.1))


def _cloud_pair(tmp_path, generator):
    source = torch.randn(300, 3, generator=generator).numpy() * 5
    shift = np.array([0.8, 0.0, -0.5], dtype=np.float32)
    write_points(tmp_path / "source.vtk", source, {"weights": np.ones(300, dtype=np.float32)})
    write_points(tmp_path / "target.vtk", source + shift, {"weights": np.ones(300, dtype=np.float32)})
    return source, shift


def test_command_line_warps_query_points_and_prints_progress_lines(tmp_path, generator):
    source, shift = _cloud_pair(tmp_path, generator)
    query = torch.randn(7, 3, generator=generator).numpy()
    np.savetxt(tmp_path / "query.txt", query)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "gdl.cli.register", str(tmp_path / "source.vtk"), str(tmp_path / "target.vtk"), "--out", str(out),
         "--steps", "prealign", "--query", str(tmp_path / "query.txt"), "registration.prealign.num_points=200"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # not a terminal: time-stamped lines before and during each step, with the elapsed seconds
    lines = done.stderr.splitlines()
    assert any("register: kitti preset, steps prealign, 300 -> 300 points, masses: point data 'weights'" in line for line in lines)
    assert any("prealign: step 1/1" in line for line in lines)
    assert any(re.search(r"prealign: rigid fit at blur 0\.05 \(200 -> 200 points\), \d+(\.\d)?s$", line) for line in lines)
    assert any(re.search(r"prealign: done in \d+(\.\d)?s$", line) for line in lines)
    displacement = np.load(out / "displacement.npy")
    np.testing.assert_allclose(displacement.mean(0), shift, atol=0.05)
    warped = np.loadtxt(out / "warped_query.txt")
    np.testing.assert_allclose(warped, query + shift, atol=0.1)  # the same rigid map, at other points


def test_command_line_errors_are_one_line(tmp_path, generator, capsys):
    _cloud_pair(tmp_path, generator)
    (tmp_path / "bad.txt").write_text("1 2\n")
    common = [str(tmp_path / "source.vtk"), str(tmp_path / "target.vtk"), "--out", str(tmp_path / "out"), "--steps", "prealign"]
    for extra, message in (
        (["--query", str(tmp_path / "bad.txt")], "line 1: expected three numbers x y z, got 2"),
        (["--query", str(tmp_path / "none.txt")], "query file not found"),
        (["registration.prealign.blur=0.1"], "kitti preset: Could not override 'prealign.blur'"),
        (["registration.prealign.iterations=0"], "iterations must be"),
    ):
        assert register_main(common + extra) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("error: ") and message in error, error
    with pytest.raises(SystemExit) as exited:
        register_main(common + ["--preset", "liver"])
    assert exited.value.code == 1
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: argument --preset: expected one of"), error


def test_lung_benchmark_reports_landmark_errors_after_each_step(tmp_path):
    # a 600-point tree and the same tree shifted by 5.5 mm: the affine pre-alignment, ending at a
    # 2 mm blur, brings the landmarks (15 of the points) back to within a fraction of a mm
    tree, _, weights, _ = read_lung_pair(sample_folder("lung"))
    index = np.random.default_rng(0).choice(len(tree), 600, replace=False)
    shift = np.array([0.02, -0.01, 0.05], dtype=np.float32)
    write_points(tmp_path / "copd1_source.vtk", tree[index], {"weights": weights[index]})
    write_points(tmp_path / "copd1_target.vtk", tree[index] + shift, {"weights": weights[index]})
    np.savetxt(tmp_path / "source.txt", tree[index[:15]])
    np.savetxt(tmp_path / "target.txt", tree[index[:15]] + shift)
    out = tmp_path / "out" / "lung.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/lung.py", "--data", str(tmp_path), "--steps", "prealign", "--device", "cpu",
         "--landmarks", str(tmp_path / "source.txt"), str(tmp_path / "target.txt"), "--synthetic-seeds", "",
         "--ot-points", "200", "--json", str(out), "registration.prealign.num_points=300",
         "registration.prealign.blurs=[0.2,0.1,0.05,0.02]", "registration.prealign.subset_seed=0,1"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "over 10 mm   0/15, worse than before   0" in done.stdout, done.stdout
    runs = [json.loads((out.parent / f"lung_{k}.json").read_text()) for k in (0, 1)]  # one per subset seed
    assert [r["overrides"][-1] for r in runs] == ["registration.prealign.subset_seed=0", "registration.prealign.subset_seed=1"]
    for k, result in enumerate(runs):
        real = result["real"]
        assert list(real["tre_mm"]) == ["before", "after prealign"]
        assert real["tre_mm"]["before"]["mean"] == pytest.approx(float(np.linalg.norm(shift)) * 100, rel=1e-5)
        assert real["tre_mm"]["after prealign"]["mean"] < 1.0
        assert len(real["landmark_errors_mm"]["after prealign"]) == 15
        assert (out.parent / f"lung_{k}_landmarks.png").stat().st_size > 10_000
    sweep = json.loads((out.parent / "lung_sweep.json").read_text())
    means = [r["real"]["tre_mm"]["after prealign"]["mean"] for r in runs]
    assert [row["mean"] for row in sweep["runs"]] == means
    assert sweep["mean_tre_mm"] == pytest.approx(np.mean(means)) and sweep["max_mean_tre_mm"] == max(means)
    assert "sweep: mean TRE" in done.stdout


@pytest.mark.parametrize("apex", ["max", "min"])
def test_breathing_descent_is_the_analytic_field_and_points_away_from_the_apex(apex, generator):
    """With no expansion, rotation or wiggle, u(x) = -d h(x)^2 e: h the depth below the apex (0 there,
    1 at the diaphragm), e the unit vector toward the apex, d set by the mean displacement."""
    z = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64)
    points = torch.stack([0.1 * torch.sin(7 * z), 0.1 * torch.cos(5 * z), z], 1)
    breathing = BreathingDeformation(
        mean_displacement=(0.2, 0.2), expansion=(0.0, 0.0, 0.0), rotation_deg=0.0, amplitudes=(0.0, 0.0), apex=apex
    )
    flow = breathing.field(points, generator)(points)
    depth = (1 - z) / 2 if apex == "max" else (1 + z) / 2
    toward_apex = 1.0 if apex == "max" else -1.0
    expected_z = -toward_apex * depth**2 * 0.2 / float((depth**2).mean())  # scaled to the mean norm 0.2
    torch.testing.assert_close(flow[:, :2], torch.zeros_like(flow[:, :2]), atol=1e-12, rtol=0)
    torch.testing.assert_close(flow[:, 2], expected_z, atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match="apex"):
        BreathingDeformation(apex="top")
