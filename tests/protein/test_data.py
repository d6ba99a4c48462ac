"""Complexes, splits, MaSIF lists, the archive download, interface labels and the data module."""

import io
import shutil
import tarfile

import pytest
import torch

from gdl.data.proteins import (
    SAMPLE_DIR,
    ProteinComplexDataModule,
    complexes_from_list,
    download_masif,
    find_complexes,
    interface_labels,
    pooled_complexes,
    read_masif_list,
    split_by_pdb_id,
)


def test_sample_complexes_pair_files_by_pdb_id():
    complexes = find_complexes(SAMPLE_DIR)
    files = sorted(p.name for p in SAMPLE_DIR.glob("*.pdb.gz"))
    assert len(complexes) == len(files) // 2
    for c in complexes:
        assert c.file_1.name.startswith(c.pdb_id + "_") and c.file_2.name.startswith(c.pdb_id + "_")
        assert c.file_1 != c.file_2


def test_splits_never_share_a_pdb_id(shared_data):
    complexes = find_complexes(shared_data / "masif_search_pairs")
    train, val, test = split_by_pdb_id(complexes, 0.1, 0.2)
    ids = [{c.pdb_id for c in split} for split in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, (train, val, test))) == len(complexes)
    assert len(test) == round(0.2 * len(complexes)) and len(val) == round(0.1 * len(complexes))
    # Stable: a subset of the folder keeps the same IDs in test.
    _, _, test_again = split_by_pdb_id(complexes[::-1], 0.1, 0.2)
    assert {c.pdb_id for c in test_again} == ids[2]
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        split_by_pdb_id(complexes, 0.6, 0.5)


