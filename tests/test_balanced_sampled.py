"""select_balanced's first pass with sampled ceilings (csrc/balanced.cpp: every stride-th row
estimates, per class, a key that more than its capacity of rows reach; rows above it are offered
to no class): the result is the reference's, ties, exclusions, heads and budgets near N
included, whether the ceilings held or the pass had to be made again without them."""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from alscale import _core
from alscale._backend.arrays import inverse_norms
from hypotheses import assert_same_indices, make_values

MODES = ["normal", "wide", "integer", "halves", "constant", "duplicate_rows", "peaked"]


def sampled(x, budget, exclude=None, weight=None, stride=2, threads=0):
    mask = None if exclude is None else exclude.astype(np.uint8)
    inv = inverse_norms(weight, x.shape[1])
    got, was_sampled, held = _core.select_balanced_sampled_pass(x, False, budget, mask, inv, threads, stride)
    plain = _core.select_balanced(x, False, budget, mask, inv, threads, sample_stride=0)
    assert_same_indices(got, plain, "sampled vs unsampled first pass")
    return got, was_sampled, held


@pytest.mark.parametrize("seed", range(48))
def test_sampled_first_pass_matches_the_reference(seed):
    rng = np.random.default_rng([23, seed])
    stride = int(rng.choice([2, 3, 5, 8]))
    n = int(rng.integers(256 * stride, 256 * stride + 700))
    c = int(rng.integers(1, 13))
    x = make_values(rng, n, c, str(rng.choice(MODES)))
    budget = int(rng.choice([1, c, n // 50, n // 10, n // 2, n - int(rng.integers(0, 5)), n + 3]))
    exclude = None if rng.random() < 0.5 else rng.random(n) < rng.choice([0.05, 0.3, 0.9])
    weight = None if rng.random() < 0.6 else rng.standard_normal((c, 6))
    got, was_sampled, _ = sampled(x, budget, exclude, weight, stride, int(rng.choice([0, 1, 3])))
    assert was_sampled
    assert_same_indices(got, ref.select_balanced(x, budget, weight, exclude), f"seed {seed}")


def test_ceilings_hold_on_ordinary_pools_and_cut_the_offers():
    """On shuffled rows the ceilings hold (no second first pass) at small and large budgets."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20_000, 8))
    for budget in (50, 2_000, 10_000):
        got, was_sampled, held = sampled(x, budget, stride=16)
        assert was_sampled and held, budget
        assert_same_indices(got, ref.select_balanced(x, budget), f"B={budget}")


def test_a_sample_unlike_the_pool_falls_back_to_the_full_pass():
    """The sampled (even) rows sit on the class boundaries, the others far from them: the
    ceilings are far too low, the classes keep fewer than their capacity, the pass is made
    again without ceilings, and the result is still exact."""
    rng = np.random.default_rng(7)
    n, c = 4_000, 4
    x = rng.standard_normal((n, c)) * 0.01  # near every boundary
    odd = np.arange(1, n, 2)
    x[odd, rng.integers(0, c, odd.size)] += 6.0  # one dominant class: far from the boundaries
    for budget, exclude in ((800, None), (1_600, rng.random(n) < 0.2)):
        got, was_sampled, held = sampled(x, budget, exclude)
        assert was_sampled and not held
        assert_same_indices(got, ref.select_balanced(x, budget, None, exclude), f"B={budget}")


@pytest.mark.parametrize("n", [1, 2, 7, 100, 511])
def test_tiny_pools_are_not_sampled(n):
    rng = np.random.default_rng(n)
    x = make_values(rng, n, 3, "integer")
    for budget in (1, n, n + 1):
        got, was_sampled, held = sampled(x, budget)
        assert not was_sampled and not held
        assert_same_indices(got, ref.select_balanced(x, budget))


@pytest.mark.parametrize("seed", range(6))
def test_many_classes_at_large_budgets_match_the_reference(seed):
    """Classes over several 32-class groups (the rows loop's per-group masks of the classes under
    their bounds, a partial last group, the predicted class anywhere in a group), at budgets up
    to N / 2 where every row is offered to several classes: sampled and unsampled first passes,
    1 and 2 threads, against the reference."""
    rng = np.random.default_rng([29, seed])
    c = int(rng.choice([33, 64, 70, 100]))
    n = int(rng.integers(1_100, 1_600))
    x = make_values(rng, n, c, str(rng.choice(["normal", "wide", "halves", "peaked"])))
    weight = None if seed % 2 else rng.standard_normal((c, 5))
    for budget in (n // 10, n // 2):
        want = ref.select_balanced(x, budget, weight)
        for threads in (1, 2):
            got, was_sampled, _ = sampled(x, budget, None, weight, stride=4, threads=threads)
            assert was_sampled
            assert_same_indices(got, want, f"C={c} B={budget} threads={threads}")
