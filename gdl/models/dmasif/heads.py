"""Output heads of dMaSIF on per-point descriptors."""

from __future__ import annotations

import torch
from torch import nn


class SiteHead(nn.Module):
    """A logit per surface point: > 0 predicts an interaction site (interface)."""

    def __init__(self, channels: int = 16, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        return self.mlp(descriptors)[:, 0]


class SearchHead(nn.Module):
    """Two embeddings per point, ``binder`` and ``target``; a point i of one protein and a point j of
    its partner score s_ij = <binder_i, target_j>, high when i and j face each other in the complex."""

    def __init__(self, channels: int = 16, embedding: int = 16):
        super().__init__()
        self.binder = nn.Sequential(nn.Linear(channels, channels), nn.LeakyReLU(0.2), nn.Linear(channels, embedding))
        self.target = nn.Sequential(nn.Linear(channels, channels), nn.LeakyReLU(0.2), nn.Linear(channels, embedding))

    def forward(self, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.binder(descriptors), self.target(descriptors)
