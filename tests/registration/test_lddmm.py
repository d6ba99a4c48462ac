"""LDDMM geodesic shooting: analytic single-particle motion, energy conservation, gradients."""

import pytest
import torch

from gdl.models.registration.lddmm import LDDMM, LDDMMRegistration


def test_a_single_control_point_moves_in_a_straight_line():
    # k(q, q) = 1 and grad k = 0 at q: dq/dt = p, dp/dt = 0, so q(1) = q(0) + p(0).
    model = LDDMM(sigma=0.7, steps=7, backend="torch")
    q = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    p = torch.tensor([[0.5, -0.2, 0.1]], dtype=torch.float64)
    q1, p1, _ = model.shoot(q, p)
    torch.testing.assert_close(q1, q + p)
    torch.testing.assert_close(p1, p)


def test_hamiltonian_is_nearly_conserved(generator):
    model = LDDMM(sigma=0.5, steps=40, backend="torch")
    q = torch.randn(15, 3, generator=generator, dtype=torch.float64)
    p = 0.2 * torch.randn(15, 3, generator=generator, dtype=torch.float64)
    q1, p1, _ = model.shoot(q, p)
    h0, h1 = model.hamiltonian(q, p), model.hamiltonian(q1.detach(), p1.detach())
    assert abs(h1 - h0) < 0.02 * h0


def test_points_follow_the_control_points_they_sit_on(generator):
    model = LDDMM(sigma=0.5, steps=5, backend="torch")
    q = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    p = 0.3 * torch.randn(6, 3, generator=generator, dtype=torch.float64)
    q1, _, x1 = model.shoot(q, p, x=q.clone())
    torch.testing.assert_close(x1, q1)


def test_shooting_gradients_match_finite_differences(generator):
    model = LDDMM(sigma=0.8, steps=3, backend="torch")
    q = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    p = (0.3 * torch.randn(4, 3, generator=generator, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: model(x, q, p), (p,))


@pytest.mark.slow
def test_registration_recovers_a_translation(generator):
    source = torch.randn(100, 3, generator=generator, dtype=torch.float64) * 0.3
    shift = torch.tensor([0.2, 0.0, -0.1], dtype=torch.float64)
    step = LDDMMRegistration(sigma=1.0, steps=4, num_controls=8, blur=0.05, iterations=30, lr=0.05, backend="torch")
    with torch.no_grad():  # as in a registration pipeline at inference: the step still optimises
        displacement = step(source, source + shift)
    error = (displacement - shift).norm(dim=1).mean()
    assert error < 0.2 * shift.norm()


def test_coarse_to_fine_stages_compose_and_warp_other_points(generator):
    source = torch.randn(120, 3, generator=generator, dtype=torch.float64) * 0.3
    shift = torch.tensor([0.2, 0.0, -0.1], dtype=torch.float64)
    step = LDDMMRegistration(sigma=[1.0, 0.3], blur=[0.1, 0.05], steps=3, num_controls=8, iterations=10, lr=0.05,
                             num_points=80, backend="torch")
    fitted = step.fit(source, source + shift)
    assert len(fitted.shootings[0]) == 2  # one geodesic per stage
    torch.testing.assert_close(fitted.at(source), fitted.displacement)
    # the second stage starts where the first one ends: composing by hand gives the same points
    (first, q1, p1), (second, q2, p2) = fitted.shootings[0]
    with torch.no_grad():
        torch.testing.assert_close(second(first(source, q1, p1), q2, p2), source + fitted.displacement)
    with pytest.raises(ValueError, match="blur must be one number or one per sigma"):
        LDDMMRegistration(sigma=[1.0, 0.3], blur=[0.1, 0.05, 0.01])
