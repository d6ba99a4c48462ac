"""Fine-tuning: robust-OT matching of the warped source, smoothed by confidence-weighted
Nadaraya-Watson regression, iterated.

With z = x + u the current warped source and (y_hat, c) its robust-OT matches and confidences,

    v_i = sum_j k(z_i, z_j) c_j (y_hat_j - z_j) / sum_j k(z_i, z_j) c_j,    u <- u + v,

a Gaussian-kernel average (registry ``nadaraya_watson``) that ignores unmatched points (c ~ 0) and
turns the raw OT map, which may tear, into a smooth displacement field.
"""

from __future__ import annotations

import torch

import gdl.ops
from gdl.models.registration.matching import RobustMatching
from gdl.ops.checks import check_positive


class Finetune(torch.nn.Module):
    """``displacement = finetune(source, target, batch_source, batch_target, initial=None)``."""

    def __init__(
        self,
        blurs=(0.1, 0.05),
        reach_factor: float = 3.0,
        smoothing: float = 0.2,
        iterations: int = 1,
        scaling: float | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        self.iterations = check_positive("iterations", iterations, integer=True)
        blurs = [float(check_positive("blurs", b)) for b in blurs]
        self.matchings = torch.nn.ModuleList(
            RobustMatching(b, reach_factor * b if reach_factor else None, scaling, backend) for b in blurs
        )
        self.smoother = gdl.ops.get(
            "nadaraya_watson", kernel="gaussian", sigma=float(check_positive("smoothing", smoothing)), backend=backend
        )

    def forward(self, source, target, batch_source=None, batch_target=None, initial=None):
        displacement = torch.zeros_like(source) if initial is None else initial
        for matching in self.matchings:
            for _ in range(self.iterations):
                warped = source + displacement
                matched, confidence = matching(warped, target, batch_source, batch_target)
                step = self.smoother(warped, warped, matched - warped, confidence, batch_source, batch_source)
                displacement = displacement + step
        return displacement
