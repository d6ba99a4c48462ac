"""PointConv: a continuous convolution over the k nearest neighbours (PointPWC-Net style)."""

from __future__ import annotations

import torch

from gdl.ops.core.base import Operator
from gdl.ops.core.checks import check_batch, check_pair, check_points, check_positive, check_values
from gdl.ops.core.registry import get, register


@register("point_conv")
class PointConv(Operator):
    r"""out_i = W_out vec( sum_{j in kNN(i)} f_j (x) m(x_j - x_i) ) + c_out,   shape (Nq, C_out).

    For each query point x_i, j runs over its k nearest source points (of the same batch item);
    m is the weight MLP 3 -> H -> H (Linear, ReLU, Linear), f_j in R^{C_in} the source features,
    f_j (x) m the C_in x H outer product, vec flattens it and W_out maps C_in * H -> C_out
    (Wu et al., PointConv, 2019; Wu et al., PointPWC-Net, 2020). The backend picks the neighbour
    search (``knn``); the sum over k neighbours is a gather. Differentiable in the points, the
    features and the weights (the neighbour sets are piecewise constant).
    """

    def __init__(
        self, in_channels: int, out_channels: int, k: int = 16, hidden_units: int = 16, backend: str = "auto"
    ):
        super().__init__(backend)
        self.in_channels = check_positive("in_channels", in_channels, integer=True)
        self.out_channels = check_positive("out_channels", out_channels, integer=True)
        self.k = check_positive("k", k, integer=True)
        self.hidden_units = check_positive("hidden_units", hidden_units, integer=True)
        self.knn = get("knn", k=k, backend=backend)
        self.weight_net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden_units), torch.nn.ReLU(), torch.nn.Linear(hidden_units, hidden_units)
        )
        self.output = torch.nn.Linear(in_channels * hidden_units, out_channels)

    def reset_parameters(self):
        for layer in (self.weight_net[0], self.weight_net[2], self.output):
            layer.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, k={self.k}, "
            f"hidden_units={self.hidden_units}, " + super().extra_repr()
        )

    def forward(self, x_query, x_src, features_src, batch_query=None, batch_src=None):
        check_points("x_query", x_query, dim=3)
        check_points("x_src", x_src, dim=3)
        check_pair(x_query, x_src, "x_query", "x_src")
        features = check_values("features_src", features_src, x_src.shape[0], x_src)
        if features.shape[1] != self.in_channels:
            raise ValueError(
                f"features_src must have {self.in_channels} channels (in_channels), got {features.shape[1]}"
            )
        check_batch("batch_query", batch_query, x_query.shape[0], x_query.device)
        check_batch("batch_src", batch_src, x_src.shape[0], x_src.device)
        if (batch_query is None) != (batch_src is None):
            raise ValueError("give both batch_query and batch_src, or neither")
        _, idx = self.knn(x_query, x_src, batch_query, batch_src)
        relative = x_src[idx] - x_query[:, None, :]  # (Nq, k, 3)
        weights = self.weight_net(relative)  # (Nq, k, H)
        aggregated = features[idx].transpose(1, 2) @ weights  # (Nq, C_in, H)
        return self.output(aggregated.flatten(1))
