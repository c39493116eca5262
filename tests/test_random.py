"""select_random: distinct non-excluded rows, clipped budget, reproducible by seed, uniform."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import budgets, excludes


@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_contract(data, seed):
    n = data.draw(st.integers(1, 5000), label="n")
    exclude = data.draw(excludes(n, data.draw(st.sampled_from(["numpy", "torch"]), label="kind")),
                        label="exclude")
    budget = data.draw(budgets(n), label="budget")
    got = alscale.select_random(n, budget, exclude=exclude, seed=seed)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.ndim == 1
    mask = ref.exclude_mask(exclude, n)
    assert got.size == min(budget, int((~mask).sum()))
    assert np.unique(got).size == got.size
    assert ((got >= 0) & (got < n)).all()
    assert not mask[got].any()
    again = alscale.select_random(n, budget, exclude=exclude, seed=seed)
    assert np.array_equal(got, again)


def test_random_same_seed_same_result_and_seeds_differ():
    a = alscale.select_random(10_000, 500, seed=123)
    b = alscale.select_random(10_000, 500, seed=123)
    c = alscale.select_random(10_000, 500, seed=124)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(np.sort(a), np.sort(c))


def test_random_no_seed_works():
    got = alscale.select_random(100, 10)
    assert got.dtype == np.int64 and np.unique(got).size == 10


def test_random_order_is_random():
    got = alscale.select_random(1000, 1000, seed=0)
    assert np.array_equal(np.sort(got), np.arange(1000))
    assert not np.array_equal(got, np.arange(1000))  # a permutation, not the sorted pool
    assert not np.array_equal(got, np.arange(1000)[::-1])


def test_random_edges():
    assert alscale.select_random(5, 0, seed=1).tolist() == []
    assert sorted(alscale.select_random(5, 99, seed=1).tolist()) == [0, 1, 2, 3, 4]
    assert alscale.select_random(5, 3, exclude=np.ones(5, dtype=bool), seed=1).tolist() == []
    assert sorted(alscale.select_random(5, 9, exclude=np.array([0, -1]), seed=1).tolist()) == [1, 2, 3]
    assert alscale.select_random(1, 1, seed=3).tolist() == [0]
    got = alscale.select_random(6, 9, exclude=torch.tensor([True, False, True, False, False, False]), seed=2)
    assert sorted(got.tolist()) == [1, 3, 4, 5]


def test_random_is_uniform():
    """Over 3000 seeds, each of 10 rows is picked 3000 * 3/10 = 900 times on average
    (sd ~25); excluded rows never. Deterministic: the seeds are fixed."""
    counts = np.zeros(12, dtype=np.int64)
    first = np.zeros(12, dtype=np.int64)
    for seed in range(3000):
        got = alscale.select_random(12, 3, exclude=np.array([4, 9]), seed=seed)
        counts[got] += 1
        first[got[0]] += 1
    assert counts[4] == 0 and counts[9] == 0
    others = np.delete(counts, [4, 9])
    assert np.all(np.abs(others - 900) < 6 * 25), counts.tolist()
    # the first pick is uniform too (the order is random, not sorted): 300 each, sd ~16
    assert np.all(np.abs(np.delete(first, [4, 9]) - 300) < 6 * 16.5), first.tolist()
