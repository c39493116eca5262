"""select_margin / select_confidence / select_entropy: exact top-k rule (ties to the smaller
row) on alscale's own scores, and the full float64 reference where it is unambiguous."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import (SEEDS, THREADS, assert_same_indices, budgets, excludes, logits,
                        make_values, result_numpy, scores_numpy)

RULES = {
    # name: (select, scores, reference scores, reference top-k rule)
    "margin": (alscale.select_margin, alscale.margin_scores, ref.margin_scores, ref.topk_smallest),
    "confidence": (alscale.select_confidence, alscale.confidence_scores, ref.confidence_scores,
                   ref.topk_smallest),
    "entropy": (alscale.select_entropy, alscale.entropy_scores, ref.entropy_scores, ref.topk_largest),
}


@pytest.mark.parametrize("name", sorted(RULES))
@given(case=logits(), data=st.data())
def test_selection_is_topk_of_own_scores(name, case, data):
    select, scores, _, topk = RULES[name]
    exclude = data.draw(excludes(case.n, case.kind), label="exclude")
    budget = data.draw(budgets(case.n), label="budget")
    got = {t: result_numpy(select(case.x, budget, exclude=exclude, num_threads=t), case.x) for t in THREADS}
    assert_same_indices(got[1], got[2], "between num_threads=1 and 2")
    assert_same_indices(result_numpy(select(case.x, budget, exclude=exclude), case.x), got[1],
                        "between num_threads=0 and 1")
    own = scores_numpy(scores(case.x, num_threads=1), case.x, case.n)
    assert_same_indices(got[1], topk(own, budget, exclude), f"against the {name} top-k of alscale's scores")


def separated(sorted_scores: np.ndarray, k: int, gap: float) -> bool:
    """True when the first k+1 sorted scores are pairwise more than ``gap`` apart, so the
    selected set and its order cannot depend on rounding below ``gap``."""
    head = sorted_scores[: k + 1]
    return bool(head.size < 2 or np.min(np.abs(np.diff(head))) > gap)


@pytest.mark.parametrize("name", sorted(RULES))
@given(data=st.data(), seed=SEEDS)
def test_selection_matches_float64_reference(name, data, seed):
    select, _, ref_scores, topk = RULES[name]
    n = data.draw(st.integers(1, 2000), label="n")
    c = data.draw(st.integers(2, 60), label="c")
    x = make_values(np.random.default_rng(seed), n, c, "normal")
    exclude = data.draw(excludes(n), label="exclude")
    budget = data.draw(budgets(n), label="budget")
    expected = topk(ref_scores(x), budget, exclude)
    s = ref_scores(x)
    rows = ref.available_rows(n, exclude)
    ordered = s[expected] if expected.size else s[:0]
    if expected.size < rows.size:  # include the first row left out
        rest = np.setdiff1d(rows, expected)
        nxt = s[rest].min() if topk is ref.topk_smallest else s[rest].max()
        ordered = np.append(ordered, nxt)
    assume(separated(ordered, expected.size, 1e-9))
    got = select(x, budget, exclude=exclude, num_threads=2)
    assert_same_indices(result_numpy(got, x), expected, f"against the float64 {name} reference")


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_ties_go_to_smaller_row(name, kind):
    select = RULES[name][0]
    x = np.zeros((9, 4))
    x[[2, 5]] = [3.0, 0.0, 0.0, 0.0]  # confident rows: never picked first
    if kind == "torch":
        x = torch.tensor(x)
    got = result_numpy(select(x, 4), x)
    assert got.tolist() == [0, 1, 3, 4]
    got = result_numpy(select(x, 20, exclude=np.array([0, -1])), x)
    assert got.tolist() == [1, 3, 4, 6, 7, 2, 5]


@pytest.mark.parametrize("name", sorted(RULES))
def test_order_by_score(name):
    select = RULES[name][0]
    # margins: row 0 gap 2, row 1 gap 0.5, row 2 gap 1, row 3 gap 0 (tie), row 4 gap 3
    x = np.array([[2.0, 0.0], [0.0, 0.5], [1.0, 0.0], [0.7, 0.7], [0.0, 3.0]])
    assert select(x, 5).tolist() == [3, 1, 2, 0, 4]
    assert select(x, 2, exclude=np.array([True, False, False, True, False])).tolist() == [1, 2]


@pytest.mark.parametrize("name", sorted(RULES))
def test_budget_edges(name):
    select = RULES[name][0]
    x = np.random.default_rng(0).normal(size=(6, 3))
    assert select(x, 0).tolist() == []
    assert sorted(select(x, 100).tolist()) == list(range(6))
    assert select(x, 3, exclude=np.ones(6, dtype=bool)).tolist() == []
    assert select(x, 3, exclude=np.arange(6)).size == 0
    assert sorted(select(x, 100, exclude=np.array([1, 1, -1])).tolist()) == [0, 2, 3, 4]


def test_budget_beyond_int64_is_clipped():
    x = np.random.default_rng(2).normal(size=(30, 4))
    for select in (alscale.select_margin, alscale.select_confidence, alscale.select_entropy):
        assert select(x, 10**30).tolist() == select(x, 30).tolist()
