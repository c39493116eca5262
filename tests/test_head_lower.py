"""The head's table read through float32 lower bounds (ALSCALE_HEAD_LOWER=always, csrc/head.hpp
`lower_table`; BASE's kernel then recomputes exactly from the float64 table the classes that pass
their bound and the row's minimum): the bounds never exceed the table, the distances they give
never exceed the exact ones, and BASE picks the same rows in the same order as with the float64
table and as the reference — with ties at a bound, huge and tiny logits, heads with nearly equal
rows (inverse norms beyond float's range) and on every instruction set."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale import _core
from hypotheses import assert_same_indices, head_cases, weights
from test_isa import _run

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)


def _both(monkeypatch, call):
    """call() with the float64 table, then with its float32 lower bounds."""
    monkeypatch.setenv("ALSCALE_HEAD_LOWER", "never")
    table = call()
    monkeypatch.setenv("ALSCALE_HEAD_LOWER", "always")
    return table, call()


def _check_bounds(table):
    lower, tight = _core.inverse_norm_lower_bounds(table)
    assert lower.dtype == np.float32 and lower.shape == table.shape
    low = lower.astype(np.float64)
    assert (low <= table).all()
    # the largest float <= each value: the next float up exceeds it (or the value is beyond float)
    with np.errstate(over="ignore"):
        up = np.nextafter(lower, np.float32(np.inf)).astype(np.float64)
    assert ((up > table) | (lower == FLT_MAX) | (low == table)).all()
    normal = (lower >= FLT_MIN) & (lower < FLT_MAX)
    assert tight == bool(((low == table) | normal).all())
    return low, tight


@pytest.mark.parametrize("gap_scale", [1.0, 1e-300, 1e300, 0.0])
def test_distances_from_lower_bounds_never_exceed_exact_ones(gap_scale):
    # d * lower rounded <= d * table rounded for every gap d >= 0 (round to nearest is monotone),
    # and 0 * inf is NaN for both (read as +inf); huge and tiny gaps and inverse norms included.
    table = np.array([[np.inf, 1.0 / 3, 1e-45, 7e-39],
                      [1.0 / 3, np.inf, 3.5e38, 1e300],
                      [1e-45, 3.5e38, np.inf, 0.1],
                      [7e-39, 1e300, 0.1, np.inf]])
    low, tight = _check_bounds(table)
    assert not tight  # values beyond float's range and subnormal bounds
    rng = np.random.default_rng(0)
    gaps = np.concatenate([[0.0, 5e-324, 1e-300, 1.0, 1e300, np.inf], rng.random(50) * gap_scale])
    with np.errstate(invalid="ignore", over="ignore"):
        for d in gaps:
            exact = d * table
            bound = d * low
            exact[~(exact >= 0)] = np.inf
            bound[~(bound >= 0)] = np.inf
            assert (bound <= exact).all(), d


@settings(max_examples=40, deadline=None)
@given(c=st.integers(1, 40), data=st.data())
def test_lower_bounds_of_drawn_heads(c, data):
    w = data.draw(weights(c, allow_none=False), label="weight").w
    table = _core.inverse_norms(np.ascontiguousarray(w, dtype=np.float64))
    _check_bounds(table)


def test_lower_bounds_refuse_a_table_that_is_not_square():
    with pytest.raises(ValueError, match="C x C"):
        _core.inverse_norm_lower_bounds(np.ones((2, 3)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=head_cases())
def test_base_with_lower_bounds_equals_table_and_reference(monkeypatch, case):
    x, w, budget, exclude = case
    n = x.shape[0]
    want = ref.select_balanced(x.astype(np.float64), budget, w, exclude)
    for threads in (1, 2):
        table, lower = _both(monkeypatch, lambda: alscale.select_balanced(
            x, budget, weight=w, exclude=exclude, num_threads=threads))
        np.testing.assert_array_equal(lower, table)  # the same rows in the same order
        assert_same_indices(lower, want, f"BASE with lower bounds, {threads} threads")
    chunks = [x[i:i + 37] for i in range(0, n, 37)]
    table, lower = _both(monkeypatch, lambda: alscale.select_balanced(chunks, budget, weight=w, exclude=exclude))
    np.testing.assert_array_equal(lower, table)


def _ties_at_bounds(rng, n, c):
    """Integer logits and a head whose rows are 0/1 patterns: many rows at equal distances, so
    classes are full with keys equal to the next rows' (a tie at the bound goes to the exact path)."""
    x = rng.integers(-3, 4, size=(n, c)).astype(np.float64)
    w = (rng.random((c, 4)) < 0.5).astype(np.float64)
    w[:, 0] += np.arange(c)  # distinct rows
    return x, w


@pytest.mark.parametrize("c", [2, 7, 33, 300])
@pytest.mark.parametrize("budget", [1, 10, 157])
def test_ties_at_the_bounds(monkeypatch, c, budget):
    rng = np.random.default_rng(c + budget)
    x, w = _ties_at_bounds(rng, 1200, c)
    table, lower = _both(monkeypatch, lambda: alscale.select_balanced(x, budget, weight=w, num_threads=2))
    np.testing.assert_array_equal(lower, table)
    assert_same_indices(lower, ref.select_balanced(x, budget, w), "ties")
    state_t, state_l = _both(monkeypatch, lambda: _streamed(x, budget, w))
    np.testing.assert_array_equal(state_l, state_t)


