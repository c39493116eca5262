"""Self-checks of tests/reference.py (no alscale needed): the references against naive
pure-Python versions of the rules of docs/algorithms.md, against geometry, and against scipy/torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from hypotheses import SEEDS, excludes, make_values

INF = math.inf


def naive_inverse_norm(W, p, c):
    """1/||w_p - w_c|| in plain Python; exact for small integer-valued weights."""
    if W is None:
        return INF if p == c else 1.0
    if p == c or list(W[p]) == list(W[c]):
        return INF
    n2 = sum((a - b) ** 2 for a, b in zip(W[p], W[c]))
    return INF if n2 <= 0 else 1.0 / math.sqrt(n2)


def naive_scores(x, W):
    """BASE score table and boundary scores, row by row, straight from docs/algorithms.md."""
    N, C = len(x), len(x[0])
    table, boundary = [], []
    for i in range(N):
        row = list(x[i])
        p = row.index(max(row))  # the first maximum
        r = []
        for c in range(C):
            inv = naive_inverse_norm(W, p, c)
            d = row[p] - row[c]
            r.append(INF if (d == 0 and inv == INF) else d * inv)
        b = min(r)
        boundary.append(b)
        table.append([b if c == p else r[c] for c in range(C)])
    return table, boundary


def naive_balanced(x, budget, W, excluded):
    N, C = len(x), len(x[0])
    table, _ = naive_scores(x, W)
    taken = set(excluded)
    B = min(budget, N - len(taken))
    out = []
    for c in range(C):
        q = B // C + (1 if c < B % C else 0)
        cands = sorted((table[i][c], i) for i in range(N) if i not in taken)[:q]
        for _, i in cands:
            taken.add(i)
            out.append(i)
    return out


def naive_boundary_select(x, budget, W, excluded):
    _, boundary = naive_scores(x, W)
    cands = sorted((boundary[i], i) for i in range(len(x)) if i not in set(excluded))
    return [i for _, i in cands[:budget]]


@st.composite
def small_problem(draw):
    n = draw(st.integers(1, 25))
    c = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(SEEDS))
    mode = draw(st.sampled_from(["integer", "halves", "constant", "duplicate_rows", "normal"]))
    x = make_values(rng, n, c, mode)
    wmode = draw(st.sampled_from(["none", "integer", "unit"]))
    if wmode == "none":
        W = None
    elif wmode == "integer":  # exact Gram matrix; many equal rows
        W = rng.integers(-1, 2, (c, draw(st.integers(1, 3)))).astype(np.float64)
    else:  # one-hot rows: every ||w_p - w_c|| = sqrt(2)
        W = np.eye(c)
    exclude = draw(excludes(n))
    budget = draw(st.integers(0, n + 3))
    return x, W, exclude, budget


@given(small_problem())
def test_balanced_reference_matches_naive(problem):
    x, W, exclude, budget = problem
    excluded = np.flatnonzero(ref.exclude_mask(exclude, x.shape[0])).tolist()
    got = ref.select_balanced(x, budget, W, exclude)
    assert got.dtype == np.int64
    assert got.tolist() == naive_balanced(x.tolist(), budget, None if W is None else W.tolist(), excluded)
    got = ref.select_boundary(x, budget, W, exclude)
    assert got.tolist() == naive_boundary_select(x.tolist(), budget, None if W is None else W.tolist(), excluded)


@given(small_problem())
def test_balanced_reference_properties(problem):
    x, W, exclude, budget = problem
    N, C = x.shape
    mask = ref.exclude_mask(exclude, N)
    got = ref.select_balanced(x, budget, W, exclude)
    B = min(budget, int((~mask).sum()))
    assert got.size == B
    assert len(set(got.tolist())) == B
    assert not mask[got].any()
    # class blocks: class c's picks come in ascending (score, row) order
    scores = ref.balanced_scores(x, W)
    start = 0
    for c, q in enumerate(ref.quotas(B, C)):
        block = got[start:start + q]
        keys = list(zip(scores[block, c].tolist(), block.tolist()))
        assert keys == sorted(keys)
        start += q


def test_balanced_reference_hand_example():
    # rows: p=1 (gap 1), p=1 (gap 3), p=0 (gap 2), p=0 (gap 5); weight None.
    x = np.array([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [5.0, 0.0]])
    # class 0 scores: 1, 3, 2 (own boundary), 5 ; class 1 scores: 1 (own), 3 (own), 2, 5
    assert ref.select_balanced(x, 1, None).tolist() == [0]
    assert ref.select_balanced(x, 2, None).tolist() == [0, 2]
    assert ref.select_balanced(x, 3, None).tolist() == [0, 2, 1]
    assert ref.select_balanced(x, 4, None).tolist() == [0, 2, 1, 3]
    assert ref.select_balanced(x, 9, None).tolist() == [0, 2, 1, 3]
    assert ref.select_balanced(x, 2, None, exclude=[0]).tolist() == [2, 1]
    assert ref.select_boundary(x, 3, None).tolist() == [0, 2, 1]
    assert ref.boundary_scores(x).tolist() == [1.0, 3.0, 2.0, 5.0]


def test_reference_degenerate_cases():
    x = np.zeros((5, 3))  # all ties: p = 0 everywhere, every gap 0
    assert ref.boundary_scores(x).tolist() == [0.0] * 5
    assert ref.select_balanced(x, 4, None).tolist() == [0, 1, 2, 3]
    one = np.arange(4.0)[:, None]  # one class: every score +inf, picks by index
    assert ref.boundary_scores(one).tolist() == [INF] * 4
    assert ref.select_balanced(one, 3, None, exclude=[1]).tolist() == [0, 2, 3]
    assert ref.select_boundary(one, 2, None).tolist() == [0, 1]
    # identical weight rows: every norm 0 -> +inf everywhere
    W = np.ones((3, 2))
    assert np.isinf(ref.boundary_scores(np.random.default_rng(0).normal(size=(6, 3)), W)).all()
    # equal weight rows 0 and 1 only
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    inv = ref.inverse_norms(W, 3)
    assert inv[0, 1] == inv[1, 0] == INF and inv[0, 2] == 1.0 / math.sqrt(2.0)


def test_reference_geometry():
    """r_c is the Euclidean distance from z to the p/c decision hyperplane of a linear head."""
    rng = np.random.default_rng(1)
    C, D, N = 7, 5, 50
    W = rng.normal(size=(C, D))
    b = rng.normal(size=C)
    Z = rng.normal(size=(N, D))
    L = Z @ W.T + b
    r, p = ref.ratios(L, ref.inverse_norms(W, C))
    for i in range(N):
        for c in range(C):
            if c == p[i]:
                assert r[i, c] == INF
                continue
            n = W[p[i]] - W[c]
            dist = (n @ Z[i] + b[p[i]] - b[c]) / np.linalg.norm(n)
            assert dist >= 0
            assert r[i, c] == pytest.approx(dist, rel=1e-9)
            # moving z by that distance along the unit normal lands on the hyperplane
            z2 = Z[i] - dist * n / np.linalg.norm(n)
            l2 = W @ z2 + b
            assert l2[p[i]] - l2[c] == pytest.approx(0.0, abs=1e-9)
    assert np.array_equal(ref.boundary_scores(L, W), r.min(axis=1))


def test_uncertainty_reference_against_scipy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 9)) * 3
    p = scipy.special.softmax(x, axis=1)
    np.testing.assert_allclose(ref.softmax(x), p, rtol=1e-13)
    top = np.sort(p, axis=1)
    np.testing.assert_allclose(ref.margin_scores(x), top[:, -1] - top[:, -2], atol=1e-14)
    np.testing.assert_allclose(ref.confidence_scores(x), top[:, -1], atol=1e-14)
    np.testing.assert_allclose(ref.entropy_scores(x), scipy.special.entr(p).sum(axis=1), rtol=1e-12)
    t = torch.tensor(x)
    np.testing.assert_allclose(ref.entropy_scores(t),
                               torch.distributions.Categorical(logits=t).entropy().numpy(), rtol=1e-12)
    one = np.array([[3.0], [-1.0]])
    assert ref.margin_scores(one).tolist() == [1.0, 1.0]
    assert ref.confidence_scores(one).tolist() == [1.0, 1.0]
    assert ref.entropy_scores(one).tolist() == [0.0, 0.0]
    const = np.zeros((2, 4))
    assert ref.margin_scores(const).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(ref.entropy_scores(const), np.log(4.0), rtol=1e-15)
    huge = np.array([[1e308, -1e308], [0.0, -1e308]])
    assert ref.margin_scores(huge).tolist() == [1.0, 1.0]
    assert ref.entropy_scores(huge).tolist() == [0.0, 0.0]


def test_topk_reference_rules():
    s = np.array([0.5, 0.1, 0.5, INF, 0.1, 0.3])
    assert ref.topk_smallest(s, 4).tolist() == [1, 4, 5, 0]
    assert ref.topk_smallest(s, 10).tolist() == [1, 4, 5, 0, 2, 3]
    assert ref.topk_smallest(s, 3, exclude=[-2, 1]).tolist() == [5, 0, 2]
    assert ref.topk_largest(s, 3).tolist() == [3, 0, 2]
    assert ref.topk_largest(s, 2, exclude=np.array([False, False, False, True, False, False])).tolist() == [0, 2]
    assert ref.topk_smallest(s, 0).tolist() == []
    with pytest.raises(ValueError):
        ref.exclude_mask([6], 6)
    with pytest.raises(ValueError):
        ref.exclude_mask(np.zeros(5, bool), 6)