def test_pooled_folders_split_by_pdb_id_across_both_sets(shared_data, tmp_path):
    """MaSIF-search and Docking Benchmark 5.5 pooled: every complex of both folders, one split by PDB
    ID over their union, and a PDB ID present in two folders is refused."""
    folders = [shared_data / "masif_search_pairs", shared_data / "db5_5" / "bound"]
    pooled = pooled_complexes(folders)
    assert len(pooled) == sum(len(find_complexes(f)) for f in folders) == 80 + 213
    module = ProteinComplexDataModule(data_dir=[str(f) for f in folders], val_fraction=0.15, test_fraction=0.2)
    module.setup()
    splits = {name: {c.pdb_id for c in module.splits[name]} for name in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == len(pooled)
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"] or splits["val"] & splits["test"])
    db5 = {c.pdb_id for c in find_complexes(folders[1])}
    assert splits["test"] & db5 and splits["test"] - db5  # both sets reach the test split
    for name in ("1ACB_l.pdb.gz", "1ACB_r.pdb.gz"):
        shutil.copy(folders[1] / name, tmp_path / name)
    with pytest.raises(ValueError, match="PDB ID 1ACB is in both"):
        pooled_complexes([folders[1], tmp_path])
    with pytest.raises(ValueError, match="single data_dir"):
        ProteinComplexDataModule(data_dir=[str(f) for f in folders], train_list="a.txt", test_list="b.txt").setup()


def test_masif_lists(tmp_path):
    for path in SAMPLE_DIR.glob("*.pdb.gz"):
        shutil.copy(path, tmp_path)
    (tmp_path / "testing_ppi.txt").write_text("1I07_A_B\n2HDP_A_B\n9XYZ_A_B\n\n")
    (tmp_path / "training.txt").write_text("3TND_B\n")
    assert read_masif_list(tmp_path / "testing_ppi.txt") == ["1I07_A_B", "2HDP_A_B", "9XYZ_A_B"]
    listed = complexes_from_list(tmp_path, tmp_path / "testing_ppi.txt")
    assert [c.name for c in listed] == ["1I07_A_B", "2HDP_A_B"]  # 9XYZ has no files here
    assert [c.name for c in complexes_from_list(tmp_path, tmp_path / "training.txt")] == ["3TND_B_D"]
    (tmp_path / "bad.txt").write_text("1I07_A_B\nnot an entry\n")
    with pytest.raises(ValueError, match="bad.txt, line 2"):
        read_masif_list(tmp_path / "bad.txt")


def test_download_extracts_a_local_archive(tmp_path):
    archive = tmp_path / "masif.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(SAMPLE_DIR / "1I07_A.pdb.gz", arcname="data/01-benchmark_pdbs/1I07_A.pdb.gz")
        text = b"1I07_A_B\n"
        info = tarfile.TarInfo("data/lists/testing_ppi.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    out = download_masif(tmp_path / "out", url=archive.as_uri())
    assert (out / "data/01-benchmark_pdbs/1I07_A.pdb.gz").read_bytes() == (SAMPLE_DIR / "1I07_A.pdb.gz").read_bytes()
    assert read_masif_list(out / "data/lists/testing_ppi.txt") == ["1I07_A_B"]


def test_interface_labels_match_dense_distances(generator):
    points = torch.randn(300, 3, generator=generator) * 4
    atoms = torch.randn(200, 3, generator=generator) * 4 + torch.tensor([6.0, 0, 0])
    batch = (torch.arange(300) >= 170).long()
    atom_batch = (torch.arange(200) >= 90).long()
    labels = interface_labels(points, batch, atoms, atom_batch, threshold=1.5)
    d = torch.cdist(points.double(), atoms.double())
    d[batch[:, None] != atom_batch[None, :]] = float("inf")
    margin = (d.min(1).values - 1.5).abs() > 1e-4  # away from float ties at the threshold
    assert torch.equal(labels[margin], (d < 1.5).any(1)[margin])
    assert 0 < int(labels.sum()) < 300
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    moved = interface_labels(points @ q.float().T + 5, batch, atoms @ q.float().T + 5, atom_batch, threshold=1.5)
    assert torch.equal(moved[margin], labels[margin])  # a rigid motion of the complex changes nothing
    with pytest.raises(ValueError, match="threshold must be positive"):
        interface_labels(points, batch, atoms, atom_batch, threshold=0)


def test_data_module_batches_both_sides():
    module = ProteinComplexDataModule(batch_size=2)
    module.setup()
    assert {len(module.splits[s]) for s in ("val", "test")} >= {1}
    batch = next(iter(module.train_dataloader()))
    assert batch.num_graphs == 2
    for side in ("1", "2"):
        atoms, types, owner = batch[f"atoms_{side}"], batch[f"types_{side}"], batch[f"atoms_{side}_batch"]
        assert atoms.shape[1] == 3 and types.shape == (atoms.shape[0], 6)
        assert torch.equal(owner.unique(), torch.tensor([0, 1]))
        assert batch[f"residues_{side}"].shape == (atoms.shape[0], 2)
    with pytest.raises(FileNotFoundError, match="data_dir not found"):
        ProteinComplexDataModule(data_dir="/nonexistent/folder")
    with pytest.raises(ValueError, match="cache_dir and surface_model"):
        ProteinComplexDataModule(cache_dir="somewhere")


def test_data_module_serves_cached_surfaces(tmp_path):
    from gdl.models.dmasif import DMaSIF

    for name in ("3EYD_C", "3EYD_D"):
        shutil.copy(SAMPLE_DIR / f"{name}.pdb.gz", tmp_path)
    model = DMaSIF(resolution=1.5, points_per_atom=10, curvature_scales=[])
    module = ProteinComplexDataModule(data_dir=tmp_path, batch_size=1, val_fraction=0, test_fraction=0,
                                      cache_dir=tmp_path / "cache", surface_model=model)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    for side in ("1", "2"):
        points, features = batch[f"points_{side}"], batch[f"features_{side}"]
        assert points.shape[1] == 3 and features.shape == (len(points), model.fixed_channels)
        assert torch.equal(batch[f"points_{side}_batch"], torch.zeros(len(points), dtype=torch.long))
    # centred like the atoms: side 1's atoms have mean zero, the surfaces moved with them
    assert batch.atoms_1.mean(0).abs().max() < 1e-3
    assert torch.cdist(batch.points_1, batch.atoms_1).min() > 1.0
