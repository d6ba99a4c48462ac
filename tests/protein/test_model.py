"""dMaSIF features and outputs: descriptors against a dense reference, rotation invariance,
batching, gradients, the shipped pretrained models."""

import numpy as np
import pytest
import torch

import gdl.ops
from gdl.data.pdb import read_pdb
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import DMaSIF, Surface
from gdl.models.dmasif.descriptors import FAR, NEAR, SHELLS, surface_descriptors
from gdl.models.dmasif.model import PRETRAINED_DIR
from gdl.models.dmasif.surface import ATOM_RADII, atom_radii, smooth_distance

NEEDED = ("grid_subsample", "tangent_frames", "quasi_geodesic_conv")
pytestmark = pytest.mark.skipif(
    any(op not in gdl.ops.available() for op in NEEDED), reason=f"needs the operators {NEEDED}"
)
SMALL = dict(resolution=1.5, points_per_atom=10, curvature_scales=[])


@pytest.fixture(scope="module")
def protein():
    atoms = read_pdb(SAMPLE_DIR / "3E2U_E.pdb.gz")
    return atoms.coords - atoms.coords.mean(0), atoms.types, atoms.residue_properties()


def rotation(generator):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return (q if torch.det(q) > 0 else -q).float()


def test_descriptors_match_a_dense_count_and_are_invariant(protein, generator):
    atoms, types, residues = protein
    points = atoms[torch.randperm(len(atoms), generator=generator)[:50]] + torch.randn(50, 3, generator=generator)
    normals = torch.nn.functional.normalize(torch.randn(50, 3, generator=generator), dim=1)
    batch, atom_batch = torch.zeros(50, dtype=torch.long), torch.zeros(len(atoms), dtype=torch.long)
    d = surface_descriptors(points, normals, batch, atoms, types, residues, atom_batch)
    heavy = types[:, 1] == 0
    dist = torch.cdist(points.double(), atoms[heavy].double())
    for column, r in enumerate(SHELLS):  # burial: heavy atoms within r over a full sphere's count
        expected = (dist < r).sum(1).double() / (0.05 * 4 / 3 * np.pi * r**3)
        assert torch.allclose(d[:, column].double(), expected, atol=1e-5)
    within = (dist < 6).double()  # mean hydropathy of the residues of the atoms within 6 A
    expected = (within * residues[heavy, 0].double()).sum(1) / within.sum(1).clamp_min(1)
    assert torch.allclose(d[:, len(SHELLS) + 2].double(), expected, atol=1e-5)
    q, shift = rotation(generator), torch.randn(3, generator=generator) * 10
    moved = surface_descriptors(points @ q.T + shift, normals @ q.T, batch, atoms @ q.T + shift, types, residues, atom_batch)
    assert torch.allclose(moved, d, atol=1e-4)
    with pytest.raises(ValueError, match="residue_properties must have shape"):
        surface_descriptors(points, normals, batch, atoms, types, residues[:5], atom_batch)


def test_features_and_outputs_are_rotation_invariant(protein, generator):
    atoms, types, residues = protein
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = DMaSIF(head="site", **SMALL).eval()
    surface = model.surface(atoms, types, None, residues, generator=generator)
    assert surface.features.shape == (len(surface.points), model.fixed_channels)
    q = rotation(generator)
    rotated = surface.rotated(q[None])
    assert torch.allclose(rotated.points, surface.points @ q.T, atol=1e-5)
    refeatured = model.fixed_features(rotated, atoms @ q.T, types, None, residues)
    # The descriptors count heavy atoms in hard windows: a point with an atom within float32 rounding
    # (2e-5 A) of a window's radius may flip (seed 14 drew one at 10 A, of 757 points); compare the others.
    distances = torch.cdist(surface.points.double(), atoms[types[:, 1] == 0].double())
    radii = torch.tensor([*SHELLS, NEAR, FAR], dtype=torch.float64)
    on_edge = ((distances[..., None] - radii).abs() < 2e-5).flatten(1).any(1)
    assert int(on_edge.sum()) <= 0.05 * len(on_edge)
    assert torch.allclose(refeatured[~on_edge], surface.features[~on_edge], atol=1e-4)
    logits = model(surface, atoms, types)
    logits_r = model(rotated, atoms @ q.T, types)
    assert logits.shape == (len(surface.points),)
    assert torch.allclose(logits_r, logits, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="surface.features must have shape"):
        model(Surface(surface.points, surface.normals, surface.batch), atoms, types)


