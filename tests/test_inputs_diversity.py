"""Bad and extreme input to Coreset and BADGE: unbounded partitions, partitions that scan the
whole pool, values near float64's limits, integer, bfloat16 and featureless embeddings, budgets
beyond the pool or int64, arguments named wrongly in errors, device and meta tensors. Two tests
guard what the partitioned rule must not change (the exact picks against tests/reference.py,
and a NaN named by its pool row)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale import _core
from hypotheses import SEEDS, assert_same_indices, examples


class FakeDeviceArray:
    """What CuPy, Numba and friends look like to alscale: a __cuda_array_interface__."""

    def __init__(self, shape):
        self.shape = shape

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": "<f4", "data": (4096, False), "version": 3, "strides": None}


def pool(seed: int, n: int, d: int, c: int = 5):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    if n > 4:
        z[rng.integers(0, n, n // 4)] = z[0]  # duplicates: exact distance ties
    return rng.standard_normal((n, c)), z


def reference_partitioned(n, available, budget, parts, seed, one_part):
    """The partitioned rule spelled out with tests/reference.py: the seeded split of the
    available rows, then the plain rule on each part (every other row excluded)."""
    rng = np.random.default_rng(seed)
    budget = min(budget, len(available))
    if parts == 1:  # no split (and no permutation drawn)
        outside = np.ones(n, dtype=bool)
        outside[available] = False
        return one_part(outside, budget, rng)
    out = []
    for rows, q in ref.partitions(available, budget, parts, rng):
        outside = np.ones(n, dtype=bool)
        outside[rows] = False
        out.append(one_part(outside, q, rng))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- partitions


@given(seed=SEEDS, n=st.integers(1, 120), d=st.integers(1, 9), parts=st.integers(1, 140),
       budget=st.integers(0, 130), labeled_fraction=st.sampled_from([0.0, 0.1, 0.5]))
@examples(0.5)
def test_partitioned_matches_reference(seed, n, d, parts, budget, labeled_fraction):
    """Exact picks of both partitioned versions, P from 1 to more than the rows (the cap)."""
    logits, z = pool(seed, n, d)
    rng = np.random.default_rng(seed + 1)
    labeled = rng.random(n) < labeled_fraction
    available = np.flatnonzero(~labeled)

    got = alscale.select_coreset(z, budget, labeled=labeled, partitions=parts, seed=seed)
    expected = reference_partitioned(n, available, budget, parts, seed,
                                     lambda outside, q, _: ref.select_coreset(z, labeled, q, outside))
    assert_same_indices(got, expected, f"coreset P={parts}")

    got = alscale.select_badge(logits, z, budget, exclude=labeled, partitions=parts, seed=seed)
    expected = reference_partitioned(n, available, budget, parts, seed,
                                     lambda outside, q, r: ref.select_badge(logits, z, q, r.random(q), outside))
    assert_same_indices(got, expected, f"badge P={parts}")


@pytest.mark.parametrize("name", ["coreset", "badge"])
def test_partitions_beyond_the_rows_are_capped(name):
    """10^9 partitions of 50 rows was a bare MemoryError (10^7 ran for minutes): capped at the
    available rows, which changes no pick."""
    logits, z = pool(3, 50, 4)
    labeled = np.zeros(50, dtype=bool)
    labeled[:8] = True

    def run(parts):
        if name == "coreset":
            return alscale.select_coreset(z, 17, labeled=labeled, partitions=parts, seed=5)
        return alscale.select_badge(logits, z, 17, exclude=labeled, partitions=parts, seed=5)

    capped = run(42)
    for parts in (43, 10**7, 10**9, 2**63 - 1):
        np.testing.assert_array_equal(run(parts), capped)
    with pytest.raises(ValueError, match="partitions must be at most"):
        run(2**63)
    assert run(10**9).size == 17


@pytest.mark.parametrize("name", ["coreset", "badge"])
def test_each_part_costs_its_own_size(name, monkeypatch):
    """Every part ran the kernel over the whole pool through a mask (P times the unpartitioned
    cost for BADGE): the kernel now gets the part's rows (and, for Coreset, the labeled centers)."""
    n, parts = 1000, 8
    logits, z = pool(4, n, 6)
    labeled = np.zeros(n, dtype=bool)
    labeled[:40] = True
    calls = []
    kernel = getattr(_core, f"select_{name}")

    def spy(*args, **kwargs):
        calls.append(args[2 if name == "badge" else 0].shape[0])
        return kernel(*args, **kwargs)

    monkeypatch.setattr(_core, f"select_{name}", spy)
    if name == "coreset":
        alscale.select_coreset(z, 64, labeled=labeled, partitions=parts, seed=1)
        sizes = [120 + 40] * parts  # 960 rows in 8 parts, plus the 40 centers
    else:
        alscale.select_badge(logits, z, 64, exclude=labeled, partitions=parts, seed=1)
        sizes = [120] * parts
    assert calls == sizes


