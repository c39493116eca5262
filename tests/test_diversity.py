"""Coreset (greedy k-center) and BADGE (k-means++ on gradient embeddings): exact picks against
the numpy references, for float32/float64 embeddings, exclusions, ties and thread counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import assert_same_indices, examples


def _embeddings(rng, n, d, mode, dtype):
    if mode == "integer":  # many exact distance ties
        z = rng.integers(-2, 3, (n, d)).astype(np.float64)
    elif mode == "duplicates":
        base = rng.standard_normal((max(1, n // 4), d))
        z = base[rng.integers(0, base.shape[0], n)]
    else:
        z = rng.standard_normal((n, d)) * 3.0
    return z.astype(dtype)


@st.composite
def pools(draw, max_n=400):
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, max_n), label="n")
    d = draw(st.integers(1, 37), label="d")
    mode = draw(st.sampled_from(["normal", "integer", "duplicates"]), label="mode")
    dtype = draw(st.sampled_from(["float32", "float64"]), label="dtype")
    return rng, _embeddings(rng, n, d, mode, dtype)


def _mask(rng, n, p):
    return rng.random(n) < p


@examples(0.5)
@given(pool=pools(), data=st.data())
def test_coreset_matches_reference(pool, data):
    rng, z = pool
    n = z.shape[0]
    labeled = _mask(rng, n, data.draw(st.sampled_from([0.0, 0.05, 0.3]), label="labeled"))
    exclude = _mask(rng, n, data.draw(st.sampled_from([0.0, 0.2]), label="exclude"))
    budget = data.draw(st.integers(0, min(n + 2, 40)), label="budget")
    expected = ref.select_coreset(z, labeled, budget, exclude)
    for t in (1, 2):
        got = alscale.select_coreset(z, budget, labeled=labeled, exclude=exclude, num_threads=t)
        assert_same_indices(got, expected, f"coreset, num_threads={t}")


@examples(0.3)
@given(pool=pools(max_n=250), data=st.data())
def test_badge_matches_reference(pool, data):
    rng, z = pool
    n = z.shape[0]
    c = data.draw(st.integers(1, 12), label="classes")
    logits = rng.standard_normal((n, c)) * data.draw(st.sampled_from([0.1, 1.0, 5.0]), label="scale")
    if data.draw(st.booleans(), label="float32 logits"):
        logits = logits.astype(np.float32)
    exclude = _mask(rng, n, data.draw(st.sampled_from([0.0, 0.3]), label="exclude"))
    budget = data.draw(st.integers(0, min(n + 2, 30)), label="budget")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    uniforms = np.random.default_rng(seed).random(budget)
    expected = ref.select_badge(logits, z, budget, uniforms, exclude)
    for t in (1, 2):
        got = alscale.select_badge(logits, z, budget, exclude=exclude, seed=seed, num_threads=t)
        assert_same_indices(got, expected, f"badge, num_threads={t}")


def test_coreset_by_hand_and_torch():
    x = np.array([[0.0], [1.0], [5.0], [9.0], [10.0]])
    assert alscale.select_coreset(x, 3, labeled=[0]).tolist() == [4, 2, 1]
    assert alscale.select_coreset(x, 2).tolist() == [0, 4]  # no centers: row 0 first
    got = alscale.select_coreset(torch.tensor(x, dtype=torch.float32), 2, labeled=torch.tensor([0]))
    assert isinstance(got, torch.Tensor) and got.tolist() == [4, 2]
    assert alscale.select_coreset(x, 3, labeled=[0, 1, 2, 3, 4]).tolist() == []  # nothing left


def test_badge_picks_are_distinct_and_seeded():
    rng = np.random.default_rng(0)
    logits, z = rng.standard_normal((3000, 10)), rng.standard_normal((3000, 32)).astype(np.float32)
    a = alscale.select_badge(logits, z, 200, seed=1)
    assert np.unique(a).size == 200
    assert np.array_equal(a, alscale.select_badge(logits, z, 200, seed=1, num_threads=1))
    assert not np.array_equal(a, alscale.select_badge(logits, z, 200, seed=2))


@pytest.mark.parametrize("name", ["coreset", "badge"])
def test_partitioned(name):
    rng = np.random.default_rng(3)
    n = 500
    logits, z = rng.standard_normal((n, 5)), rng.standard_normal((n, 8))
    labeled = np.zeros(n, dtype=bool)
    labeled[:20] = True
    if name == "coreset":
        got = alscale.select_coreset(z, 33, labeled=labeled, partitions=4, seed=7)
    else:
        got = alscale.select_badge(logits, z, 33, exclude=labeled, partitions=4, seed=7)
    assert got.size == 33 and np.unique(got).size == 33 and not labeled[got].any()
    # Part p of the seeded split picks B // P + (p < B % P) rows, each inside its part.
    order = np.flatnonzero(~labeled)[np.random.default_rng(7).permutation(n - 20)]
    parts = np.array_split(order, 4)
    start = 0
    for p, rows in enumerate(parts):
        q = 33 // 4 + (p < 33 % 4)
        assert set(got[start:start + q].tolist()) <= set(rows.tolist())
        start += q
    if name == "coreset":  # part 0 is the plain rule on its own rows
        outside = np.ones(n, dtype=bool)
        outside[parts[0]] = False
        assert_same_indices(got[:9], ref.select_coreset(z, labeled, 9, outside))


def test_diversity_errors():
    z = np.zeros((4, 2))
    with pytest.raises(ValueError, match="NaN or inf at row 2"):
        alscale.select_coreset(np.array([[0.0], [1.0], [np.nan], [2.0]]), 1)
    with pytest.raises(ValueError, match="2-D"):
        alscale.select_coreset(np.zeros(4), 1)
    with pytest.raises(ValueError, match="3 rows but the pool has 4"):
        alscale.select_badge(np.zeros((4, 2)), np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match="NaN or inf at row 1"):
        alscale.select_badge(np.array([[0.0, 1.0], [np.inf, 0.0], [0.0, 0.0], [1.0, 1.0]]), z, 1)
    with pytest.raises(ValueError, match="budget must be non-negative"):
        alscale.select_coreset(z, -1)
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        alscale.select_badge(np.zeros((4, 2)), z, 1, partitions=0)
    with pytest.raises(TypeError, match="real-valued"):
        alscale.select_coreset(np.array([["a"]]), 1)


@pytest.mark.parametrize("mode", ["normal", "integer"])
def test_larger_pools_thread_independent(mode):
    """Pools big enough to split over threads (the kernels use 1 thread below 128 rows)."""
    rng = np.random.default_rng(11)
    n = 3000
    z = _embeddings(rng, n, 20, mode, "float32")
    labeled = _mask(rng, n, 0.02)
    logits = rng.standard_normal((n, 7))
    expected = ref.select_coreset(z, labeled, 30)
    uniforms = np.random.default_rng(5).random(30)
    expected_badge = ref.select_badge(logits, z, 30, uniforms, labeled)
    for t in (1, 2, 0):
        assert_same_indices(alscale.select_coreset(z, 30, labeled=labeled, num_threads=t), expected, f"coreset t={t}")
        assert_same_indices(alscale.select_badge(logits, z, 30, exclude=labeled, seed=5, num_threads=t),
                            expected_badge, f"badge t={t}")


@pytest.mark.parametrize("u", [0.0, 0.5, np.nextafter(1.0, 0.0)])
def test_badge_inverse_cdf_edges(u):
    """Uniforms at the ends of [0, 1) on a pool with duplicated rows (zero D² weights): the pick is
    the first row whose running sum exceeds u·total, never a zero-weight row."""
    from alscale import _core

    rng = np.random.default_rng(2)
    base = rng.integers(-1, 2, (6, 3)).astype(np.float64)
    z = base[rng.integers(0, 6, 200)]
    logits = rng.integers(-1, 2, (200, 4)).astype(np.float64)
    uniforms = np.full(25, u)
    got = _core.select_badge(logits, False, z, None, 25, uniforms)
    assert_same_indices(got, ref.select_badge(logits, z, 25, uniforms))


def test_the_old_coreset_call_form_still_works_with_a_deprecation_warning():
    """select_coreset(embeddings, labeled, budget) was the old order; the convention is the pool,
    then the budget, then labeled= as a keyword. The old form gives the same picks for one minor
    version, with a DeprecationWarning naming the new form."""
    x = np.array([[0.0], [1.0], [5.0], [9.0], [10.0]])
    with pytest.warns(DeprecationWarning, match=r"select_coreset\(embeddings, budget, labeled=labeled\)"):
        old = alscale.select_coreset(x, [0], 3)
    assert old.tolist() == alscale.select_coreset(x, 3, labeled=[0]).tolist() == [4, 2, 1]
    with pytest.warns(DeprecationWarning):
        assert alscale.select_coreset(x, None, 2).tolist() == [0, 4]
    with pytest.raises(TypeError, match="select_coreset takes"):
        alscale.select_coreset(x, [0], 3, 4)
