"""fps checked against its definition: every sample is the farthest point from the previous ones."""

import math

import pytest
import torch

import gdl.ops


def assert_greedy_farthest(x, chosen):
    """For t >= 1: min_u<t |x_chosen[t] - x_chosen[u]| == max_i min_u<t |x_i - x_chosen[u]|."""
    d = torch.cdist(x, x)
    for t in range(1, len(chosen)):
        to_previous = d[:, chosen[:t]].min(dim=1).values
        assert to_previous[chosen[t]] == pytest.approx(float(to_previous.max()), rel=1e-12)


def test_greedy_property_and_first_point(generator):
    x = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    idx = gdl.ops.get("fps", n=20)(x)
    assert idx.dtype == torch.int64 and idx.shape == (20,) and int(idx[0]) == 0
    assert len(set(idx.tolist())) == 20
    assert_greedy_farthest(x, idx)


def test_ragged_batch_equals_per_item_calls(generator):
    sizes = [13, 1, 0, 40]
    x = torch.rand(sum(sizes), 2, generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    op = gdl.ops.get("fps", ratio=0.3)
    idx = op(x, batch)
    starts = [0, 13, 14, 14]
    expected = [op(x[batch == b]) + starts[b] for b in range(4) if sizes[b] > 0]
    assert torch.equal(idx, torch.cat(expected))
    assert [int((batch[idx] == b).sum()) for b in range(4)] == [math.ceil(0.3 * s) for s in sizes]
    for b in (0, 3):
        assert_greedy_farthest(x[batch == b], idx[batch[idx] == b] - starts[b])


def test_random_start_is_still_farthest_point_sampling(generator):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    x = torch.rand(100, 3, generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([50, 50]))
    starts = set()
    for _ in range(5):
        idx = gdl.ops.get("fps", n=8, random_start=True)(x, batch)
        assert torch.equal(batch[idx], torch.repeat_interleave(torch.arange(2), 8))
        assert_greedy_farthest(x[:50], idx[:8])
        assert_greedy_farthest(x[50:], idx[8:] - 50)
        starts.add(int(idx[0]))
    assert len(starts) > 1


def test_bad_inputs(generator):
    x = torch.rand(10, 3, generator=generator)
    with pytest.raises(ValueError, match="exactly one of ratio and n"):
        gdl.ops.get("fps")
    with pytest.raises(ValueError, match="exactly one of ratio and n"):
        gdl.ops.get("fps", ratio=0.5, n=3)
    with pytest.raises(ValueError, match="ratio must be in"):
        gdl.ops.get("fps", ratio=1.5)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        gdl.ops.get("fps", n=0)
    with pytest.raises(ValueError, match="n=6 is larger than batch item 1"):
        gdl.ops.get("fps", n=6)(x, torch.tensor([0] * 6 + [1] * 4))
    with pytest.raises(ValueError, match="x is empty"):
        gdl.ops.get("fps", n=1)(x[:0])
    with pytest.raises(ValueError, match="batch must have shape"):
        gdl.ops.get("fps", n=1)(x, torch.zeros(9, dtype=torch.int64))
