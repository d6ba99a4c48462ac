"""Surfaces from atoms: level set, outward normals, area scaling, rotations, backends, batches."""

import math

import pytest
import torch

import gdl.ops
from gdl.data.pdb import read_pdb
from gdl.data.proteins import SAMPLE_DIR
from gdl.models.dmasif import atom_radii, atoms_to_surface, smooth_distance
from gdl.models.dmasif.surface import van_der_waals_gap

pytestmark = pytest.mark.skipif(
    "grid_subsample" not in gdl.ops.available(), reason="needs the grid_subsample operator"
)

RADII = torch.tensor([1.70, 1.10, 1.52, 1.55, 1.80, 1.90], dtype=torch.float64)


def reference_sdf(x, atoms, radii):
    """The smooth distance written from its formula, dense float64."""
    x, atoms, radii = x.double(), atoms.double(), radii.double()
    d = torch.cdist(x, atoms)
    sigma = (torch.softmax(-d, dim=1) * radii).sum(1)
    return -sigma * torch.logsumexp(-d / radii, dim=1)


@pytest.fixture(scope="module")
def protein():
    atoms = read_pdb(SAMPLE_DIR / "3E2U_E.pdb.gz")
    return atoms.coords - atoms.coords.mean(0), atoms.types


def one_hot(indices):
    return torch.nn.functional.one_hot(torch.as_tensor(indices), 6).float()


def test_single_atom_surface_is_a_sphere(generator):
    centre = torch.randn(1, 3, generator=generator) * 5
    radius = 3.0
    points, normals, batch = atoms_to_surface(
        centre, one_hot([0]), resolution=0.5, distance=radius, generator=generator, backend="torch"
    )
    offsets = points - centre
    assert torch.allclose(offsets.norm(dim=1), torch.full((len(points),), radius), atol=1e-3)
    assert torch.allclose(normals, offsets / radius, atol=1e-3)
    assert bool((batch == 0).all())


def test_point_count_scales_with_area(generator):
    centre = torch.zeros(1, 3)
    counts = {
        r: len(atoms_to_surface(centre, one_hot([2]), distance=r, points_per_atom=3000, generator=generator, backend="torch")[0])
        for r in (3.0, 6.0)
    }
    # Area ratio 4 between radii 3 and 6; voxels cut a sphere in about area / resolution^2 cells.
    assert 3.0 < counts[6.0] / counts[3.0] < 5.0, counts
    assert 0.5 * 4 * math.pi * 9 < counts[3.0] < 2.0 * 4 * math.pi * 9, counts


def test_protein_surface_near_level_set_outside_atoms_normals_outward(protein, generator):
    atoms, types = protein
    points, normals, _ = atoms_to_surface(atoms, types, generator=generator)
    radii = atom_radii(types)
    # The dMaSIF convention: smoothing scale 0.5 for hydrogen, proportional to the van der Waals radius.
    sigma = 0.5 * radii / 1.10
    sdf = reference_sdf(points, atoms, sigma)
    assert abs(float(sdf.median()) - 1.05) < 0.02, float(sdf.median())
    assert float((sdf - 1.05).abs().quantile(0.95)) < 0.1
    assert (sdf - 1.05).abs().max() < 0.25
    # On the molecular surface: outside every van der Waals sphere, a fraction of an angstrom away
    # (the level set of the smooth distance, not a shell several angstroms out).
    gaps = (torch.cdist(points.double(), atoms.double()) - radii.double()).min(1).values
    assert float(gaps.min()) > 0, "a surface point lies inside an atom's van der Waals sphere"
    assert 0.2 < float(gaps.median()) < 1.0, float(gaps.median())
    assert float(gaps.quantile(0.95)) < 1.5, float(gaps.quantile(0.95))
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(points)), atol=1e-4)
    step = 0.3 * normals
    assert bool((reference_sdf(points + step, atoms, sigma) > sdf).all()), "normals must point outward"
    assert bool((reference_sdf(points - step, atoms, sigma) < sdf).all())
    # Covered everywhere: the most exposed atoms (highest SDF at their centre) all have a surface
    # point within a few angstroms.
    at_atoms = reference_sdf(atoms, atoms, sigma)
    exposed = at_atoms > at_atoms.quantile(0.8)
    nearest = torch.cdist(atoms[exposed], points).min(1).values
    assert float(nearest.max()) < 6.0


