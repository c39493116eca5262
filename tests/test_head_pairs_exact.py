"""The pairs on demand at their edges (_core.PairNorms, C >= PAIR_CLASSES: r holds bfloat16 lower
bounds, so BASE recomputes exactly the classes that pass their bound and a row's minimum only where
it can enter class p's heap, found with vector scans; MASE and the scores make every row's minimum
exact the same way): the same picks and the same score bits as the float64 table, and the same
picks as the reference — with ties at a bound, huge and tiny logits and zeros at the max, heads
with nearly equal rows (inverse norms beyond float's range), tiny inverse norms, and on every
instruction set."""

from __future__ import annotations

import numpy as np
import pytest

import alscale
import reference as ref
from alscale import _core
from alscale._backend import arrays
from test_isa import _run

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)


def _both(monkeypatch, w, call):
    """[call() with the C x C float64 table, call() with the pairs on demand] (each path checked)."""
    out = []
    for classes, kind in ((1 << 30, np.ndarray), (1, _core.PairNorms)):
        monkeypatch.setattr(arrays, "PAIR_CLASSES", classes)
        assert isinstance(arrays.norms_of(arrays.check_weight(w, w.shape[0])).inv, kind)
        out.append(call())
    return out


def _same_as_table_and_reference(monkeypatch, x, budget, w, threads=1):
    """BASE, MASE and the scores through the pairs: equal to the table's (scores as bits), and the
    picks equal to the reference's."""
    def picks():
        return (alscale.select_balanced(x, budget, weight=w, num_threads=threads),
                alscale.select_boundary(x, budget, weight=w, num_threads=threads),
                alscale.boundary_scores(x, weight=w, num_threads=threads))

    table, pairs = _both(monkeypatch, w, picks)
    for name, t, p in zip(("BASE", "MASE", "scores"), table, pairs):
        assert t.tobytes() == p.tobytes(), f"{name}, budget {budget}"
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(pairs[0], ref.select_balanced(x64, budget, w), err_msg=f"BASE, budget {budget}")
    np.testing.assert_array_equal(pairs[1], ref.select_boundary(x64, budget, w), err_msg=f"MASE, budget {budget}")


def _pairs_lower_bounds(w):
    """The pairs' bfloat16 lower bounds (C x C) and the exact table; the bounds never exceed it."""
    table = _core.inverse_norms(w)
    pairs = _core.PairNorms(w)
    lower = np.stack([pairs.lower_row(p) for p in range(w.shape[0])])
    assert (lower <= table).all()
    return lower, table


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
    _same_as_table_and_reference(monkeypatch, x, budget, w, threads=2)
    state_t, state_p = _both(monkeypatch, w, lambda: _streamed(x, budget, w))
    np.testing.assert_array_equal(state_p, state_t)


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
    x[3::7] = -np.abs(x[3::7])  # a zero of either sign at the max: the exact values take 0 + max
    x[3::7, 0] = -0.0
    x[3::7, 1] = 0.0
    w = rng.standard_normal((c, 5))
    for budget in (1, 24, 499):
        _same_as_table_and_reference(monkeypatch, x, budget, w)


@pytest.mark.parametrize("apart", ["1e-9", "ulp", "equal"])
def test_nearly_equal_head_rows(monkeypatch, apart):
    # inverse norms of 1e9, beyond float's range (rows of 1e-25 an ulp apart: 1e40 and more, so the
    # lower bound is bfloat16's largest value) and +inf (equal rows)
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
    lower, table = _pairs_lower_bounds(w)
    if apart == "ulp":
        assert table[0, 1] > FLT_MAX and np.isfinite(table[0, 1])
        assert lower[0, 1] == (2 - 2.0**-7) * 2.0**127  # bfloat16's largest value
    x = rng.standard_normal((800, c))
    x[::3, 1] = x[::3, 0]  # ties between the nearly equal classes
    for budget in (3, 90, 700):
        _same_as_table_and_reference(monkeypatch, x, budget, w, threads=2)


def test_tiny_inverse_norms(monkeypatch):
    # a head with entries near 1e40 (not rescaled: under 2^400): inverse norms near 1e-40, below
    # float's normal range, so the lower bounds are 0 or subnormal
    rng = np.random.default_rng(5)
    c = 6
    w = rng.standard_normal((c, 4)) * 1e40
    lower, _ = _pairs_lower_bounds(w)
    assert (lower[~np.eye(c, dtype=bool)] < FLT_MIN).all()
    x = rng.standard_normal((600, c)) * 1e3
    for budget in (5, 300):
        _same_as_table_and_reference(monkeypatch, x, budget, w)


ISA_SCRIPT = r"""
import sys
import numpy as np
import alscale
from alscale._backend import arrays

arrays.PAIR_CLASSES = @PAIR_CLASSES@

rng = np.random.default_rng(6)
out = {}
for c in (1, 3, 8, 13, 100, 300):
    for dt in (np.float16, np.float32, np.float64):
        x = (rng.normal(size=(700, c)) * 4).astype(dt)
        x[::7] = np.round(x[::7])
        w = rng.normal(size=(c, 5))
        if c > 3:
            w[2] = w[1] + 1e-40
        key = f"{c}-{np.dtype(dt).name}"
        for b in (1, 40, 650):
            out[f"{key}-base-{b}"] = alscale.select_balanced(x, b, weight=w)
        out[key + "-mase"] = alscale.select_boundary(x, 40, weight=w)
        out[key + "-scores"] = alscale.boundary_scores(x, weight=w)
np.savez(sys.argv[1], **out)
"""


def test_every_isa_picks_the_same_rows(tmp_path):
    # the dispatched kernel (AVX-512 where the CPU has it), AVX2 and the baseline, each with the
    # float64 table and with the pairs on demand: the same picks and score bits
    runs = {(isa, mode): _run(tmp_path / f"{isa}-{mode}.npz", isa,
                              ISA_SCRIPT.replace("@PAIR_CLASSES@", "1" if mode == "pairs" else "1 << 30"))
            for isa in (None, "avx2", "base") for mode in ("table", "pairs")}
    want = runs[(None, "table")]
    assert len(want) == 6 * 3 * 5
    for key, got in runs.items():
        assert got.keys() == want.keys(), key
        for name in want:
            assert got[name].tobytes() == want[name].tobytes(), f"{key} {name}"
