"""Exporting a training run as a pretrained dMaSIF file with its model card."""

import torch
import yaml

from gdl.data.proteins import SAMPLE_DIR, find_complexes, split_by_pdb_id
from gdl.models.dmasif import DMaSIF
from gdl.models.dmasif.export import main, validation_curve
from gdl.tasks.protein_site import ProteinSiteTask

PROGRESS = """\
pooled_site: training ProteinSiteTask (DMaSIF, 5.0 K parameters) on cpu, 3 epochs (0-2); run folder x
epoch 0/2, batch 6/190, 1m01s elapsed, about 28m29s left
epoch 0/2 done: train/loss 0.6049, val/loss 0.6678, val/roc_auc 0.6458, val/roc_auc_pooled 0.6427; 11m35s elapsed, about 26m36s left
epoch 1/2 done: train/loss 0.6388, val/loss 0.6581, val/roc_auc 0.6722; 14m09s elapsed, about 33m10s left
epoch 1/2 done: train/loss 0.6300, val/loss 0.6500, val/roc_auc 0.6800; 2m00s elapsed, about 1m00s left
"""


def test_validation_curve_reads_the_epoch_lines_and_keeps_the_last_of_a_resumed_epoch():
    assert validation_curve(PROGRESS.splitlines()) == [
        {"epoch": 0, "val/loss": 0.6678, "val/roc_auc": 0.6458, "val/roc_auc_pooled": 0.6427},
        {"epoch": 1, "val/loss": 0.65, "val/roc_auc": 0.68},
    ]


def test_a_run_folder_becomes_a_pretrained_file_with_its_card(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = {
        "data": {"data_dir": str(SAMPLE_DIR), "val_fraction": 0.15, "test_fraction": 0.2},
        "model": {"hydrogens": False},
        "task": {"_target_": "gdl.tasks.protein_site.ProteinSiteTask", "threshold": 3.0, "crop_radius": 20.0},
        "trainer": {"max_epochs": 3},
    }
    (run / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    trained = DMaSIF(head="site", channels=8, curvature_scales=[], chemical_channels=0, resolution=3.0, hydrogens=False)
    task = ProteinSiteTask(trained)
    checkpoint = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "gdl_task": {"class": "gdl.tasks.protein_site.ProteinSiteTask", "name": "protein_site"},
        "epoch": 1,
    }
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, run / "checkpoints" / "epoch_001.ckpt")
    (tmp_path / "train.out").write_text(PROGRESS)
    out = tmp_path / "site.pt"
    assert main([str(run), "--out", str(out), "--progress-log", str(tmp_path / "train.out")]) == 0
    loaded = DMaSIF.from_pretrained(str(out))
    assert loaded.config == trained.config and not loaded.hydrogens
    for name, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    card = torch.load(out, weights_only=True)["card"]
    train, val, test = split_by_pdb_id(find_complexes(SAMPLE_DIR), 0.15, 0.2)
    assert card["test_ids"] == sorted({c.pdb_id for c in test}) and card["val_ids"] == sorted({c.pdb_id for c in val})
    assert card["checkpoint_epoch"] == 1 and card["val_curve"][1]["val/roc_auc"] == 0.68
    assert "heavy atoms" in card["labels"]
    assert "epoch 1" in capsys.readouterr().out