def test_rotating_atoms_rotates_surface(protein, generator):
    atoms, types = protein
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    points, normals, _ = atoms_to_surface(atoms, types, generator=generator)
    points_r, normals_r, _ = atoms_to_surface(atoms @ q.T, types, generator=generator)
    rotated, rotated_normals = points @ q.T, normals @ q.T
    d, idx = torch.cdist(points_r, rotated).min(1)
    assert float(d.mean()) < 0.5 and float(d.max()) < 2.0
    assert float((normals_r * rotated_normals[idx]).sum(1).mean()) > 0.9
    assert 0.9 < len(points_r) / len(points) < 1.1


def test_smooth_distance_backends_batches_and_gradients(protein, generator):
    atoms, types = protein
    radii = atom_radii(types)
    split = atoms.shape[0] // 3
    atom_batch = (torch.arange(atoms.shape[0]) >= split).long()
    x = atoms[torch.randint(0, atoms.shape[0], (300,), generator=generator)] + 3 * torch.randn(300, 3, generator=generator)
    batch = (torch.arange(300) >= 120).long()
    expected = torch.cat(
        [reference_sdf(x[:120], atoms[:split], radii[:split]), reference_sdf(x[120:], atoms[split:], radii[split:])]
    )
    for backend in ("torch", "keops"):
        got = smooth_distance(x, atoms, radii, batch, atom_batch, backend=backend)
        assert torch.allclose(got.double(), expected, atol=1e-4, rtol=1e-4), backend
    x64 = x[:40].double().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(reference_sdf(x64, atoms[:split], radii[:split]).sum(), x64)
    for backend in ("torch", "keops"):
        xb = x[:40].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(smooth_distance(xb, atoms[:split], radii[:split], backend=backend).sum(), xb)
        assert torch.allclose(grad.double(), grad_ref, atol=1e-4), backend
    small = (x[:5].double().requires_grad_(True), atoms[:20].double(), radii[:20].double())
    assert torch.autograd.gradcheck(lambda p: smooth_distance(p, *small[1:], backend="torch"), (small[0],))


def test_batched_surfaces_keep_proteins_apart(protein, generator):
    atoms, types = protein
    far = atoms + torch.tensor([200.0, 0.0, 0.0])
    both = torch.cat([atoms, far])
    batch = torch.cat([torch.zeros(len(atoms)), torch.ones(len(atoms))]).long()
    points, _, point_batch = atoms_to_surface(both, torch.cat([types, types]), batch, generator=generator)
    assert torch.equal(point_batch, point_batch.sort().values)
    first, second = points[point_batch == 0], points[point_batch == 1]
    assert float(first[:, 0].max()) < 100 < float(second[:, 0].min())
    assert 0.9 < len(second) / len(first) < 1.1


def test_bad_inputs_are_named(protein):
    atoms, types = protein
    with pytest.raises(ValueError, match="atom_types must have shape"):
        atoms_to_surface(atoms, types[:, :5])
    with pytest.raises(ValueError, match="atoms contains NaN"):
        atoms_to_surface(torch.full_like(atoms, float("nan")), types)
    with pytest.raises(ValueError, match="resolution must be a positive number"):
        atoms_to_surface(atoms, types, resolution=0)
    with pytest.raises(ValueError, match="batch must be sorted"):
        atoms_to_surface(atoms, types, torch.arange(len(atoms)).flip(0))


def masked_sdf(x, atoms, radii, cutoff):
    """The smooth distance over the atoms closer than the cutoff only, dense float64."""
    x, atoms, radii = x.double(), atoms.double(), radii.double()
    d = torch.cdist(x, atoms)
    far = d >= cutoff
    sigma = (torch.softmax((-d).masked_fill(far, -math.inf), dim=1) * radii).sum(1)
    return -sigma * torch.logsumexp((-d / radii).masked_fill(far, -math.inf), dim=1)


@pytest.fixture(scope="module")
def chain(shared_data):
    """A 2027-atom protein chain of the MaSIF-search benchmark."""
    atoms = read_pdb(shared_data / "masif_search_pairs" / "1XPJ_A.pdb.gz")
    return atoms.coords.double(), atoms.types


