"""``RegistrationStep``: the interface of the steps that ``RegistrationPipeline`` composes.

A step fits a displacement field from a source x (N, 3) to a target y (M, 3):

    field = step.fit(x, y, batch_source, batch_target, **inputs)
    field.displacement          # (N, 3), the field at x
    field.at(points, batch)     # the same field at any other points

Two class attributes say what the pipeline passes in ``inputs`` and how it composes the field:

- ``takes_initial``: the step sees the original source x and the previous steps' displacement u
  (``initial=u``) and its field is the whole displacement; otherwise it sees x + u and its field is
  added to u.
- ``takes_masses``: the step receives the transport masses ``weights_source`` and ``weights_target``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

import torch


class Field(Protocol):
    """A fitted displacement field: ``displacement`` at the fitted source points, ``at`` anywhere."""

    displacement: torch.Tensor

    def at(self, points: torch.Tensor, batch: torch.Tensor | None = None, initial: torch.Tensor | None = None) -> torch.Tensor:
        """The (Q, 3) displacement at (Q, 3) ``points`` (``initial``: the previous steps' displacement
        there, for a step that takes it)."""


class RegistrationStep(torch.nn.Module, ABC):
    """A registration step: ``fit`` returns a :class:`Field`; calling the step returns its displacement."""

    takes_initial: ClassVar[bool] = False
    takes_masses: ClassVar[bool] = False

    @abstractmethod
    def fit(self, source: torch.Tensor, target: torch.Tensor, batch_source=None, batch_target=None, **inputs) -> Field:
        """The field that moves ``source`` onto ``target``."""

    def forward(self, source: torch.Tensor, target: torch.Tensor, batch_source=None, batch_target=None, **inputs) -> torch.Tensor:
        """``fit(...).displacement``: the (N, 3) displacement of the source points."""
        return self.fit(source, target, batch_source, batch_target, **inputs).displacement
