"""``RegistrationPipeline``: any subset of pre-alignment, deep flow and fine-tuning, in that order.

Each step sees the source as warped by the previous ones and adds its displacement:

    u_0 = 0,   u <- u + step(x + u, y),   pipeline(x, y) = u     (x: (N, 3), y: (M, 3)).

Each step is a :class:`RegistrationStep`. A step with ``takes_initial = True`` (``Finetune``) sees
the original source instead, u <- step(x, y, initial=u), so that the motions it fits (a rigid
background) are motions of x. A step with ``takes_masses = True`` receives the transport masses
``weights_source`` / ``weights_target`` (e.g. vessel masses; uniform when None).

``register`` returns a :class:`RegistrationResult`: the displacement at the source points and
``warp(points)``, which moves any other points (landmarks, a denser copy of the source) through the
same steps: each step's ``fit`` returns a field that is evaluated at the queries as it was at the
fitted points. Ragged batches: ``batch_source`` and ``batch_target`` as in the registry operators.
"""

from __future__ import annotations

import time

import torch

from gdl.models.registration.progress import report
from gdl.models.registration.step import RegistrationStep
from gdl.ops.core.batching import batch_pair
from gdl.ops.core.checks import check_batch, check_pair, check_points

STEPS = ("prealign", "flow", "finetune")


class RegistrationResult:
    """``displacement`` (N, 3) at the source points; ``warp(points)`` / ``displacement_at(points)`` anywhere."""

    def __init__(self, displacement: torch.Tensor, fits: list):
        self.displacement, self.fits = displacement, fits

    @property
    def steps(self) -> list[str]:
        return [name for name, _, _ in self.fits]

    def displacement_at(self, points: torch.Tensor, batch: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
        """The displacement of the composed steps (the first ``steps`` of them; all by default) at
        (Q, 3) ``points`` (``batch``: their items)."""
        check_points("points", points, dim=3)
        check_batch("batch", batch, points.shape[0], points.device)
        displacement = torch.zeros_like(points)
        for _, step, fitted in self.fits[:steps]:
            if step.takes_initial:
                displacement = fitted.at(points, batch, initial=displacement)
            else:
                displacement = displacement + fitted.at(points + displacement, batch)
        return displacement

    def warp(self, points: torch.Tensor, batch: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
        """``points`` moved by the registration (its first ``steps`` steps; all by default)."""
        return points + self.displacement_at(points, batch, steps)


class RegistrationPipeline(torch.nn.Module):
    """Compose ``prealign``, ``flow`` and ``finetune`` steps (each optional, None skips it)."""

    def __init__(self, prealign: RegistrationStep | None = None, flow: RegistrationStep | None = None,
                 finetune: RegistrationStep | None = None):
        super().__init__()
        self.prealign, self.flow, self.finetune = prealign, flow, finetune
        for name, step in zip(STEPS, (prealign, flow, finetune)):
            if step is not None and not isinstance(step, RegistrationStep):
                raise TypeError(f"{name} must be a RegistrationStep (gdl.models.registration.step), got {type(step).__name__}")
        if not self.named_steps:
            raise ValueError(f"RegistrationPipeline needs at least one of {', '.join(STEPS)}")

    @property
    def named_steps(self) -> list[tuple[str, RegistrationStep]]:
        """(name, step) of the steps present, in the order they run."""
        steps = (self.prealign, self.flow, self.finetune)
        return [(name, step) for name, step in zip(STEPS, steps) if step is not None]

    @property
    def steps(self) -> list[str]:
        return [name for name, _ in self.named_steps]

    def forward(self, source, target, batch_source=None, batch_target=None, timings: dict | None = None,
                weights_source=None, weights_target=None):
        """The (N, 3) displacement of the source; ``timings`` (a dict) receives seconds per step."""
        return self.register(source, target, batch_source, batch_target, timings, weights_source, weights_target).displacement

    def register(self, source, target, batch_source=None, batch_target=None, timings: dict | None = None,
                 weights_source=None, weights_target=None) -> RegistrationResult:
        check_points("source", source, dim=3)
        check_points("target", target, dim=3)
        check_pair(source, target, "source", "target")
        check_batch("batch_source", batch_source, source.shape[0], source.device)
        check_batch("batch_target", batch_target, target.shape[0], target.device)
        batch_pair(batch_source, batch_target, source.shape[0], target.shape[0], "batch_source", "batch_target")
        displacement, fits = torch.zeros_like(source), []
        named_steps = self.named_steps
        for number, (name, step) in enumerate(named_steps, start=1):
            start = _clock(source.device)
            report(name, f"step {number}/{len(named_steps)}, {source.shape[0]} -> {target.shape[0]} points")
            masses = dict(weights_source=weights_source, weights_target=weights_target) if step.takes_masses else {}
            if step.takes_initial:
                fitted = step.fit(source, target, batch_source, batch_target, initial=displacement, **masses)
                displacement = fitted.displacement
            else:
                fitted = step.fit(source + displacement, target, batch_source, batch_target, **masses)
                displacement = displacement + fitted.displacement
            fits.append((name, step, fitted))
            seconds = _clock(source.device) - start
            if timings is not None:
                timings[name] = seconds
            report(name, f"done in {seconds:.1f} s")
        return RegistrationResult(displacement, fits)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
