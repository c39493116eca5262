"""Per-row scores: margin / confidence / entropy (close to a float64 reference) and the
boundary score min_c r_c (bit-exact to the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import THREADS, assert_same_bits, logits, scores_numpy, weights

UNCERTAINTY = {
    "margin": (alscale.margin_scores, ref.margin_scores),
    "confidence": (alscale.confidence_scores, ref.confidence_scores),
    "entropy": (alscale.entropy_scores, ref.entropy_scores),
}


def tolerance(name: str, dtype: str, num_classes: int) -> dict:
    """Sound bounds for a float32 (16/32-bit input) or float64 kernel against a float64
    reference. Each probability's relative error is at most about (C + 20) eps (a C-term
    sum, the exp, and rounding l - max for |l - max| <= 40); margin adds two of them."""
    eps = np.finfo(np.float64 if dtype == "float64" else np.float32).eps
    slack = 4 * eps * (num_classes + 32)
    if name == "entropy":  # entropy is up to log C; its terms' errors scale with |log p|
        return dict(rtol=slack, atol=slack * (4 + math.log(num_classes + 1)))
    return dict(rtol=0.0, atol=slack)  # margin / confidence lie in [0, 1]


@pytest.mark.parametrize("name", sorted(UNCERTAINTY))
@given(case=logits(modes=("normal", "wide", "integer", "halves", "constant", "duplicate_rows", "peaked")))
def test_uncertainty_scores_match_reference(name, case):
    fn, ref_fn = UNCERTAINTY[name]
    got = {t: scores_numpy(fn(case.x, num_threads=t), case.x, case.n) for t in THREADS}
    assert_same_bits(got[1], got[2], "between num_threads=1 and 2")
    assert_same_bits(scores_numpy(fn(case.x), case.x, case.n), got[1], "between num_threads=0 and 1")
    expected = ref_fn(case.x64)
    assert np.isfinite(got[1]).all()
    np.testing.assert_allclose(got[1], expected, **tolerance(name, case.dtype, case.c))


@given(case=logits(), data=st.data())
def test_boundary_scores_exact(case, data):
    w = data.draw(weights(case.c, case.kind), label="weight")
    got = {t: scores_numpy(alscale.boundary_scores(case.x, weight=w.w, num_threads=t), case.x, case.n)
           for t in THREADS}
    assert_same_bits(got[1], got[2], "between num_threads=1 and 2")
    assert_same_bits(scores_numpy(alscale.boundary_scores(case.x, weight=w.w), case.x, case.n), got[1],
                     "between num_threads=0 and 1")
    assert_same_bits(got[1], ref.boundary_scores(case.x64, w.w), "against the reference")
    assert not np.isnan(got[1]).any()
    assert (got[1] >= 0).all()


def test_boundary_scores_no_weight_is_logit_gap():
    x = np.array([[0.0, 1.0, 4.0], [2.0, 2.0, -1.0], [5.0, 1.0, 3.5], [-1.0, -1.0, -1.0]])
    assert alscale.boundary_scores(x).tolist() == [3.0, 0.0, 1.5, 0.0]


def test_boundary_scores_one_class_is_inf():
    x = np.array([[1.0], [-3.0], [0.0]])
    assert alscale.boundary_scores(x).tolist() == [math.inf] * 3
    assert alscale.boundary_scores(x, weight=np.ones((1, 4))).tolist() == [math.inf] * 3


def test_boundary_scores_with_weight_are_distances():
    """With logits of a linear head, the score is the distance to the nearest boundary."""
    rng = np.random.default_rng(5)
    C, D, N = 6, 4, 30
    W = rng.normal(size=(C, D))
    b = rng.normal(size=C)
    Z = rng.normal(size=(N, D))
    L = Z @ W.T + b
    got = alscale.boundary_scores(L, weight=W)
    p = L.argmax(1)
    for i in range(N):
        dist = min((L[i, p[i]] - L[i, c]) / np.linalg.norm(W[p[i]] - W[c]) for c in range(C) if c != p[i])
        assert got[i] == pytest.approx(dist, rel=1e-12)


def test_boundary_scores_equal_weight_rows():
    # rows 0 and 1 of the weight are equal: the 0/1 boundary does not exist (+inf)
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    x = np.array([[3.0, 2.0, 0.0], [3.0, 3.0, 0.0], [1.0, 0.0, 0.5]])
    got = alscale.boundary_scores(x, weight=W)
    # row 0: p=0: r_1 = inf, r_2 = 3/sqrt(5); row 1: p=0, r_1 = 0*inf -> inf, r_2 = 3/sqrt(5)
    # row 2: p=0: r_1 = inf, r_2 = 0.5/sqrt(5)
    inv = 1.0 / np.sqrt(5.0)
    assert got.tolist() == [3.0 * inv, 3.0 * inv, 0.5 * inv]
    assert np.isinf(alscale.boundary_scores(x, weight=np.ones((3, 2)))).all()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_zero_boundary_scores_are_positive_zero(dtype):
    """A row whose maximum is -0 subtracts 0 + (-0) = +0 in every lane (rowmath_common.hpp
    row_max_lanes), so l_p - l_c is +0 for l_c = +-0 and a zero score is +0 on the CPU and the GPU
    alike: their scores agree in every bit, the sign of a zero included."""
    rows = [[-0.0, 0.0, -1.0], [0.0, -0.0, -2.0], [-0.0, -0.0, -0.0], [-0.0, 0.0, -0.0, 0.0]]
    x = np.array([np.resize(r, 12) for r in rows], dtype=dtype)  # 12 classes: zeros in many lanes
    w = np.random.default_rng(3).normal(size=(12, 5))
    for weight in (None, w):
        got = alscale.boundary_scores(x, weight=weight)
        assert (got == 0).all() and not np.signbit(got).any(), (weight is None, got)


@pytest.mark.parametrize("name", sorted(UNCERTAINTY))
def test_uncertainty_special_values(name):
    fn, _ = UNCERTAINTY[name]
    one = fn(np.array([[2.0], [-7.0]]))
    const = fn(np.zeros((3, 4)))
    expected_one = {"margin": 1.0, "confidence": 1.0, "entropy": 0.0}[name]
    expected_const = {"margin": 0.0, "confidence": 0.25, "entropy": math.log(4.0)}[name]
    np.testing.assert_allclose(one, [expected_one] * 2, atol=1e-15)
    np.testing.assert_allclose(const, [expected_const] * 3, rtol=1e-14, atol=1e-15)
    # ln 3 gap between two classes: p = (1/4, 3/4)
    two = fn(np.array([[0.0, math.log(3.0)]]))
    expected_two = {"margin": 0.5, "confidence": 0.75,
                    "entropy": -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))}[name]
    np.testing.assert_allclose(two, [expected_two], rtol=1e-14)


@pytest.mark.parametrize("name", sorted(UNCERTAINTY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uncertainty_scores_are_stable_for_huge_logits(name, dtype):
    """A stable softmax: huge finite logits neither overflow nor give NaN (0 log 0 = 0)."""
    fn, ref_fn = UNCERTAINTY[name]
    big = float(np.finfo(dtype).max)
    x = np.array([[big, -big, 0.0], [1000.0, 999.0, -1000.0], [-big, -big, -big]], dtype=dtype)
    got = fn(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref_fn(x.astype(np.float64)), **tolerance(name, dtype, 3))


@pytest.mark.parametrize("name", sorted(UNCERTAINTY))
@given(data=st.data())
def test_values_whose_exp_underflows_leave_the_scores_bits_alone(name, data):
    """A value more than 87 (float32; 708 for float64) below its row's max has exp 0 and adds
    nothing to the softmax sums, whatever it is: gaps from -88 to below -1e30, and -inf where
    x - max overflows. So rows that differ only in such values score the same bits (no
    0 * -inf NaN in entropy's sum of e (x - max), no sign of a zero product in its bits)."""
    fn, _ = UNCERTAINTY[name]
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    big = float(np.finfo(dtype).max)
    cut = 88.0 if dtype == "float32" else 709.0
    rows, cols = data.draw(st.integers(1, 6)), data.draw(st.integers(2, 40))
    scale = data.draw(st.sampled_from([1.0, 30.0, 1e32]))  # 1e32: gaps to -big overflow to -inf
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.standard_normal((rows, cols)) * scale).astype(dtype)
    x[:, 0] = np.abs(x).max(axis=1) + 1  # every row keeps one value well above the rest
    low = rng.random((rows, cols)) < 0.5
    low[:, 0] = False
    variants = []
    for _ in range(3):
        y = x.copy()
        mx = y.max(axis=1, keepdims=True).astype(np.float64)
        pick = rng.integers(0, 4, size=(rows, cols))
        gaps = np.choose(pick, [np.full((rows, cols), cut), 1e3 + rng.random((rows, cols)) * 1e6,
                                np.full((rows, cols), 1e31), np.full((rows, cols), np.inf)])
        with np.errstate(over="ignore"):
            repl = np.maximum(mx - gaps, -big).astype(dtype)
        while ((near := repl.astype(np.float64) - mx > -cut) & low).any():  # rounded up to the max
            repl[near] = np.nextafter(repl[near], np.array(-big, dtype=dtype))
        y[low] = repl[low]
        assert (y.astype(np.float64) - mx <= -cut)[low].all()
        variants.append(y)
    got = [fn(y) for y in variants]
    assert np.isfinite(got[0]).all()
    for g in got[1:]:
        assert_same_bits(g, got[0])


