"""fps checked against its definition: every sample is the farthest point from the previous ones."""

import math

import pytest
import torch

import gdl.ops


# fpsample works in float32: its choices are greedy up to float32 rounding of the distances
TOLERANCE = {"greedy": 1e-12, "fpsample": 1e-6}


def assert_greedy_farthest(x, chosen, rel=1e-12):
    """For t >= 1: min_u<t |x_chosen[t] - x_chosen[u]| == max_i min_u<t |x_i - x_chosen[u]|."""
    d = torch.cdist(x, x)
    for t in range(1, len(chosen)):
        to_previous = d[:, chosen[:t]].min(dim=1).values
        assert to_previous[chosen[t]] == pytest.approx(float(to_previous.max()), rel=rel)


@pytest.mark.parametrize("method", ["greedy", "fpsample"])
def test_greedy_property(generator, method):
    x = torch.randn(2000, 3, generator=generator, dtype=torch.float64)
    idx = gdl.ops.get("fps", n=100, method=method)(x)
    assert idx.dtype == torch.int64 and idx.shape == (100,)
    assert len(set(idx.tolist())) == 100
    if method == "greedy":
        assert int(idx[0]) == 0  # from the first point
    assert_greedy_farthest(x, idx, TOLERANCE[method])


def test_fpsample_on_a_real_cloud_is_the_greedy_sequence_from_its_first_sample(real_cloud):
    x, _ = real_cloud("bunny", 3000)
    idx = gdl.ops.get("fps", ratio=0.05, method="fpsample")(x)
    assert_greedy_farthest(x, idx, TOLERANCE["fpsample"])
    assert torch.equal(gdl.ops.get("fps", ratio=0.05, method="fpsample")(x), idx)  # deterministic


def test_auto_picks_fpsample_on_cpu(generator):
    x = torch.rand(500, 3, generator=generator)
    assert torch.equal(gdl.ops.get("fps", n=30)(x), gdl.ops.get("fps", n=30, method="fpsample")(x))


@pytest.mark.parametrize("method", ["greedy", "fpsample"])
def test_ragged_batch_equals_per_item_calls(generator, method):
    sizes = [13, 1, 0, 40]
    x = torch.rand(sum(sizes), 2, generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    op = gdl.ops.get("fps", ratio=0.3, method=method)
    idx = op(x, batch)
    starts = [0, 13, 14, 14]
    expected = [op(x[batch == b]) + starts[b] for b in range(4) if sizes[b] > 0]
    assert torch.equal(idx, torch.cat(expected))
    assert [int((batch[idx] == b).sum()) for b in range(4)] == [math.ceil(0.3 * s) for s in sizes]
    for b in (0, 3):
        assert_greedy_farthest(x[batch == b], idx[batch[idx] == b] - starts[b], TOLERANCE[method])


@pytest.mark.parametrize("method", ["greedy", "fpsample"])
def test_random_start_is_still_farthest_point_sampling(generator, method):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    x = torch.rand(100, 3, generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([50, 50]))
    starts = set()
    for _ in range(5):
        idx = gdl.ops.get("fps", n=8, random_start=True, method=method)(x, batch)
        assert torch.equal(batch[idx], torch.repeat_interleave(torch.arange(2), 8))
        assert_greedy_farthest(x[:50], idx[:8], TOLERANCE[method])
        assert_greedy_farthest(x[50:], idx[8:] - 50, TOLERANCE[method])
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
    with pytest.raises(ValueError, match="method must be one of"):
        gdl.ops.get("fps", n=1, method="random")
