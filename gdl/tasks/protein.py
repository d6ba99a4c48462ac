"""What the protein tasks share: surfaces of both sides (cached or sampled), rotations, labels,
evaluation bookkeeping and the optimiser. Site and search tasks add their loss and metrics."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch

from gdl.data.proteins import interface_labels
from gdl.models.dmasif import DMaSIF, Surface
from gdl.ops.core.checks import check_choice


def random_rotations(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """(n, 3, 3) rotations drawn uniformly (Haar measure) by QR of Gaussian matrices."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[torch.det(q) < 0, :, 0] *= -1
    return q.to(dtype=dtype, device=device)


@dataclass
class ComplexSurfaces:
    """Atoms, surfaces and interface labels of both sides of a batch of complexes."""

    atoms: tuple[torch.Tensor, torch.Tensor]
    types: tuple[torch.Tensor, torch.Tensor]
    atom_batch: tuple[torch.Tensor, torch.Tensor]
    surfaces: tuple[Surface, Surface]
    labels: tuple[torch.Tensor, torch.Tensor]


def complex_surfaces(model: DMaSIF, batch, threshold: float, rotate: bool) -> ComplexSurfaces:
    """Both sides' surfaces (from the batch when the data module cached them, else sampled now),
    turned by one random rotation per complex when ``rotate``, and their interface labels: points
    within ``threshold`` angstroms of a partner atom."""
    atoms = [batch.atoms_1, batch.atoms_2]
    atom_batch = (batch.atoms_1_batch, batch.atoms_2_batch)
    types = (batch.types_1, batch.types_2)
    if "points_1" in batch:
        surfaces = [
            Surface(batch[f"points_{s}"], batch[f"normals_{s}"], batch[f"points_{s}_batch"], batch[f"features_{s}"])
            for s in "12"
        ]
    else:
        residues = (batch.residues_1, batch.residues_2)
        surfaces = [model.surface(a, t, b, r) for a, t, b, r in zip(atoms, types, atom_batch, residues)]
    if rotate:
        rotations = random_rotations(batch.num_graphs, atoms[0].dtype, atoms[0].device)
        atoms = [torch.einsum("nij,nj->ni", rotations[b], a) for a, b in zip(atoms, atom_batch)]
        surfaces = [s.rotated(rotations) for s in surfaces]
    labels = (
        interface_labels(surfaces[0].points, surfaces[0].batch, atoms[1], atom_batch[1], threshold),
        interface_labels(surfaces[1].points, surfaces[1].batch, atoms[0], atom_batch[0], threshold),
    )
    return ComplexSurfaces(tuple(atoms), types, atom_batch, tuple(surfaces), labels)


def crop_patches(sides: ComplexSurfaces, radius: float, interface_fraction: float = 0.5) -> ComplexSurfaces:
    """Training patches (MaSIF trains on patches too): for each complex, the surface points within
    ``radius`` angstroms of a centre on each side. With probability ``interface_fraction`` the
    centre of side 1 is one of its interface points and side 2's is its nearest point on side 2 (the
    two patches face each other); otherwise both centres are uniform surface points."""
    keep = [torch.zeros(len(s.points), dtype=torch.bool, device=s.points.device) for s in sides.surfaces]
    first, second = sides.surfaces
    for b in range(int(first.batch.max()) + 1 if len(first.batch) else 0):
        mine = [(s.batch == b).nonzero()[:, 0] for s in sides.surfaces]
        if not len(mine[0]) or not len(mine[1]):
            continue
        interface = mine[0][sides.labels[0][mine[0]]]
        if len(interface) and float(torch.rand(())) < interface_fraction:
            centre_1 = interface[torch.randint(len(interface), ())]
            centre_2 = mine[1][(second.points[mine[1]] - first.points[centre_1]).norm(dim=1).argmin()]
        else:
            centre_1 = mine[0][torch.randint(len(mine[0]), ())]
            centre_2 = mine[1][torch.randint(len(mine[1]), ())]
        for k, (surface, centre) in enumerate(zip(sides.surfaces, (centre_1, centre_2))):
            near = (surface.points[mine[k]] - surface.points[centre]).norm(dim=1) < radius
            keep[k][mine[k][near]] = True
    surfaces = tuple(
        Surface(s.points[k], s.normals[k], s.batch[k], None if s.features is None else s.features[k])
        for s, k in zip(sides.surfaces, keep)
    )
    labels = tuple(label[k] for label, k in zip(sides.labels, keep))
    return ComplexSurfaces(sides.atoms, sides.types, sides.atom_batch, surfaces, labels)