@pytest.mark.parametrize("fn", [alscale.margin_scores, alscale.confidence_scores,
                                alscale.entropy_scores, alscale.boundary_scores])
def test_scores_torch_in_torch_out(fn):
    x = torch.randn(17, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    got = fn(x)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and got.shape == (17,)
    np.testing.assert_array_equal(got.numpy(), fn(x.numpy()))


@pytest.mark.parametrize("c", [31, 32, 33, 64, 65, 97, 130])
def test_first_argmax_and_second_across_the_split_max(c):
    # The max is taken in independent chains (virtual lanes c % 32) merged afterwards: rows whose
    # maximum repeats far apart, with +-0 ties and ties for the second place, must keep the first
    # argmax (boundary scores and BASE, bit for bit as the reference) and the second largest as a
    # multiset (margin 0 for a repeated maximum).
    rng = np.random.default_rng(c)
    x = rng.integers(-3, 3, size=(64, c)).astype(np.float32)
    for i in range(0, 64, 4):
        top = rng.choice(c, size=3, replace=False)
        x[i, top] = 5.0
    x[1::4] = np.where(rng.random((16, c)) < 0.5, 0.0, -0.0)
    x[2::4, -1] = 7.0
    w = rng.normal(size=(c, 3))
    assert_same_bits(alscale.boundary_scores(x, weight=w), ref.boundary_scores(x, w))
    assert np.array_equal(alscale.select_balanced(x, 40, weight=w), ref.select_balanced(x, 40, w))
    margins = alscale.margin_scores(x)
    assert (margins[0::4] == 0).all() and (margins[1::4] == 0).all()