def test_truncated_smooth_distance_and_gap(chain, generator):
    atoms, types = chain
    radii = atom_radii(types).double()
    sigma = 0.5 * radii / 1.10
    near = atoms[torch.randint(0, len(atoms), (400,), generator=generator)]
    near = near + 2.5 * torch.randn(400, 3, generator=generator, dtype=torch.float64)
    direction = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    far = atoms.mean(0) + 80 * direction / direction.norm(dim=1, keepdim=True)  # no atom within the cutoff
    x = torch.cat([near, far])
    exact, t = reference_sdf(x, atoms, sigma), 8.0
    exact_gap = (torch.cdist(x, atoms) - radii).min(1).values
    for backend in ("torch", "keops"):
        dtype = torch.float64 if backend == "torch" else torch.float32
        xb, ab = x.to(dtype).requires_grad_(True), atoms.to(dtype)
        got = smooth_distance(xb, ab, sigma.to(dtype), backend=backend, truncate=t)
        (grad,) = torch.autograd.grad(got.sum(), xb)
        if backend == "torch":  # exactly the atoms closer than the cutoff, exact for the far points
            masked = masked_sdf(x, atoms, sigma, t)
            expected = torch.where(masked.isnan(), exact, masked)
            assert bool(masked[-4:].isnan().all()) and not torch.equal(masked[:-4], exact[:-4])
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
        # Near the surface (SDF < 2 A, about 3 A from the nearest atom), each dropped atom weighs below
        # e^-(8 - 3) ~ 7e-3 of the nearest one (smooth_distance's bound): the smooth distance moves by
        # hundredths of an angstrom at most (20 seeds: up to 0.011); the far points get the exact value.
        surface = exact < 2
        assert int(surface.sum()) > 50
        error = (got.detach().double() - exact).abs()
        assert float(error[surface].max()) < 2e-2 and float(error[-4:].max()) < 1e-4
        x64 = x.clone().requires_grad_(True)
        (grad_exact,) = torch.autograd.grad(reference_sdf(x64, atoms, sigma).sum(), x64)
        assert float((grad.double() - grad_exact)[surface].abs().max()) < 1e-2
        gap = van_der_waals_gap(x.to(dtype), ab, radii.to(dtype), backend=backend, truncate=t)
        torch.testing.assert_close(gap.double(), exact_gap, rtol=1e-5, atol=1e-4)


def test_truncated_smooth_distance_of_a_ragged_batch_equals_per_item_calls(chain, generator):
    atoms, types = chain
    sigma = 0.5 * atom_radii(types).double() / 1.10
    split = atoms.shape[0] // 3
    atom_batch = (torch.arange(atoms.shape[0]) >= split).long()
    x = atoms[torch.randint(0, atoms.shape[0], (300,), generator=generator)]
    x = x + 2 * torch.randn(300, 3, generator=generator, dtype=torch.float64)
    batch = (torch.arange(300) >= 120).long()
    got = smooth_distance(x, atoms, sigma, batch, atom_batch, backend="torch", truncate=6.0)
    first = smooth_distance(x[:120], atoms[:split], sigma[:split], backend="torch", truncate=6.0)
    second = smooth_distance(x[120:], atoms[split:], sigma[split:], backend="torch", truncate=6.0)
    torch.testing.assert_close(got, torch.cat([first, second]), rtol=1e-12, atol=1e-12)


def test_truncated_surface_lies_on_the_exact_level_set(protein, generator):
    atoms, types = protein
    sigma = 0.5 * atom_radii(types).double() / 1.10
    state = generator.get_state()
    exact_points, _, _ = atoms_to_surface(atoms, types, generator=generator)
    generator.set_state(state)
    points, normals, _ = atoms_to_surface(atoms, types, generator=generator, truncate=8.0)
    assert 0.98 < len(points) / len(exact_points) < 1.02
    # The level set moves along the normal by the change of SDF (|grad SDF| is about 1).
    shift = reference_sdf(points, atoms, sigma) - masked_sdf(points, atoms, sigma, 8.0)
    assert float(shift.abs().max()) < 0.02
    sdf = reference_sdf(points, atoms, sigma)
    assert abs(float(sdf.median()) - 1.05) < 0.02 and float((sdf - 1.05).abs().max()) < 0.25


@pytest.mark.parametrize("truncate", [0, -3.0, float("inf"), float("nan")])
def test_bad_truncate_is_named(protein, truncate):
    atoms, types = protein
    with pytest.raises(ValueError, match="truncate"):
        atoms_to_surface(atoms, types, truncate=truncate)
    with pytest.raises(ValueError, match="truncate"):
        smooth_distance(atoms[:3], atoms, atom_radii(types), truncate=truncate)