def test_default_truncation_keeps_the_surface_and_the_logits(protein, generator):
    """The default cutoffs (smooth distance: atoms within 8 A; convolutions: 3 radii) move the level
    set by < 0.02 A and the site logits by < 1e-3 against the exact model with the same weights."""
    atoms, types, residues = protein
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    settings = dict(SMALL, radius=3.0)
    model = DMaSIF(head="site", **settings).eval()
    exact = DMaSIF(head="site", **settings, surface_truncate=None, conv_truncate=None).eval()
    exact.load_state_dict(model.state_dict())
    assert model.surface_truncate == 8.0 and model.network.convs[0].truncate == 3.0
    surface = model.surface(atoms, types, None, residues, generator=generator)
    diameter = float((surface.points.max(0).values - surface.points.min(0).values).norm())
    assert diameter > 2 * 3 * settings["radius"]  # the convolution windows are truncated
    sigma = 0.5 * atom_radii(types).double() / min(ATOM_RADII)
    points, atoms64 = surface.points.double(), atoms.double()
    shift = smooth_distance(points, atoms64, sigma, backend="torch") - smooth_distance(
        points, atoms64, sigma, backend="torch", truncate=model.surface_truncate
    )
    assert float(shift.abs().max()) < 0.02
    with torch.no_grad():
        difference = (model(surface, atoms, types) - exact(surface, atoms, types)).abs().max()
    assert float(difference) < 1e-3


@pytest.mark.slow
def test_batched_forward_equals_per_protein_and_trains(protein, generator):
    atoms, types, residues = protein
    model = DMaSIF(head="search", **SMALL).eval()
    surface = model.surface(atoms, types, None, residues, generator=generator)
    binder, target = model(surface, atoms, types)
    # the two items overlap in space (no float32 precision lost to a shift): only the batch vectors
    # keep them apart, and any mixing would change the features of both
    two = Surface(
        torch.cat([surface.points, surface.points]),
        torch.cat([surface.normals, surface.normals]),
        torch.cat([surface.batch, surface.batch + 1]),
        torch.cat([surface.features, surface.features]),
    )
    atom_batch = torch.cat([torch.zeros(len(atoms)), torch.ones(len(atoms))]).long()
    binder2, target2 = model(two, torch.cat([atoms, atoms]), torch.cat([types, types]), atom_batch)
    n = len(surface.points)
    for single, batched in ((binder, binder2), (target, target2)):
        assert torch.allclose(batched[:n], single, atol=1e-3, rtol=1e-3)  # float32 sums in other orders
        assert torch.allclose(batched[n:], single, atol=1e-3, rtol=1e-3)
    model.train()
    binder, target = model(two, torch.cat([atoms, atoms]), torch.cat([types, types]), atom_batch)
    (binder * target).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_pretrained_models_load_and_round_trip(tmp_path):
    for name in ("site", "search"):
        model = DMaSIF.from_pretrained(name)
        assert model.head_kind == name and not model.training
        card = torch.load(PRETRAINED_DIR / f"{name}.pt", weights_only=True)["card"]
        assert card["val_curve"] and card["train_ids"] and not set(card["train_ids"]) & set(card["test_ids"])
    model.save_pretrained(tmp_path / "copy.pt", note="test")
    again = DMaSIF.from_pretrained(str(tmp_path / "copy.pt"), backend="torch")
    assert again.backend == "torch"
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="no file"):
        DMaSIF.from_pretrained(str(tmp_path / "missing.pt"))
