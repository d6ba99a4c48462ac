"""Turn a training run into a pretrained dMaSIF file with its model card.

    python -m gdl.models.dmasif.export RUN_DIR --out site.pt [--ckpt epoch_012.ckpt] [--progress-log train.out]
        [--report benchmarks/results/protein_report_NAME_test_cpu.json]

``RUN_DIR`` is the run folder of ``python train.py experiment=protein_site|protein_search...``
(its ``config_resolved.yaml`` and ``checkpoints/``). The file holds the settings, the weights and a
card: the data folders, the split by PDB ID (train, validation and test IDs, recomputed as the data
module splits them), the checkpoint's epoch, the validation curve (the ``epoch N/M done: ...`` lines
of the run's progress output, ``--progress-log``), the training command and, with ``--report``, the
test metrics of ``benchmarks/protein_report.py``. ``DMaSIF.from_pretrained(path)`` loads it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
import yaml

from gdl.command_line import ArgumentParser
from gdl.data.proteins import pooled_complexes, split_by_pdb_id

_EPOCH_DONE = re.compile(r"^epoch (?P<epoch>\d+)(/\d+)? done: (?P<metrics>[^;]*);")


def validation_curve(progress_lines) -> list[dict]:
    """``[{"epoch": n, "val/...": value, ...}]`` from progress lines ``epoch n/m done: k v, k v; ...``
    (the last line of an epoch wins, so a resumed run's repeated epoch is counted once)."""
    by_epoch = {}
    for line in progress_lines:
        match = _EPOCH_DONE.match(line.strip())
        if not match:
            continue
        pairs = (item.strip().rsplit(" ", 1) for item in match["metrics"].split(","))
        values = {key: float(value) for key, value in pairs if key.startswith("val/")}
        by_epoch[int(match["epoch"])] = {"epoch": int(match["epoch"]), **values}
    return [by_epoch[e] for e in sorted(by_epoch)]


def best_checkpoint(run_dir: Path) -> Path:
    """The run's ``checkpoints/epoch_XXX.ckpt`` (the best kept by the run), the newest if several."""
    found = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no checkpoints/epoch_*.ckpt in {run_dir}")
    return found[-1]


def model_card(run_dir: Path, ckpt: Path, progress_log: Path | None, report: Path | None) -> dict:
    """The card of the model of ``ckpt`` trained in ``run_dir`` (module docstring)."""
    config = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    data = config["data"]
    folders = data["data_dir"] if isinstance(data["data_dir"], list) else [data["data_dir"]]
    train, val, test = split_by_pdb_id(pooled_complexes(folders), data["val_fraction"], data["test_fraction"])
    card = {
        "data": [str(Path(folder)) for folder in folders],
        "split": f"by PDB ID, stable hash (gdl.data.proteins.split_by_pdb_id, val {data['val_fraction']}, test {data['test_fraction']})",
        "train_ids": sorted({c.pdb_id for c in train}),
        "val_ids": sorted({c.pdb_id for c in val}),
        "test_ids": sorted({c.pdb_id for c in test}),
        "checkpoint_epoch": int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]),
        "labels": f"surface points within {config['task']['threshold']} A of a partner atom "
        f"({'hydrogens included' if config['model'].get('hydrogens', True) else 'heavy atoms'})",
        "task": {k: v for k, v in config["task"].items() if k != "_target_"},
        "max_epochs": config["trainer"]["max_epochs"],
    }
    if progress_log is not None:
        card["val_curve"] = validation_curve(progress_log.read_text().splitlines())
    if report is not None:
        card["test"] = json.loads(report.read_text())
    return card


def main(argv=None) -> int:
    from gdl.cli.predict_sites import load_model

    parser = ArgumentParser(prog="python -m gdl.models.dmasif.export", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="run folder of a protein_site or protein_search training")
    parser.add_argument("--out", type=Path, required=True, help="the pretrained file to write")
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint to export (default: the run's best)")
    parser.add_argument("--progress-log", type=Path, default=None, help="the run's progress output (validation curve)")
    parser.add_argument("--report", type=Path, default=None, help="test metrics: a protein_report JSON")
    args = parser.parse_args(argv)
    for path in (args.run_dir / "config_resolved.yaml", args.progress_log, args.report, args.ckpt):
        if path is not None and not path.is_file():
            parser.error(f"file not found: {path}")
    ckpt = args.ckpt or best_checkpoint(args.run_dir)
    head = "search" if "search" in yaml.safe_load((args.run_dir / "config_resolved.yaml").read_text())["task"]["_target_"].lower() else "site"
    model = load_model(str(ckpt), head)
    card = model_card(args.run_dir, ckpt, args.progress_log, args.report)
    model.save_pretrained(args.out, **card)
    print(f"{args.out}: {head} model of {ckpt} (epoch {card['checkpoint_epoch']}), {len(card['train_ids'])} training complexes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
