"""The voxel pairs of truncated reductions against brute-force pair lists (torch.cdist)."""

import math

import pytest
import torch

from gdl.ops.core.batching import batch_pair
from gdl.ops.core.locality import check_truncate, local_pairs


def brute_force_pairs(x, y, batch_x, batch_y, cutoff):
    close = torch.cdist(x, y) < cutoff
    if batch_x is not None:
        close &= batch_x[:, None] == batch_y[None, :]
    return set(map(tuple, close.nonzero().tolist()))


def plan(x, y, cutoff, batch_x=None, batch_y=None):
    pair = batch_pair(batch_x, batch_y, x.shape[0], y.shape[0])
    return local_pairs(x, y, pair, batch_x, batch_y, cutoff)


def listed_pairs(local, x, y):
    found = [torch.stack([i, j], 1) for i, j in local.pairs(x, y, budget=5000)]
    listed = torch.cat(found).tolist()
    assert len(listed) == len(set(map(tuple, listed))), "a pair is listed twice"
    return set(map(tuple, listed))


def block_pairs(local, transpose=False):
    """Pairs (i, j) of original indices that the KeOps ranges visit, in one direction."""
    ranges = local.keops_ranges()
    rows, slices, redranges = ranges[3:] if transpose else ranges[:3]
    perm_rows, perm_cols = (local.perm_y, local.perm_x) if transpose else (local.perm_x, local.perm_y)
    visited = set()
    begin = 0
    for (r0, r1), end in zip(rows.tolist(), slices.tolist()):
        cols = [c for s, e in redranges[begin:end].tolist() for c in range(s, e)]
        begin = end
        for r in range(r0, r1):
            for c in cols:
                i, j = int(perm_rows[r]), int(perm_cols[c])
                visited.add((j, i) if transpose else (i, j))
    return visited


def check_plan(x, y, cutoff, batch_x=None, batch_y=None):
    local = plan(x, y, cutoff, batch_x, batch_y)
    assert local is not None
    expected = brute_force_pairs(x, y, batch_x, batch_y, cutoff)
    assert listed_pairs(local, x, y) == expected
    same_item = None if batch_x is None else batch_x[:, None] == batch_y[None, :]
    for transpose in (False, True):
        visited = block_pairs(local, transpose)
        assert expected <= visited
        if same_item is not None:
            assert all(same_item[i, j] for i, j in visited), "a block mixes batch items"
    return local


@pytest.mark.parametrize("name", ["bunny", "kitti"])
def test_real_cloud_pairs_are_the_brute_force_pairs(real_cloud, name):
    x, diagonal = real_cloud(name, 1200)
    check_plan(x, x[:700], 0.06 * diagonal)


def test_ragged_batches_never_mix(generator):
    sizes_x, sizes_y = torch.tensor([300, 0, 250, 400]), torch.tensor([200, 100, 350, 1])
    x = torch.rand(int(sizes_x.sum()), 3, generator=generator, dtype=torch.float64)
    y = torch.rand(int(sizes_y.sum()), 3, generator=generator, dtype=torch.float64)
    batch_x = torch.repeat_interleave(torch.arange(4), sizes_x)
    batch_y = torch.repeat_interleave(torch.arange(4), sizes_y)
    check_plan(x, y, 0.15, batch_x, batch_y)


@pytest.mark.parametrize("kind", ["two_far_clusters", "anisotropic", "duplicates", "plane_2d"])
def test_adversarial_clouds(kind, generator):
    n = 900
    x = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    if kind == "two_far_clusters":
        x[: n // 2] += 1000.0
    elif kind == "anisotropic":
        x = x * torch.tensor([100.0, 1.0, 0.01], dtype=torch.float64)
    elif kind == "duplicates":
        x = x[torch.randint(0, 50, (n,), generator=generator)]
    else:
        x = x[:, :2].contiguous()
    y = x[torch.randperm(n, generator=generator)[: n // 2]] + 0.01
    check_plan(x, y, 0.2 if kind != "anisotropic" else 3.0)


def test_small_cloud_or_one_voxel_falls_back_to_the_plain_reduction(generator):
    x = torch.rand(200, 3, generator=generator, dtype=torch.float64)
    assert plan(x, x, 2.0) is None  # the cloud fits in the cutoff
    clumps = torch.cat([x * 1e-3, x[:3] * 1e-3 + 1.0])  # all but 3 points in one voxel
    assert plan(clumps, clumps, 0.1) is None
    assert plan(x, x, 0.1) is not None


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "4"])
def test_truncate_errors_name_the_argument(bad):
    with pytest.raises(ValueError, match="truncate"):
        check_truncate(bad)
    assert check_truncate(None) is None and check_truncate(3) == 3.0
