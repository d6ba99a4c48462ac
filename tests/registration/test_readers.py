import numpy as np
import pytest
import torch

from gdl.data.dirlab import read_landmarks, voxel_spacing, voxels_to_mm
from gdl.data.kitti import ScenePair, list_scene_pairs, read_flownet3d_pair, read_scene_pair, standard_protocol
from gdl.data.lung import read_lung_pair
from gdl.data.pointclouds import read_points, write_points
from gdl.models.registration.metrics import scene_flow_metrics


def test_reads_the_binary_polydata_lung_trees(shared_data):
    source, target, w_source, w_target = read_lung_pair(shared_data / "lung_copd1")
    assert source.shape == target.shape == (60000, 3) and w_source.shape == (60000,)
    assert source.dtype == np.float32 and (w_source > 0).all()
    # normalised units (1 = 100 mm): a lung is a few units wide
    assert 1 < np.ptp(source, axis=0).max() < 5


def test_ply_and_vtk_round_trip(tmp_path, generator):
    points = torch.randn(50, 3, generator=generator).numpy()
    weights = torch.rand(50, generator=generator).numpy()
    for suffix in (".ply", ".vtk"):
        write_points(tmp_path / f"cloud{suffix}", points, {"weights": weights})
        read, data = read_points(tmp_path / f"cloud{suffix}")
        np.testing.assert_allclose(read, points, rtol=1e-6)
        np.testing.assert_allclose(data["weights"].reshape(-1), weights, rtol=1e-6)


def test_reads_real_ply(shared_data):
    points, _ = read_points(shared_data / "shapes" / "bunny_30k.ply")
    assert points.shape == (30000, 3)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.npy", np.zeros((5, 2), dtype=np.float32), r"shape \(N, 3\)"),
        ("nan.npy", np.array([[0, 0, np.nan]], dtype=np.float32), "NaN"),
        ("bad.vtk", b"not a vtk file\n", "legacy VTK"),
        ("bad.ply", b"ply\nformat ascii 1.0\nend_header\n", "PLY"),
        ("cloud.xyz", b"1 2 3\n", "unsupported"),
    ],
)
def test_readers_reject_malformed_files(tmp_path, name, content, message):
    path = tmp_path / name
    np.save(path, content) if isinstance(content, np.ndarray) else path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_points(path)
    assert name in str(error.value)


def test_kitti_readers_reject_malformed_pairs(tmp_path):
    (tmp_path / "000000").mkdir()
    np.save(tmp_path / "000000" / "pc1.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="pc2.npy"):
        read_scene_pair(tmp_path / "000000")
    np.save(tmp_path / "000000" / "pc2.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="same shape"):
        read_scene_pair(tmp_path / "000000")
    np.savez(tmp_path / "pair.npz", pos1=np.zeros((4, 3)), pos2=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="gt"):
        read_flownet3d_pair(tmp_path / "pair.npz")


def test_standard_protocol_on_real_kitti(shared_data):
    paths = list_scene_pairs(shared_data / "kitti_sceneflow")
    pair = read_scene_pair(paths[0])
    np.testing.assert_array_equal(pair.flow, pair.target - pair.source)
    processed = standard_protocol(pair, 8192)
    assert processed.source.shape == processed.target.shape == processed.flow.shape == (8192, 3)
    for cloud in (processed.source, processed.target, processed.source + processed.flow):
        assert (cloud[:, 1] >= -1.4).all() and (cloud[:, 2] < 35).all()
    # the README's scale: zero flow gives EPE3D between 0.38 and 2.12 m on these pairs
    zero = scene_flow_metrics(torch.zeros(8192, 3), torch.from_numpy(processed.flow))["EPE3D"]
    assert 0.3 < zero < 2.2


def test_standard_protocol_cuts_ground_and_depth_where_asked():
    source = np.array([[0.0, -2.0, 10.0], [0.0, -1.0, 10.0], [0.0, 0.0, 30.0], [0.0, 0.0, 40.0]], dtype=np.float32)
    pair = ScenePair("cuts", source, source + 0.5, np.full_like(source, 0.5))
    np.testing.assert_array_equal(standard_protocol(pair, None).source, source[1:3])  # y >= -1.4 m, z < 35 m
    np.testing.assert_array_equal(standard_protocol(pair, None, ground_height=-2.5, max_depth=50.0).source, source)
    np.testing.assert_array_equal(standard_protocol(pair, None, ground_height=-1.4, max_depth=20.0).source, source[1:2])


def test_flownet3d_layout(tmp_path, generator):
    pos1 = torch.randn(100, 3, generator=generator).numpy() + [0, 2, 10]
    gt = 0.1 * torch.randn(100, 3, generator=generator).numpy()
    np.savez(tmp_path / "scene.npz", pos1=pos1, pos2=pos1 + gt, gt=gt)
    pair = standard_protocol(read_scene_pair(tmp_path / "scene.npz"), None)
    np.testing.assert_allclose(pair.target, pair.source + pair.flow, rtol=1e-5)


def test_dirlab_landmarks(tmp_path):
    path = tmp_path / "copd1_300_iBH_xyz_r1.txt"
    path.write_text("1\t1\t1\n11\t21\t3\n")
    landmarks = read_landmarks(path)
    np.testing.assert_allclose(voxels_to_mm(landmarks, voxel_spacing("copd1"))[1], [6.25, 12.5, 5.0])
    path.write_text("1\t1\t1\n11\tx\t3\n")
    with pytest.raises(ValueError, match="line 2"):
        read_landmarks(path)
    path.write_text("0\t1\t1\n")
    with pytest.raises(ValueError, match="1-based"):
        read_landmarks(path)
    with pytest.raises(ValueError, match="case"):
        voxel_spacing("copd11")
