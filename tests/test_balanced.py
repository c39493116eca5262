"""select_balanced (BASE) and select_boundary (MASE): exact indices against the reference,
for every dtype, layout, weight, exclusion, budget and thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import (THREADS, assert_same_indices, budgets, excludes, logits, result_numpy,
                        weights)

SELECT = {
    "balanced": (alscale.select_balanced, ref.select_balanced),
    "boundary": (alscale.select_boundary, ref.select_boundary),
}


@pytest.mark.parametrize("name", sorted(SELECT))
@given(case=logits(), data=st.data())
def test_selection_matches_reference(name, case, data):
    select, reference = SELECT[name]
    w = data.draw(weights(case.c, case.kind), label="weight")
    exclude = data.draw(excludes(case.n, case.kind), label="exclude")
    budget = data.draw(budgets(case.n), label="budget")
    got = {t: result_numpy(select(case.x, budget, weight=w.w, exclude=exclude, num_threads=t), case.x)
           for t in THREADS}
    assert_same_indices(got[1], got[2], "between num_threads=1 and 2")
    assert_same_indices(result_numpy(select(case.x, budget, weight=w.w, exclude=exclude), case.x), got[1],
                        "between num_threads=0 and 1")
    assert_same_indices(got[1], reference(case.x64, budget, w.w, exclude), f"against the {name} reference")


@given(case=logits(modes=("integer", "constant", "duplicate_rows")), data=st.data())
def test_balanced_heavy_ties(case, data):
    """Integer-valued / constant / duplicated logits: every score ties with many others."""
    w = data.draw(weights(case.c, case.kind), label="weight")
    exclude = data.draw(excludes(case.n, case.kind), label="exclude")
    budget = data.draw(budgets(case.n), label="budget")
    got = result_numpy(alscale.select_balanced(case.x, budget, weight=w.w, exclude=exclude, num_threads=2),
                       case.x)
    assert_same_indices(got, ref.select_balanced(case.x64, budget, w.w, exclude))


@pytest.mark.parametrize("c", [64, 65, 130, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_balanced_takes_the_first_of_a_tied_max(c, dtype):
    """Rows whose max stands at two positions, on either side of the kernels' 8-, 16-, 32- and
    64-value steps (+0 and -0 among the maxima): BASE predicts the first, as numpy's argmax
    does, and with a head weight the predicted class sets every distance of the row."""
    rng = np.random.default_rng(c)
    marks = sorted({0, 1, 7, 8, 15, 16, 31, 32, 47, 48, 63, 64, 65, 127, 128, c - 2, c - 1} & set(range(c)))
    rows = []
    for p in marks:
        for q in marks:
            if q <= p:
                continue
            x = -rng.random(c) * 4 - 0.5
            if len(rows) % 3 == 0:
                x[p], x[q] = 0.0, -0.0
            else:
                x[p] = x[q] = abs(rng.normal())
            rows.append(x)
    x = np.array(rows, dtype)
    w = rng.normal(size=(c, 8))
    for budget in (len(rows) // 5, len(rows) // 2):
        got = result_numpy(alscale.select_balanced(x, budget, weight=w), x)
        assert_same_indices(got, ref.select_balanced(x.astype(np.float64), budget, w, None))


HAND = np.array([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [5.0, 0.0]])


@pytest.mark.parametrize("budget, expected", [(0, []), (1, [0]), (2, [0, 2]), (3, [0, 2, 1]),
                                              (4, [0, 2, 1, 3]), (50, [0, 2, 1, 3])])
def test_balanced_hand_example(budget, expected):
    # class 0 scores: 1, 3, 2 (its own boundary), 5; class 1 scores: 1 (own), 3 (own), 2, 5
    assert alscale.select_balanced(HAND, budget).tolist() == expected


def test_balanced_hand_example_exclude_and_boundary():
    assert alscale.select_balanced(HAND, 2, exclude=np.array([0])).tolist() == [2, 1]
    assert alscale.select_balanced(HAND, 2, exclude=np.array([True, False, False, False])).tolist() == [2, 1]
    assert alscale.select_boundary(HAND, 3).tolist() == [0, 2, 1]
    assert alscale.select_boundary(HAND, 9, exclude=np.array([-4])).tolist() == [2, 1, 3]


def test_balanced_class_order_and_quotas():
    # 3 classes, budget 5: quotas 2, 2, 1; each class's block ascending by score
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3))
    got = alscale.select_balanced(x, 5)
    assert got.tolist() == ref.select_balanced(x, 5).tolist()
    scores = ref.balanced_scores(x)
    blocks = [got[0:2], got[2:4], got[4:5]]
    for c, block in enumerate(blocks):
        assert np.all(np.diff(scores[block, c]) >= 0)


def test_balanced_all_ties_pick_by_index():
    x = np.zeros((7, 3))
    assert alscale.select_balanced(x, 5).tolist() == [0, 1, 2, 3, 4]
    assert alscale.select_balanced(x, 5, exclude=np.array([1, 3])).tolist() == [0, 2, 4, 5, 6]
    one = np.arange(5.0)[:, None]  # one class: every score +inf, still takeable by index
    assert alscale.select_balanced(one, 3).tolist() == [0, 1, 2]
    assert alscale.select_boundary(one, 3, exclude=np.array([0])).tolist() == [1, 2, 3]
    w_same = np.ones((3, 2))  # identical weight rows: every score +inf
    x = np.random.default_rng(0).normal(size=(6, 3))
    assert alscale.select_balanced(x, 4, weight=w_same).tolist() == ref.select_balanced(x, 4, w_same).tolist()
    assert alscale.select_boundary(x, 4, weight=w_same).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", sorted(SELECT))
@given(case=logits(kinds=("numpy",), dtypes=("float64",)), data=st.data())
def test_weight_scaled_by_power_of_two_gives_same_indices(name, case, data):
    """Scaling W by 2^k scales every r_c by 2^-k exactly: the indices cannot change
    (a metamorphic check that does not use the reference)."""
    select, _ = SELECT[name]
    w = data.draw(weights(case.c, "numpy", allow_none=False), label="weight")
    budget = data.draw(budgets(case.n), label="budget")
    k = data.draw(st.sampled_from([-3, 1, 4]), label="k")
    a = select(case.x, budget, weight=w.w)
    b = select(case.x, budget, weight=np.asarray(w.w, dtype=np.float64) * 2.0 ** k)
    assert_same_indices(b, a)


@pytest.mark.parametrize("name", sorted(SELECT))
def test_budget_edges(name):
    select, reference = SELECT[name]
    x = np.random.default_rng(1).normal(size=(10, 4))
    assert select(x, 0).tolist() == []
    assert sorted(select(x, 10**6).tolist()) == list(range(10))
    assert select(x, 10**6).tolist() == reference(x, 10**6).tolist()
    assert select(x, 4, exclude=np.ones(10, dtype=bool)).tolist() == []
    assert select(x, 4, exclude=np.arange(-10, 0)).tolist() == []
    got = select(x, 10, exclude=np.array([2, 2, -1, 0], dtype=np.int32))
    assert got.tolist() == reference(x, 10, None, np.array([0, 2, 9])).tolist()
    assert len(got) == 7


@pytest.mark.parametrize("name", sorted(SELECT))
def test_torch_low_precision(name):
    select, reference = SELECT[name]
    g = torch.Generator().manual_seed(0)
    x32 = torch.randn(300, 12, generator=g) * 2
    w = torch.randn(12, 8, generator=g)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        x = x32.to(dtype)
        got = select(x, 50, weight=w)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
        assert got.tolist() == reference(x.double().numpy(), 50, w).tolist()


@pytest.mark.parametrize("name", sorted(SELECT))
def test_budget_beyond_int64_is_clipped(name):
    select, _ = SELECT[name]
    x = np.random.default_rng(2).normal(size=(30, 4))
    assert select(x, 10**30).tolist() == select(x, 30).tolist()
    sel = alscale.BalancedSelector(4, 10**30).update(x)
    assert sel.result().tolist() == alscale.select_balanced(x, 30).tolist()
