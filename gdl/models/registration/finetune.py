"""Fine-tuning: robust-OT matching of the warped source, smoothed by confidence-weighted
Nadaraya-Watson regression, iterated.

With z = x + u the current warped source and (y_hat, c) its robust-OT matches and confidences,

    v_i = sum_j k(z_i, z_j) c_j (y_hat_j - z_j) / sum_j k(z_i, z_j) c_j,    u <- u + v,

a Gaussian-kernel average (registry ``nadaraya_watson``) that ignores unmatched points (c ~ 0) and
turns the raw OT map, which may tear, into a smooth displacement field. Each blur scale s_k (coarse
to fine) has its own reach (``reach_factor`` * s_k) and kernel width (``smoothing``), either one
number for every scale or one per scale.
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
        reach_factor=3.0,
        smoothing=0.2,
        iterations: int = 1,
        scaling: float | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        self.iterations = check_positive("iterations", iterations, integer=True)
        blurs = [float(check_positive("blurs", b)) for b in blurs]
        reach_factors = per_scale("reach_factor", reach_factor, len(blurs), allow_none=True)
        smoothings = per_scale("smoothing", smoothing, len(blurs))
        self.matchings = torch.nn.ModuleList(
            RobustMatching(b, r * b if r else None, scaling, backend) for b, r in zip(blurs, reach_factors)
        )
        self.smoothers = torch.nn.ModuleList(
            gdl.ops.get("nadaraya_watson", kernel="gaussian", sigma=s, backend=backend) for s in smoothings
        )

    def forward(self, source, target, batch_source=None, batch_target=None, initial=None):
        displacement = torch.zeros_like(source) if initial is None else initial
        for matching, smoother in zip(self.matchings, self.smoothers):
            for _ in range(self.iterations):
                warped = source + displacement
                matched, confidence = matching(warped, target, batch_source, batch_target)
                step = smoother(warped, warped, matched - warped, confidence, batch_source, batch_source)
                displacement = displacement + step
        return displacement


def per_scale(name: str, value, scales: int, allow_none: bool = False) -> list:
    """One positive number per blur scale, from one number or a sequence of ``scales`` numbers."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * scales
    if len(values) != scales:
        raise ValueError(f"{name} must be one number or {scales} numbers (one per blur), got {value!r}")
    return [v if v is None and allow_none else float(check_positive(name, v)) for v in values]