def _streamed(x, budget, w):
    sel = alscale.BalancedSelector(x.shape[1], budget, weight=w)
    while True:
        for i in range(0, len(x), 250):
            sel.update(x[i:i + 250], row_offset=i)
        if sel.advance():
            return sel.result()


@pytest.mark.parametrize("scale", [1e-300, 1e-30, 1.0, 1e30, 1e300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_and_tiny_logits(monkeypatch, scale, dtype):
    rng = np.random.default_rng(3)
    c = 12
    x = rng.standard_normal((500, c)) * scale
    if dtype is np.float32:
        x = np.clip(x, -FLT_MAX, FLT_MAX)
    x = x.astype(dtype)
    x[::5, 3] = x[::5].max(axis=1)  # ties at the max
    x[1::7] = 0.0
    x[2::7, :2] = -0.0
    w = rng.standard_normal((c, 5))
    for budget in (1, 24, 499):
        table, lower = _both(monkeypatch, lambda: alscale.select_balanced(x, budget, weight=w, num_threads=1))
        np.testing.assert_array_equal(lower, table)
        assert_same_indices(lower, ref.select_balanced(x.astype(np.float64), budget, w), f"budget {budget}")


@pytest.mark.parametrize("apart", ["1e-9", "ulp", "equal"])
def test_nearly_equal_head_rows(monkeypatch, apart):
    # inverse norms of 1e9 (float bounds within 2^-23: tight), beyond float's range (rows of 1e-25 an
    # ulp apart: 1e40 and more, FLT_MAX bounds, not tight: the two-scan minimum) and +inf (equal rows)
    rng = np.random.default_rng(4)
    c = 9
    w = rng.standard_normal((c, 3))
    if apart == "ulp":
        w *= 1e-25
        w[1] = np.nextafter(w[0], np.inf)
        w[5] = np.nextafter(w[4], -np.inf)
    else:
        spread = 1e-9 if apart == "1e-9" else 0.0
        w[1] = w[0] + spread
        w[5] = w[4] + spread
    table = _core.inverse_norms(w)
    _, tight = _check_bounds(table)
    assert tight == (apart != "ulp")
    if apart == "ulp":
        assert table[0, 1] > FLT_MAX and np.isfinite(table[0, 1])
    x = rng.standard_normal((800, c))
    x[::3, 1] = x[::3, 0]  # ties between the nearly equal classes
    for budget in (3, 90, 700):
        table_picks, lower = _both(monkeypatch, lambda: alscale.select_balanced(x, budget, weight=w, num_threads=2))
        np.testing.assert_array_equal(lower, table_picks)
        assert_same_indices(lower, ref.select_balanced(x, budget, w), f"budget {budget}")


def test_tiny_inverse_norms(monkeypatch):
    # a head with entries near 1e40 (not rescaled: under 2^400): inverse norms near 1e-40, subnormal
    # as float32 (bounds not tight)
    rng = np.random.default_rng(5)
    c = 6
    w = rng.standard_normal((c, 4)) * 1e40
    lower, tight = _core.inverse_norm_lower_bounds(_core.inverse_norms(w))
    assert not tight and (lower[~np.eye(c, dtype=bool)] < FLT_MIN).all()
    x = rng.standard_normal((600, c)) * 1e3
    for budget in (5, 300):
        table, got = _both(monkeypatch, lambda: alscale.select_balanced(x, budget, weight=w))
        np.testing.assert_array_equal(got, table)
        assert_same_indices(got, ref.select_balanced(x, budget, w), f"budget {budget}")


ISA_SCRIPT = r"""
import os
import sys
import numpy as np
import alscale

os.environ["ALSCALE_HEAD_LOWER"] = "@MODE@"  # read by every call

rng = np.random.default_rng(6)
out = {}
for c in (1, 3, 8, 13, 100, 300):
    for dt in (np.float16, np.float32, np.float64):
        x = (rng.normal(size=(700, c)) * 4).astype(dt)
        x[::7] = np.round(x[::7])
        w = rng.normal(size=(c, 5))
        if c > 3:
            w[2] = w[1] + 1e-40
        for b in (1, 40, 650):
            out[f"{c}-{np.dtype(dt).name}-{b}"] = alscale.select_balanced(x, b, weight=w)
np.savez(sys.argv[1], **out)
"""


def test_every_isa_picks_the_same_rows(tmp_path):
    # the dispatched kernel (AVX-512 where the CPU has it), AVX2 and the baseline, each with the
    # float64 table and with its float32 lower bounds
    runs = {(isa, lower): _run(tmp_path / f"{isa}-{lower}.npz", isa, ISA_SCRIPT.replace("@MODE@", lower))
            for isa in (None, "avx2", "base") for lower in ("never", "always")}
    want = runs[(None, "never")]
    assert len(want) == 6 * 3 * 3
    for key, got in runs.items():
        assert got.keys() == want.keys(), key
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{key} {name}")