def test_partitioned_badge_names_the_pool_row_of_a_nan():
    logits, z = pool(6, 300, 4)
    logits[217, 2] = np.nan
    with pytest.raises(ValueError, match="logits contain NaN or inf at row 217$"):
        alscale.select_badge(logits, z, 30, partitions=4, seed=0)


# --------------------------------------------------------------------------- value range


@pytest.mark.parametrize("power", [560, -600, 1000])
@pytest.mark.parametrize("parts", [1, 3])
def test_float64_near_the_limits_pick_as_scaled(power, parts):
    """float64 embeddings ≳ 1e154 overflowed the squared distances (inf ties: wrong rows), tiny
    ones underflowed them (zero ties): scaled by an exact power of two, the picks are those of
    the unscaled pool."""
    logits, z = pool(8, 400, 7)
    labeled = np.zeros(400, dtype=bool)
    labeled[::37] = True
    big = np.ldexp(z, power)
    assert np.isfinite(big).all() and (big != 0).any()
    expected = alscale.select_coreset(z, 25, labeled=labeled, partitions=parts, seed=2)
    assert_same_indices(expected, ref.select_coreset(z, labeled, 25) if parts == 1 else expected)
    assert_same_indices(alscale.select_coreset(big, 25, labeled=labeled, partitions=parts, seed=2), expected)
    expected = alscale.select_badge(logits, z, 25, exclude=labeled, partitions=parts, seed=2)
    assert_same_indices(alscale.select_badge(logits, big, 25, exclude=labeled, partitions=parts, seed=2), expected)


def test_float64_limits_by_hand():
    # squared distances 9e598, 1e600, 1e600 (all inf in float64 before: row 1 won the tie)
    x = np.array([[0.0], [3e299], [1e300], [-1e300]])
    assert alscale.select_coreset(x, 3, labeled=[0]).tolist() == [2, 3, 1]
    # squared distances 2.5e-601, 1e-600, 4e-600 (all 0 in float64 before)
    y = np.array([[0.0], [5e-301], [1e-300], [-2e-300]])
    assert alscale.select_coreset(y, 3, labeled=[0]).tolist() == [3, 2, 1]


def test_integer_embeddings_are_exact():
    """int64 embeddings were cast to float32: 2^24 + 1 became 2^24, a tie the smaller row won."""
    for dtype in (np.int32, np.int64, np.uint32, np.uint64):
        x = np.array([[0], [2**24], [2**24 + 1], [5]], dtype=dtype)
        assert alscale.select_coreset(x, 1, labeled=[0]).tolist() == [2], dtype
        assert alscale.select_coreset(torch.from_numpy(x.astype(np.int64)), 1, labeled=[0]).tolist() == [2]
    logits = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    x = np.array([[0], [2**24], [2**24 + 1], [5]], dtype=np.int64)
    assert alscale.select_badge(logits, x, 1).tolist() == [2]  # the largest gradient norm
    small = np.array([[0], [100], [-3], [7]], dtype=np.int8)
    assert alscale.select_coreset(small, 2, labeled=[0]).tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"integers beyond 2\^53"):
        alscale.select_coreset(np.array([[0], [2**53 + 1]], dtype=np.int64), 1)
    with pytest.raises(ValueError, match=r"integers beyond 2\^53"):
        alscale.select_badge(logits[:2], np.array([[0], [2**60]], dtype=np.uint64), 1)


def test_featureless_embeddings_are_refused():
    with pytest.raises(ValueError, match=r"embeddings have no features: shape \(6, 0\)"):
        alscale.select_coreset(np.zeros((6, 0)), 2)
    with pytest.raises(ValueError, match=r"embeddings have no features: shape \(6, 0\)"):
        alscale.select_badge(np.zeros((6, 3)), np.zeros((6, 0)), 2)


# --------------------------------------------------------------------------- messages


