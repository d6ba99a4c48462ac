"""Input validation helpers: each bad input is named in its error."""

import pytest
import torch

from gdl.ops.core import checks
from gdl.ops.core.batching import batch_pair, require_nonempty_targets


def test_check_points():
    x = torch.zeros(4, 3)
    assert checks.check_points("x", x, dim=3) is x
    with pytest.raises(TypeError, match="pts must be a torch.Tensor"):
        checks.check_points("pts", [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"pts must have shape \(N, D\)"):
        checks.check_points("pts", torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="pts must be float32 or float64, got torch.float16"):
        checks.check_points("pts", x.half())
    with pytest.raises(ValueError, match="pts is empty"):
        checks.check_points("pts", torch.zeros(0, 3))
    with pytest.raises(ValueError, match="pts has no coordinates"):
        checks.check_points("pts", torch.zeros(3, 0))
    with pytest.raises(ValueError, match="pts must have 2 columns"):
        checks.check_points("pts", x, dim=2)
    with pytest.raises(ValueError, match=r"pts contains NaN or Inf values \(2 rows affected\)"):
        checks.check_points("pts", torch.tensor([[0.0, float("nan")], [float("inf"), 0], [0, 0]]))


def test_check_batch():
    assert checks.check_batch("b", None, 3, torch.device("cpu")) is None
    with pytest.raises(TypeError, match="b must be int64"):
        checks.check_batch("b", torch.zeros(3, dtype=torch.int32), 3, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        checks.check_batch("b", torch.zeros(4, dtype=torch.int64), 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="b must hold non-negative"):
        checks.check_batch("b", torch.tensor([-1, 0, 0]), 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="b must be sorted"):
        checks.check_batch("b", torch.tensor([0, 2, 1]), 3, torch.device("cpu"))
    with pytest.raises(TypeError, match="b must be a torch.Tensor"):
        checks.check_batch("b", [0, 0, 0], 3, torch.device("cpu"))


def test_values_pairs_and_scalars():
    x = torch.zeros(3, 2)
    assert checks.check_values("v", torch.ones(3), 3, x).shape == (3, 1)
    with pytest.raises(ValueError, match=r"v must have shape \(3,\) or \(3, E\)"):
        checks.check_values("v", torch.ones(3, 1, 1), 3, x)
    with pytest.raises(ValueError, match="x and y must have the same dimension D"):
        checks.check_pair(x, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="y has dtype torch.float64 but x has dtype torch.float32"):
        checks.check_pair(x, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be a positive integer, got True"):
        checks.check_positive("k", True, integer=True)
    with pytest.raises(ValueError, match="mode must be one of"):
        checks.check_choice("mode", "c", ("a", "b"))


def test_batch_pair_layout_and_empty_targets():
    pair = batch_pair(torch.tensor([0, 0, 2]), torch.tensor([1, 2, 2]), 3, 3)
    assert pair.num_items == 3
    assert pair.counts_x.tolist() == [2, 0, 1] and pair.counts_y.tolist() == [0, 1, 2]
    ranges_x, _, ranges_y, _, _, _ = pair.keops_ranges(torch.device("cpu"))
    assert ranges_x.tolist() == [[0, 2], [2, 2], [2, 3]] and ranges_y.tolist() == [[0, 0], [0, 1], [1, 3]]
    with pytest.raises(ValueError, match=r"batch item\(s\) \[0\] have query points but no point in y"):
        require_nonempty_targets(pair)
