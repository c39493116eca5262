"""The head's inverse norms computed pair by pair (_core.PairNorms, used from PAIR_CLASSES classes
on instead of the C x C float64 table): every value is the table's bit for bit, the bfloat16 lower
bounds never exceed it, and every selection that reads the head — BASE, MASE, the streaming
selector, chunked pools — returns the same indices as with the table and as the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale import _core
from alscale._backend import arrays
from hypotheses import assert_same_indices, head_cases, weights


@pytest.fixture
def pairs_always(monkeypatch):
    """Every head, however few its classes, goes through PairNorms."""
    monkeypatch.setattr(arrays, "PAIR_CLASSES", 1)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 40), data=st.data())
def test_exact_equals_table_and_lower_bounds_hold(c, data):
    w = data.draw(weights(c, allow_none=False), label="weight").w
    w = arrays.check_weight(w, c)
    table = _core.inverse_norms(w)
    pairs = _core.PairNorms(w)
    exact = np.array([[pairs.exact(p, q) for q in range(c)] for p in range(c)]).reshape(c, c)
    np.testing.assert_array_equal(exact, table)
    lower = np.stack([pairs.lower_row(p) for p in range(c)])
    assert (lower <= table).all()
    finite = np.isfinite(table) & (table > np.finfo(np.float32).tiny) & (table < np.finfo(np.float32).max)
    assert (lower[finite] >= table[finite] * (1 - 2.0**-7)).all()  # 8 significant bits
    np.testing.assert_array_equal(pairs.weight, w)


def test_lower_bounds_outside_float_range_stay_below():
    """Inverse norms beyond float's range: 0 or float's largest value, still lower bounds, and the
    selections stay exact."""
    w = np.array([[1e200, 0.0], [1e200, 1e-100], [0.0, 1e-200]])
    table = _core.inverse_norms(w)
    pairs = _core.PairNorms(w)
    lower = np.stack([pairs.lower_row(p) for p in range(3)])
    assert (lower <= table).all()
    x = np.random.default_rng(0).standard_normal((200, 3))
    for b in (1, 50, 199):
        np.testing.assert_array_equal(_core.select_balanced(x, False, b, None, pairs, 2),
                                      _core.select_balanced(x, False, b, None, table, 2))
    np.testing.assert_array_equal(_core.boundary_scores(x, False, pairs, 2), _core.boundary_scores(x, False, table, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=head_cases())
def test_selections_with_pairs_equal_table_and_reference(pairs_always, case):
    x, w, budget, exclude = case
    n, c = x.shape
    assert isinstance(arrays.inverse_norms(w, c), _core.PairNorms)  # the path under test
    x64 = x.astype(np.float64)
    for threads in (1, 2):
        assert_same_indices(alscale.select_balanced(x, budget, weight=w, exclude=exclude, num_threads=threads),
                            ref.select_balanced(x64, budget, w, exclude), f"BASE, {threads} threads")
        assert_same_indices(alscale.select_boundary(x, budget, weight=w, exclude=exclude, num_threads=threads),
                            ref.select_boundary(x64, budget, w, exclude), f"MASE, {threads} threads")
    np.testing.assert_array_equal(alscale.boundary_scores(x, weight=w), ref.boundary_scores(x64, w))
    # chunked pool and the streaming selector (which keeps the PairNorms across updates)
    chunks = [x[i:i + 37] for i in range(0, n, 37)]
    assert_same_indices(alscale.select_balanced(chunks, budget, weight=w, exclude=exclude),
                        ref.select_balanced(x64, budget, w, exclude), "chunked pool")
    sel = alscale.BalancedSelector(c, budget, weight=w)
    while True:
        for i, part in enumerate(chunks):
            sel.update(part, row_offset=37 * i)
        if sel.advance():
            break
    assert_same_indices(sel.result(), ref.select_balanced(x64, budget, w), "BalancedSelector")


def test_pairs_are_used_from_pair_classes_on(monkeypatch):
    w = np.random.default_rng(1).standard_normal((5, 3))
    assert isinstance(arrays.norms_of(w).inv, np.ndarray)
    monkeypatch.setattr(arrays, "PAIR_CLASSES", 5)
    assert isinstance(arrays.norms_of(w).inv, _core.PairNorms)
    assert isinstance(arrays.norms_of(w, table=True).inv, np.ndarray)  # CUDA and the official loop
    assert isinstance(arrays.norms_of(w * 2.0**500).inv, np.ndarray)  # scaled heads keep the table


def test_selector_state_with_pairs_reloads_and_checks_the_weight(pairs_always):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 6))
    w = rng.standard_normal((6, 4))
    sel = alscale.BalancedSelector(6, 120, weight=w)
    sel.update(x[:200])
    state = sel.state_dict()
    again = alscale.BalancedSelector.from_state_dict(state, weight=w)
    again.update(x[200:], row_offset=200)
    assert again.advance()
    assert_same_indices(again.result(), ref.select_balanced(x, 120, w))
    with pytest.raises(ValueError, match="does not match"):
        alscale.BalancedSelector.from_state_dict(state, weight=w + 1)


def test_pairs_refuse_another_class_count():
    pairs = _core.PairNorms(np.eye(3))
    with pytest.raises(ValueError, match="3 classes but the logits have 4"):
        _core.boundary_scores(np.zeros((2, 4)), False, pairs, 1)


def test_pairs_refuse_a_weight_that_is_not_a_matrix():
    with pytest.raises(ValueError, match="weight must be 2-D"):
        _core.PairNorms(np.ones(3))


@pytest.mark.parametrize("c", [1, 2, 5, 33, 70])
@pytest.mark.parametrize("d", [1, 7, 9, 17])
def test_register_blocked_table_equals_reference_bit_for_bit(c, d):
    # The table is filled in register blocks of 4 x 4 (AVX-512) or 2 x 2 pairs, rows zero padded to
    # a multiple of 8 and the blocks clipped at the 32-row tiles: every entry must still be
    # lane_dot's bits (tests/reference.py), equal and nearly equal rows (the direct-norm path) included.
    rng = np.random.default_rng(c * 100 + d)
    w = rng.normal(size=(c, d))
    if c >= 5:
        w[4] = w[1]
        w[3] = w[2] * (1 + 1e-9)
    got = _core.inverse_norms(np.ascontiguousarray(w))
    want = ref.inverse_norms(w, c)
    assert got.tobytes() == want.tobytes()