def test_labeled_out_of_range_names_labeled():
    z = np.zeros((50, 2))
    with pytest.raises(ValueError, match="labeled index 50 is out of range for a pool of 50 rows"):
        alscale.select_coreset(z, 3, labeled=[50])
    with pytest.raises(ValueError, match="labeled mask has 49 entries"):
        alscale.select_coreset(z, 3, labeled=np.zeros(49, dtype=bool))
    with pytest.raises(TypeError, match="labeled must hold integer row indices or booleans"):
        alscale.select_coreset(z, 3, labeled=[0.5])
    with pytest.raises(ValueError, match="exclude index 50 is out of range"):
        alscale.select_coreset(z, 3, labeled=[1], exclude=[50])


@pytest.mark.parametrize("parts", [1, 2])
def test_seed_is_validated(parts):
    logits, z = pool(1, 20, 3)
    for call in (lambda s: alscale.select_coreset(z, 3, labeled=[0], partitions=parts, seed=s),
                 lambda s: alscale.select_badge(logits, z, 3, partitions=parts, seed=s)):
        with pytest.raises(ValueError, match="seed must be non-negative"):
            call(-1)
        with pytest.raises(TypeError, match="seed must be an integer"):
            call(1.5)
        with pytest.raises(TypeError, match="seed must be an integer"):
            call("7")
        np.testing.assert_array_equal(call(7), call(np.random.default_rng(7)))
        call(2**64 - 1)
        call(None)


def test_device_arrays_say_there_is_no_gpu_kernel():
    logits, z = pool(1, 10, 3, c=4)
    msg = "has no GPU kernel yet; pass"
    with pytest.raises(ValueError, match=f"select_coreset {msg} embeddings in host memory"):
        alscale.select_coreset(FakeDeviceArray((10, 3)), 2)
    with pytest.raises(ValueError, match=f"select_badge {msg} logits in host memory"):
        alscale.select_badge(FakeDeviceArray((10, 4)), z, 2)
    with pytest.raises(ValueError, match=f"select_badge {msg} embeddings in host memory"):
        alscale.select_badge(logits, FakeDeviceArray((10, 3)), 2)


def test_meta_tensors_say_they_hold_no_data():
    logits, z = pool(1, 10, 3, c=4)
    meta = torch.empty((10, 3), device="meta")
    with pytest.raises(ValueError, match="embeddings is a meta-device tensor: it has a shape but no data"):
        alscale.select_coreset(meta, 2)
    with pytest.raises(ValueError, match="logits is a meta-device tensor: it has a shape but no data"):
        alscale.select_badge(torch.empty((10, 4), device="meta"), z, 2)
    with pytest.raises(ValueError, match="embeddings is a meta-device tensor: it has a shape but no data"):
        alscale.select_badge(logits, meta, 2)


# --------------------------------------------------------------------------- budgets and bfloat16


def test_huge_budgets_are_clipped():
    z = np.random.default_rng(0).standard_normal((10, 3))
    logits = np.random.default_rng(1).standard_normal((10, 4))
    for budget in (10**13, 2**62, 2**63, 2**70):
        assert sorted(alscale.select_badge(logits, z, budget, seed=0).tolist()) == list(range(10))
        assert sorted(alscale.select_coreset(z, budget).tolist()) == list(range(10))
        assert sorted(alscale.select_coreset(z, budget, labeled=[0, 1]).tolist()) == list(range(2, 10))
        assert sorted(alscale.select_badge(logits, z, budget, exclude=[3], seed=0, partitions=3).tolist()) == \
            [i for i in range(10) if i != 3]
        assert sorted(alscale.select_coreset(z, budget, labeled=[0], exclude=[5], partitions=2, seed=0).tolist()) == \
            [i for i in range(10) if i not in (0, 5)]


def test_in_range_budgets_unchanged_by_clipping():
    z = np.random.default_rng(2).standard_normal((30, 3))
    logits = np.random.default_rng(3).standard_normal((30, 4))
    # The picks of a budget are the first picks of any larger budget (same seed).
    full = alscale.select_badge(logits, z, 30, seed=5)
    assert np.array_equal(alscale.select_badge(logits, z, 10**12, seed=5), full)
    assert np.array_equal(alscale.select_badge(logits, z, 7, seed=5), full[:7])
    core = alscale.select_coreset(z, 29, labeled=[1])
    assert np.array_equal(alscale.select_coreset(z, 2**63, labeled=[1]), core)


def test_bfloat16_embeddings():
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(0)).bfloat16()
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))
    got = alscale.select_coreset(z, 3)
    assert torch.equal(got, alscale.select_coreset(z.float(), 3))
    got = alscale.select_badge(logits, z, 3, seed=0)
    assert torch.equal(got, alscale.select_badge(logits, z.float(), 3, seed=0))
    assert alscale.select_coreset(z.half(), 3).shape == (3,)
