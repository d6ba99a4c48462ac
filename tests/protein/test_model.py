"""dMaSIF features and outputs: rotation invariance, batching, the site head's gradients."""

import pytest
import torch

import gdl.ops
from gdl.data.pdb import read_pdb
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import DMaSIF

NEEDED = ("grid_subsample", "curvatures", "tangent_frames", "quasi_geodesic_conv")
pytestmark = pytest.mark.skipif(
    any(op not in gdl.ops.available() for op in NEEDED), reason=f"needs the operators {NEEDED}"
)


@pytest.fixture(scope="module")
def protein():
    atoms = read_pdb(SAMPLE_DIR / "3E2U_E.pdb.gz")
    return atoms.coords - atoms.coords.mean(0), atoms.types


def rotation(generator):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return (q if torch.det(q) > 0 else -q).float()


def test_features_and_outputs_are_rotation_invariant(protein, generator):
    atoms, types = protein
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = DMaSIF(head="site", points_per_atom=10)
    surface = model.surface(atoms, types, generator=generator)
    q = rotation(generator)
    rotated = type(surface)(surface.points @ q.T, surface.normals @ q.T, surface.batch)
    features = model.features(surface, atoms, types, None)
    features_r = model.features(rotated, atoms @ q.T, types, None)
    curvature_channels = model.curvatures.out_channels
    assert torch.isfinite(features).all()
    assert torch.allclose(features_r[:, :curvature_channels], features[:, :curvature_channels], atol=1e-3, rtol=1e-3)
    assert torch.allclose(features_r[:, curvature_channels:], features[:, curvature_channels:], atol=1e-4, rtol=1e-4)
    logits = model(surface, atoms, types)
    logits_r = model(rotated, atoms @ q.T, types)
    assert logits.shape == (len(surface.points),)
    assert torch.allclose(logits_r, logits, atol=1e-3, rtol=1e-3)


@pytest.mark.slow
def test_batched_forward_equals_per_protein_and_trains(protein, generator):
    atoms, types = protein
    model = DMaSIF(head="search", points_per_atom=10)
    surface = model.surface(atoms, types, generator=generator)
    binder, target = model(surface, atoms, types)
    # the two items overlap in space (no float32 precision lost to a shift): only the batch vectors
    # keep them apart, and any mixing would change the features of both
    two = type(surface)(
        torch.cat([surface.points, surface.points]),
        torch.cat([surface.normals, surface.normals]),
        torch.cat([surface.batch, surface.batch + 1]),
    )
    atom_batch = torch.cat([torch.zeros(len(atoms)), torch.ones(len(atoms))]).long()
    binder2, target2 = model(two, torch.cat([atoms, atoms]), torch.cat([types, types]), atom_batch)
    n = len(surface.points)
    for single, batched in ((binder, binder2), (target, target2)):
        assert torch.allclose(batched[:n], single, atol=1e-3, rtol=1e-3)  # float32 sums in other orders
        assert torch.allclose(batched[n:], single, atol=1e-3, rtol=1e-3)
    (binder * target).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
