"""Predict the interaction sites of proteins: scored surfaces, residues and structures.

    python -m gdl.cli.predict_sites protein.pdb[.gz] other.cif[.gz] folder/ ... [--ckpt best.ckpt] --out results/

Each structure (PDB or mmCIF, gzipped or not; a folder stands for the structure files under it) is
read as :func:`gdl.data.pdb.read_pdb` reads it (without hydrogens unless the model keeps them), its
surface scored, and ``<name>_sites.*`` written in
``--out``: ``.ply`` (surface points with normals and ``score``), ``.png`` (a view of the scored
surface), ``.csv`` (one row per residue: chain, residue number, insertion code, name, score,
surface points; :mod:`gdl.data.residue_scores`) and ``.pdb`` or ``.cif`` (the structure read, in the
format given, with each residue's score in the B-factor column: ``spectrum b`` in PyMOL or ChimeraX).
One summary line per protein; a file that cannot be read or scored gets one ``error: <file>:
<reason>`` line and the others are still processed. Exit code 1 when any file failed, else 0.

Without ``--ckpt`` the shipped pretrained site model scores the surface
(``DMaSIF.from_pretrained("site")``, model card in docs/guides/proteins.md); ``--ckpt`` takes a checkpoint of
``experiment=protein_site`` trained with the default model settings (configs/model/dmasif.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from gdl.command_line import ArgumentParser
from gdl.data.pdb import Atoms, PDBError, read_for_model, structure_files
from gdl.data.residue_scores import ResidueScore, output_files, output_stem, residue_scores, summary, write_residue_files
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


def model_surface(model: DMaSIF, atoms: Atoms):
    """The surface ``model`` samples for ``atoms`` centred on their mean (the same file gives the same
    surface, run after run): ``(surface, coords, centre)``, the surface and atoms in the centred
    frame and the centre to add back for the file's frame."""
    centre = atoms.coords.mean(0)
    coords = atoms.coords - centre
    generator = torch.Generator().manual_seed(0)
    surface = model.surface(coords, atoms.types, None, atoms.residue_properties(), generator=generator)
    return surface, coords, centre


def predict_sites(path, model: DMaSIF, out) -> tuple[dict[str, Path], list[ResidueScore], int]:
    """Score the surface of the structure ``path`` with a site ``model`` and write its ``_sites``
    files in ``out`` (module docstring). Returns the files by kind, the scored residues and the
    number of surface points."""
    path = Path(path)
    structure, atoms = read_for_model(path, hydrogens=model.hydrogens)  # the scored copy keeps every atom
    with torch.no_grad():
        surface, coords, centre = model_surface(model, atoms)
        scores = torch.sigmoid(model(surface, coords, atoms.types)).numpy()
    points = (surface.points + centre).numpy()
    residues = residue_scores(points, scores, atoms)
    files = {**output_files(out, path, "sites", ("ply", "png")), **write_residue_files(out, path, "sites", structure, residues)}
    write_ply(files["ply"], points, surface.normals.numpy(), scores)
    write_png(files["png"], points, scores, f"{output_stem(path)}: predicted interface")
    return files, residues, len(points)


def error_line(path, error: Exception) -> str:
    """``error: <file>: <reason>`` in one line, whether or not the reason already names the file."""
    reason = " ".join(str(error).split())
    reason = reason.removeprefix(f"{path}:").removeprefix(f"{path},").strip()
    return f"error: {path}: {reason}"


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m gdl.cli.predict_sites", description=__doc__)
    parser.add_argument("structures", nargs="+", help="PDB or mmCIF files (.pdb, .cif, optionally .gz) or folders of them")
    parser.add_argument("--ckpt", default=None, help="checkpoint of experiment=protein_site (default: the shipped model)")
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.ckpt, "site")
    except (FileNotFoundError, WrongTaskError) as error:
        sys.exit(f"error: {error}")
    failed = 0
    for path in structure_files(args.structures):
        try:
            _, residues, points = predict_sites(path, model, args.out)
        except (PDBError, OSError, ValueError) as error:
            failed += 1
            print(error_line(path, error), flush=True)
            continue
        print(summary(path, residues, points), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
