"""Small registration steps written for the tests."""

import torch

from gdl.models.registration.step import RegistrationStep


class Scaled:
    """The field u(p) = value + factor * initial(p)."""

    def __init__(self, value: float, factor: float, points, initial=None):
        self.value, self.factor = value, factor
        self.displacement = self.at(points, initial=initial)

    def at(self, points, batch=None, initial=None):
        base = torch.full_like(points, self.value)
        return base if initial is None else base + self.factor * initial


class Shift(RegistrationStep):
    """Moves every point by ``value`` along each axis."""

    def __init__(self, value: float = 0.5):
        super().__init__()
        self.value = value

    def fit(self, source, target, batch_source=None, batch_target=None):
        return Scaled(self.value, 0.0, source)


class Double(RegistrationStep):
    """Takes the previous displacement and doubles it; remembers what it saw."""

    takes_initial = True

    def fit(self, source, target, batch_source=None, batch_target=None, initial=None):
        self.seen = source, initial
        return Scaled(0.0, 2.0, source, initial)