def log_surface(task, key: str, surface: Surface, values: torch.Tensor) -> None:
    """Log the first protein's surface coloured by ``values`` through the training media helper."""
    try:
        from gdl.tasks.media import log_point_cloud
    except ImportError:  # the media helper ships with the training stack
        return
    first = surface.batch == 0
    log_point_cloud(task, key, surface.points[first].detach().cpu(), values[first].detach().cpu())


# checkpoint entry holding the DMaSIF settings (``DMaSIF.config``) of the trained model
MODEL_CONFIG_KEY = "dmasif_config"


class ProteinTask(L.LightningModule):
    """Base of the protein tasks: a :class:`DMaSIF` with head ``head``, Adam at a constant
    learning rate or, with ``lr_schedule="cosine"``, one decaying from ``lr`` to 0 over
    ``max_epochs`` (half a cosine), labels at ``threshold`` angstroms of the partner's atoms, a
    random rotation of each training complex and, with ``crop_radius``, training on facing patches
    of that radius (:func:`crop_patches`, a cheap step), a share ``crop_interface_fraction`` of them
    centred on the interface; evaluation always runs on whole surfaces.

    Subclasses define ``loss(sides, outputs)``, ``collect(sides, outputs, batch)`` (evaluation
    outputs of one batch) and ``metrics()`` (a dict logged as ``<stage>/<name>`` at epoch end).
    """

    head = ""

    def __init__(
        self,
        model: DMaSIF,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        threshold: float = 3.0,
        random_rotation: bool = True,
        crop_radius: float | None = None,
        lr_schedule: str = "constant",
        crop_interface_fraction: float = 0.5,
    ):
        super().__init__()
        check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
        if not 0.0 <= crop_interface_fraction <= 1.0:
            raise ValueError(f"crop_interface_fraction must be a fraction in [0, 1], got {crop_interface_fraction!r}")
        if getattr(model, "head_kind", None) != self.head:
            raise ValueError(f"{type(self).__name__} needs a DMaSIF model with head={self.head!r}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self._logged_media = False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the model's settings, so the checkpoint rebuilds the same DMaSIF (``MODEL_CONFIG_KEY``)."""
        checkpoint[MODEL_CONFIG_KEY] = dict(self.model.config)

    def outputs(self, batch, rotate: bool, crop: bool = False):
        sides = complex_surfaces(self.model, batch, self.hparams.threshold, rotate)
        if crop and self.hparams.crop_radius:
            sides = crop_patches(sides, self.hparams.crop_radius, self.hparams.crop_interface_fraction)
        outputs = [
            self.model(surface, atoms, types, atom_batch)
            for surface, atoms, types, atom_batch in zip(sides.surfaces, sides.atoms, sides.types, sides.atom_batch)
        ]
        return sides, outputs

    def training_step(self, batch, batch_idx):
        loss = self.loss(*self.outputs(batch, self.hparams.random_rotation, crop=True))
        self.log("train/loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def _eval_step(self, batch, stage: str):
        sides, outputs = self.outputs(batch, False)
        self.log(f"{stage}/loss", self.loss(sides, outputs), batch_size=batch.num_graphs)
        self.collect(sides, outputs, batch)
        if not self._logged_media:
            self._logged_media = True
            self.log_media(stage, sides, outputs)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self):
        self._logged_media = False
        self.reset()

    on_test_epoch_start = on_validation_epoch_start

    def _log_metrics(self, stage: str):
        for name, value in self.metrics().items():
            self.log(f"{stage}/{name}", value)
        self.reset()

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        # cosine: lr_e = lr (1 + cos(pi e / E)) / 2 at epoch e of E = max_epochs
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)}

    def log_media(self, stage: str, sides: ComplexSurfaces, outputs) -> None:
        """Log a picture of the first protein of an evaluation epoch (nothing by default)."""
