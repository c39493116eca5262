"""BASE at large budgets relative to the pool (B from N/10 to N and past it) and many classes:
exact against the reference for one-shot calls, for the streaming state fed in chunks, merged,
saved and reloaded between passes, and with the later-pass capacities forced small so that
many passes run; and the worst case (every score tied), whose pass count is what passes_bound()
says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale import _core
from alscale._backend.arrays import inverse_norms
from hypotheses import assert_same_indices, selection_cases

def large_b_cases(max_n=400, max_c=120):
    return selection_cases(max_n, max_c)


def run_state(x, inv, exclude, budget, *, extra, pass_memory, chunks=1, shards=1, reload=False):
    """The streaming rule through _core.BalancedState: each pass fed in `chunks` pieces spread
    over `shards` states merged in order (optionally saved and reloaded before advancing).
    Returns (result, passes, the worst-case bound at the start)."""
    n, c = x.shape
    mask = None if exclude is None else exclude.astype(np.uint8)
    make = lambda: _core.BalancedState(c, budget, extra, pass_memory)  # noqa: E731
    first = make()
    bound = first.passes_bound()
    states = [first] + [make() for _ in range(shards - 1)]
    passes = 0
    while True:
        passes += 1
        pieces = np.array_split(np.arange(n), chunks)
        for i, rows in enumerate(pieces):
            st_ = states[i % shards]
            st_.update(np.ascontiguousarray(x[rows]), False, int(rows[0]) if rows.size else 0, None,
                       None if mask is None else np.ascontiguousarray(mask[rows]), inv)
        for other in states[1:]:
            states[0].merge(other)
        state = states[0]
        if reload:
            state = _core.BalancedState.from_snapshot(state.snapshot())
        if state.advance():
            return state.result(), passes, bound
        if reload:
            state = _core.BalancedState.from_snapshot(state.snapshot())
        # the other shards start the next pass from the same served prefix
        snap = state.snapshot()
        states = [state] + [_core.BalancedState.from_snapshot({**snap, "counts": np.zeros(c, np.int64),
                                                               "keys": np.zeros(0), "rows": np.zeros(0, np.int64),
                                                               "fed": 0})
                            for _ in range(shards - 1)]


@settings(max_examples=60, deadline=None)
@given(case=large_b_cases())
def test_large_budget_matches_reference(case):
    x, w, exclude, budget = case
    want = ref.select_balanced(x, budget, w, exclude)
    for threads in (1, 2):
        got = alscale.select_balanced(x, budget, weight=w, exclude=exclude, num_threads=threads)
        assert_same_indices(got, want, f"num_threads={threads}")


@settings(max_examples=40, deadline=None)
@given(case=large_b_cases(max_n=300, max_c=60), data=st.data())
def test_forced_passes_chunked_merged_reloaded(case, data):
    """Tiny capacities (extra 0, pass_memory 0..small): many passes, each fed in chunks over
    several merged states, saved and reloaded — the same indices as the reference, and never
    more passes than passes_bound()."""
    x, w, exclude, budget = case
    inv = inverse_norms(w, x.shape[1])
    want = ref.select_balanced(x, budget, w, exclude)
    extra = data.draw(st.sampled_from([0, 1, 4]), label="extra")
    pass_memory = data.draw(st.sampled_from([0, 3, 50, 1000]), label="pass_memory")
    chunks = data.draw(st.integers(1, 5), label="chunks")
    shards = data.draw(st.integers(1, 3), label="shards")
    reload = data.draw(st.booleans(), label="reload")
    got, passes, bound = run_state(x, inv, exclude, budget, extra=extra, pass_memory=pass_memory,
                                   chunks=chunks, shards=shards, reload=reload)
    assert_same_indices(got, want)
    assert passes <= bound, f"{passes} passes, but passes_bound() promised at most {bound}"


@pytest.mark.parametrize("n, c, budget, extra, pass_memory", [
    (2000, 40, 1900, None, None),   # default capacities
    (2000, 40, 1900, None, 2000),   # small pass memory: more passes
    (3000, 200, 3000, None, None),  # B = N: every row, class by class
    (500, 7, 450, 0, 0),            # the old rule: a pass per class beyond the first
])
def test_worst_case_all_tied_counts_passes(n, c, budget, extra, pass_memory):
    """Constant logits (an untrained head): every score ties, so class c's best rows are exactly
    the rows the classes before it took — the most candidates any input can cost. The result is
    the first rows in order, and the pass count is exactly passes_bound()."""
    x = np.zeros((n, c), np.float32)
    extra = _core.default_extra(c, budget) if extra is None else extra
    kwargs = {} if pass_memory is None else {"pass_memory": pass_memory}
    state = _core.BalancedState(c, budget, extra, **kwargs)
    bound = state.passes_bound()
    passes = 0
    while True:
        state.update(x, False, 0, None, None, None)
        passes += 1
        if state.advance():
            break
    want = ref.select_balanced(x.astype(np.float64), budget)
    assert_same_indices(state.result(), want)
    np.testing.assert_array_equal(np.sort(state.result()), np.arange(min(budget, n)))
    assert passes == bound
    if pass_memory is None and extra == _core.default_extra(c, budget):
        assert passes <= 3  # at these sizes the default capacities need at most 3 passes


def test_passes_bound_shrinks_with_pass_memory():
    """The worst case at the papers' shapes, from the capacity rule alone (no data): the later
    passes' guaranteed classes cut it from dozens of passes (old rule: pass_memory = 0)."""
    for c, b in [(600, 1_000_000), (1000, 10_000), (20_000, 100_000)]:
        extra = _core.default_extra(c, b)
        new = _core.BalancedState(c, b, extra).passes_bound()
        old = _core.BalancedState(c, b, extra, 0).passes_bound()
        assert new < old, (c, b, new, old)


def test_state_without_pass_memory_loads_as_the_old_rule():
    """A state dict saved before pass_memory existed (no such key) reloads and finishes exactly."""
    rng = np.random.default_rng(3)
    x = np.zeros((300, 6))
    x[:, :] = rng.integers(0, 2, (300, 6))
    sel = alscale.BalancedSelector(6, 280, capacity=0)
    sel.update(x)
    state = sel.state_dict()
    state.pop("pass_memory")
    again = alscale.BalancedSelector.from_state_dict(state)
    while not again.advance():
        again.update(x)
    assert_same_indices(again.result(), ref.select_balanced(x, 280))


def test_bad_pass_memory_is_refused():
    with pytest.raises(ValueError, match="pass_memory must be non-negative"):
        _core.BalancedState(3, 10, 0, -1)
    sel = alscale.BalancedSelector(3, 10)
    sel.update(np.random.default_rng(0).standard_normal((20, 3)))
    state = sel.state_dict()
    state["pass_memory"] = -1
    with pytest.raises(ValueError, match="pass_memory"):
        alscale.BalancedSelector.from_state_dict(state)
