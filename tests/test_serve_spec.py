"""The specification of BASE served on the device (cuda/serve.cu), as a plain host function that
runs here, checked against the CPU's select_balanced and the reference rule.

What the device does per pass (issue 12), step by step, and what `serve_spec` below emulates:
1. candidates: class c's buffer holds exactly the capacity[c] smallest (key, row) among the rows
   not masked (exclude and the rows earlier passes took), as cut_classes leaves it;
2. a segmented sort of every class's buffer by (key, row) (CUB, two stable passes: row, then key);
3. one block walks the classes start..C-1 in order; class c reads its sorted candidates a tile of
   `tile` at a time, flags those whose row is not taken, and an exclusive block scan of the flags
   gives each free candidate its place: the first q_c - got of them are picked (written at the
   class's offset of the output) and marked taken. q_c uses the budget clipped to the rows fed;
4. a class whose candidates run out before its quota is the first starved class: the walk stops
   there and reports it; the host then runs the next pass exactly as the CPU's BalancedState
   (the picks of the classes before it stand, their rows are masked, start_class = it, the
   extra grows, the budget stays clipped), with the device's pass_memory = 0 capacities.
The result must equal the CPU's in every case: same rows, same order.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale import _core
from hypotheses import assert_same_indices, selection_cases



# ---- the capacity rule of csrc/balanced.cpp (set_capacities, grown_extra), for pass_memory = 0 ----


def quota(c: int, budget: int, classes: int) -> int:
    return budget // classes + (1 if c < budget % classes else 0)


def capacities(classes: int, budget: int, extra: int, pass_index: int, start: int, pass_memory: int = 0):
    cap = np.zeros(classes, np.int64)
    before = guaranteed = 0
    guarding = pass_index > 0
    for c in range(start, classes):
        q = quota(c, budget, classes)
        if q == 0:
            continue
        room = q + min(before, extra)
        if guarding and (c == start or guaranteed + q + before <= pass_memory):
            room = q + before
            guaranteed += room
        else:
            guarding = False
        cap[c] = room
        before += q
    return cap


def grown_extra(extra: int, classes: int) -> int:
    max_extra = max(64, (1 << 24) // classes)
    return min(max(4 * extra, 64), max(extra, max_extra))


# ---- the device's steps ----


def candidate_buffers(scores: np.ndarray, masked: np.ndarray, cap: np.ndarray):
    """Step 1 (+ 2): per class, the cap[c] smallest (key, row) of the unmasked rows, sorted."""
    rows = np.flatnonzero(~masked)
    out = []
    for c in range(scores.shape[1]):
        order = np.lexsort((rows, scores[rows, c]))  # by key, then row: the segmented sort's order
        out.append(rows[order[: cap[c]]])
    return out


def walk(buffers, classes: int, start: int, budget: int, n: int, tile: int):
    """Step 3 (+ 4): the single-block walk. Returns (picks in order, first starved class or -1,
    the picks made by the classes before the starved one)."""
    taken = np.zeros(n, bool)
    picks: list[int] = []
    for c in range(start, classes):
        q = quota(c, budget, classes)
        if q == 0:
            continue
        cand, got, at = buffers[c], 0, 0
        before = len(picks)
        while got < q and at < cand.size:
            rows = cand[at:at + tile]  # one tile: a candidate per thread
            free = ~taken[rows]
            place = np.cumsum(free) - free  # exclusive block scan
            pick = free & (place < q - got)
            picks.extend(rows[pick].tolist())
            taken[rows[pick]] = True
            got += int(pick.sum())
            at += tile
        if got < q:
            return picks, c, picks[:before]
    return picks, -1, picks


def serve_spec(scores: np.ndarray, budget: int, exclude=None, *, extra=None, tile: int = 256):
    """BASE as the device serves it. Returns (picks, passes)."""
    n, classes = scores.shape
    masked = np.zeros(n, bool) if exclude is None else exclude.copy()
    extra = _core.default_extra(classes, budget) if extra is None else extra
    pass_index, start, final = 0, 0, []
    B = budget
    while True:
        cap = capacities(classes, B, extra, pass_index, start)
        fed = int((~masked).sum())
        if pass_index == 0:
            B_served = min(B, fed)  # the kernel clips with the fed counter it reads
        else:
            B_served = B
        buffers = candidate_buffers(scores, masked, cap)
        picks, starved, kept = walk(buffers, classes, start, B_served, n, tile)
        if starved < 0:
            return np.array(final + picks, np.int64), pass_index + 1
        assert fed > cap[starved], "a class ran short with every row at hand"
        final += kept
        masked[kept] = True
        start, pass_index, extra, B = starved, pass_index + 1, grown_extra(extra, classes), B_served


def core_passes(x: np.ndarray, inv, exclude, budget: int, extra: int) -> tuple[np.ndarray, int]:
    """The CPU's BalancedState with the device's pass_memory = 0: result and pass count."""
    state = _core.BalancedState(x.shape[1], budget, extra, 0)
    mask = None if exclude is None else exclude.astype(np.uint8)
    passes = 0
    while True:
        passes += 1
        state.update(np.ascontiguousarray(x), False, 0, None, mask, inv)
        if state.advance():
            return state.result(), passes


def cases(max_n=300, max_c=80):
    return selection_cases(max_n, max_c, small_budgets=True)


@given(case=cases(), tile=st.sampled_from([1, 3, 32, 256]), extra=st.sampled_from([None, 0, 1, 4]))
def test_spec_equals_cpu_select_balanced(case, tile, extra):
    """Random pools with ties, exclusions, B from 0 past N; small extras force extra passes;
    small tiles make the walk span many tiles. Same rows, same order as the CPU and the rule,
    and the same number of passes as the CPU's state with the device's capacities."""
    x, w, exclude, budget = case
    scores = ref.balanced_scores(x, w)
    got, passes = serve_spec(scores, budget, exclude, extra=extra, tile=tile)
    want = alscale.select_balanced(x, budget, weight=w, exclude=exclude)
    assert_same_indices(got, want)
    assert_same_indices(got, ref.select_balanced(x, budget, w, exclude))
    e = _core.default_extra(x.shape[1], budget) if extra is None else extra
    inv = None if w is None else alscale._backend.arrays.inverse_norms(w, x.shape[1], table=True)
    core, core_pass_count = core_passes(x, inv, exclude, budget, e)
    assert_same_indices(got, core)
    assert passes == core_pass_count


@pytest.mark.parametrize("n, c, budget, extra", [
    (500, 7, 450, 0),          # a pass per class beyond the first
    (2000, 40, 1900, None),    # default capacities
    (3000, 200, 3000, None),   # B = N
    (300, 100, 300, None),     # q = 3: class c runs short from c ~ 26 on
    (50, 10, 80, 0),           # B past N, every score tied
])
def test_spec_worst_case_all_tied(n, c, budget, extra):
    """Every score tied: the first rows in order, in exactly passes_bound() passes (the device's
    guarantee is the CPU's: pass_memory = 0 capacities)."""
    x = np.zeros((n, c))
    e = _core.default_extra(c, budget) if extra is None else extra
    got, passes = serve_spec(ref.balanced_scores(x), budget, extra=e)
    np.testing.assert_array_equal(got, np.arange(min(budget, n)))
    assert passes == _core.BalancedState(c, budget, e, 0).passes_bound()
    assert_same_indices(got, alscale.select_balanced(x, budget))


def test_spec_capacities_equal_the_cpu_state():
    """The capacity rule copied above is the CPU's: a state's snapshot lists the same."""
    for c, b, extra in [(7, 450, 0), (40, 1900, 64), (1000, 10_000, 104), (13, 5, 3)]:
        snap = _core.BalancedState(c, b, extra, 0).snapshot()
        np.testing.assert_array_equal(capacities(c, b, extra, 0, 0), snap["capacity"])


def test_walk_reports_the_first_starved_class():
    # class 0 takes rows 0, 1; class 1's only candidates are rows 0, 1, 2 -> it gets 1 of 2
    scores = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [9.0, 9.0]])
    buffers = [np.array([0, 1, 2]), np.array([0, 1, 2])]
    picks, starved, kept = walk(buffers, 2, 0, 4, scores.shape[0], tile=2)
    assert starved == 1 and kept == [0, 1] and picks == [0, 1, 2]
    picks, starved, kept = walk([np.array([0, 1]), np.array([0, 1, 2, 3])], 2, 0, 4, 4, tile=1)
    assert starved == -1 and picks == [0, 1, 2, 3] and kept == picks
