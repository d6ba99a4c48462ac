"""Predict the interaction sites of a protein: a scored surface as PLY (``score`` property) and PNG.

    python -m gdl.cli.predict_sites protein.pdb[.gz] [--ckpt best.ckpt] --out results/

Without ``--ckpt`` the shipped pretrained site model scores the surface
(``DMaSIF.from_pretrained("site")``, model card in the README); ``--ckpt`` takes a checkpoint of
``experiment=protein_site`` trained with the default model settings (configs/model/dmasif.yaml).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from gdl.data.pdb import read_pdb
from gdl.models.dmasif import DMaSIF
from gdl.tasks.protein import MODEL_CONFIG_KEY
from gdl.tasks.checkpoint_task import WrongTaskError, load_task_checkpoint


def load_model(ckpt: str | None, head: str = "site") -> DMaSIF:
    """The shipped pretrained ``head`` model (``ckpt`` None), or the DMaSIF of a Lightning checkpoint
    of ``experiment=protein_<head>`` with the settings it records (older checkpoints: the shipped
    model's settings)."""
    if ckpt is None:
        return DMaSIF.from_pretrained(head)
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    if "config" in torch.load(ckpt, map_location="cpu", weights_only=False):  # written by DMaSIF.save_pretrained
        return DMaSIF.from_pretrained(str(ckpt))
    task = f"gdl.tasks.protein_{head}.Protein{head.capitalize()}Task"
    state = load_task_checkpoint(ckpt, task, f"protein_{head}")
    config = state.get(MODEL_CONFIG_KEY) or DMaSIF.from_pretrained(head).config
    model = DMaSIF(**{**config, "head": head})
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights)
    return model.eval()


def write_ply(path: Path, points: np.ndarray, normals: np.ndarray, scores: np.ndarray) -> None:
    from plyfile import PlyData, PlyElement

    vertex = np.empty(
        len(points),
        dtype=[(n, "f4") for n in ("x", "y", "z", "nx", "ny", "nz", "score")],
    )
    for i, name in enumerate("xyz"):
        vertex[name] = points[:, i]
        vertex["n" + name] = normals[:, i]
    vertex["score"] = scores
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def write_png(path: Path, points: np.ndarray, scores: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centred = points - points.mean(0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    view = centred @ axes.T  # principal axes: first two span the view, third is depth
    order = np.argsort(view[:, 2])
    figure, ax = plt.subplots(figsize=(6, 6))
    shown = ax.scatter(view[order, 0], view[order, 1], c=scores[order], s=4, cmap="coolwarm", vmin=0, vmax=1)
    figure.colorbar(shown, ax=ax, label="interface probability")
    ax.set_aspect("equal")
    ax.set_xlabel("first principal axis (Å)")
    ax.set_ylabel("second principal axis (Å)")
    ax.set_title(title)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def predict_sites(pdb: str, ckpt: str | None, out: str) -> tuple[Path, Path]:
    """Score the surface of ``pdb`` and write ``<name>_sites.ply`` and ``<name>_sites.png`` in ``out``."""
    atoms = read_pdb(pdb)
    model = load_model(ckpt, "site")
    coords = atoms.coords - atoms.coords.mean(0)
    with torch.no_grad():
        surface = model.surface(coords, atoms.types, None, atoms.residue_properties())
        scores = torch.sigmoid(model(surface, coords, atoms.types)).numpy()
    points = (surface.points + atoms.coords.mean(0)).numpy()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(pdb).name.split(".")[0]
    ply, png = out_dir / f"{stem}_sites.ply", out_dir / f"{stem}_sites.png"
    write_ply(ply, points, surface.normals.numpy(), scores)
    write_png(png, points, scores, f"{stem}: predicted interface")
    return ply, png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdl.cli.predict_sites", description=__doc__.splitlines()[0])
    parser.add_argument("pdb", help="a .pdb or .pdb.gz file")
    parser.add_argument("--ckpt", default=None, help="checkpoint of experiment=protein_site (default: the shipped model)")
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    args = parser.parse_args(argv)
    try:
        ply, png = predict_sites(args.pdb, args.ckpt, args.out)
    except (FileNotFoundError, WrongTaskError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {ply}\nwrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
