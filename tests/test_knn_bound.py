"""The tensor-core kNN graph's error bound and its whole algorithm, emulated on the CPU (issue 12).

This file is the specification of cuda/knn_tc.cu, run where there is no GPU:

* ``round_bf16`` / ``round_tf32`` round float32 operands as the kernel does (bf16 round to
  nearest even, TF32 ``cvt.rna``), on the float32 bits;
* ``cpu_dots`` is csrc/knn.cpp's arithmetic (float32 products, summed over the dimensions in
  order, separate roundings), checked here against ``alscale.knn_graph``'s similarities bit for bit;
* ``gemm_dots`` is the tensor-core GEMM: exact products of the rounded operands, summed in float64
  (ideal accumulation) or in float32 truncated at every step in a shuffled order (the worst
  accumulator csrc/knn_bound.hpp allows for);
* ``two_stage_knn`` is the kernel's algorithm: per-row candidate lists filled tile by tile with
  the running threshold RD(k-th - 2 eps), compacted when full, rows that overflow handed to the
  exact fallback, then the exact float32 re-rank with the CPU's tie rule. It must give
  ``alscale.knn_graph(x, k)`` bit for bit on every input.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alscale
from alscale import _core
from alscale._backend.arrays import unit_rows

F32 = np.float32
PRECISIONS = ("bf16", "tf32")
KINDS = ("gauss", "clustered", "duplicates", "near_ties", "integers", "sparse", "worst_rounding")

# ----------------------------------------------------------------------------- emulation


def round_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), as __float2bfloat16_rn; finite inputs."""
    b = np.ascontiguousarray(a, dtype=F32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(F32)


def round_tf32(a: np.ndarray) -> np.ndarray:
    """float32 -> TF32 (10 stored bits) to nearest, ties away from zero, as cvt.rna.tf32.f32."""
    b = np.ascontiguousarray(a, dtype=F32).view(np.uint32).astype(np.uint64)
    b = (b + 0x1000) & 0xFFFFE000
    return b.astype(np.uint32).view(F32)


ROUND = {"bf16": round_bf16, "tf32": round_tf32}


def cpu_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """csrc/knn.cpp: acc = 0; acc += a_q * b_q for q in order, float32, no FMA. (len(a), len(b))."""
    acc = np.zeros((a.shape[0], b.shape[0]), dtype=F32)
    for q in range(a.shape[1]):
        acc = acc + np.multiply.outer(a[:, q], b[:, q])  # float32 product, then float32 sum
    return acc


def _round_toward_zero(t: np.ndarray) -> np.ndarray:
    f = t.astype(F32)
    over = np.abs(f.astype(np.float64)) > np.abs(t)
    return np.where(over, np.nextafter(f, F32(0)), f)


def gemm_dots(a: np.ndarray, b: np.ndarray, precision: str, accumulate: str, seed: int = 0) -> np.ndarray:
    """The tensor-core similarity: operands rounded to ``precision``, exact products; summed in
    float64 ("ideal") or in float32 rounded toward zero after every addition, over the dimensions
    in a shuffled order ("truncate", the worst accumulator the bound covers)."""
    ra, rb = ROUND[precision](a).astype(np.float64), ROUND[precision](b).astype(np.float64)
    order = np.random.default_rng(seed).permutation(a.shape[1]) if accumulate == "truncate" else range(a.shape[1])
    acc = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for q in order:
        p = np.multiply.outer(ra[:, q], rb[:, q])  # exact: <= 22 significant bits
        acc = acc + p if accumulate == "ideal" else _round_toward_zero(acc + p).astype(np.float64)
    return acc


def threshold(kth: np.ndarray, two_eps: float) -> np.ndarray:
    """kth - two_eps rounded toward -inf in float32 (csrc/knn_bound.hpp knn_candidate_threshold):
    round to nearest, then one float lower where TwoSum says that was above the exact difference."""
    kth = np.asarray(kth, dtype=F32)
    te = F32(two_eps)
    f = kth - te
    bb = f - kth
    err = (kth - (f - bb)) + (-te - bb)
    return np.where(err < 0, np.nextafter(f, F32(-np.inf)), f)


def row_two_eps(unit: np.ndarray, precision: str, bound: str = "row") -> np.ndarray:
    """2 E_i per row as the kernel computes it (csrc/knn_bound.hpp): rho_i >= ||r(a_i) - a_i|| from
    the float64 sum of the exact squared differences, E_i = knn_row_bound(rho_i, max rho); or
    2 eps for every row (bound="global")."""
    n, d = unit.shape
    if bound == "global":
        return np.full(n, 2 * _core.knn_candidate_bound(d, precision), dtype=F32)
    diff = ROUND[precision](unit).astype(np.float64) - unit.astype(np.float64)  # exact
    rho = [_core.knn_rounding_norm(float(ss), d) for ss in (diff * diff).sum(axis=1)]
    top = max(rho)
    return np.array([2 * _core.knn_row_bound(r, top, d, precision) for r in rho], dtype=F32)


def kth_largest(v: np.ndarray, k: int) -> float:
    return float(np.sort(v)[::-1][k - 1])


def exact_rerank(unit: np.ndarray, i: int, cand: np.ndarray, k: int):
    """The kernel's re-rank of row i's candidates: CPU float32 dots, (s desc, row asc), top k."""
    s = cpu_dots(unit[i : i + 1], unit[cand])[0]
    order = np.lexsort((cand, -s))[:k]
    return cand[order], s[order]


def candidate_sets(unit: np.ndarray, k: int, precision: str, shat: np.ndarray, bound: str = "row"):
    """Rows' candidates {j != i: s^_ij >= RD(k-th largest s^ - 2 E_i)} (the one-shot filter; E_i =
    eps with bound="global")."""
    two = row_two_eps(unit, precision, bound)
    sets = []
    for i in range(unit.shape[0]):
        v = np.delete(shat[i], i).astype(F32)
        cols = np.delete(np.arange(unit.shape[0]), i)
        tau = threshold(F32(kth_largest(v, k)), two[i])
        sets.append(cols[v >= tau])
    return sets


def two_stage_knn(unit: np.ndarray, k: int, precision: str, shat: np.ndarray, *, tile: int = 16, cap: int | None = None,
                  bound: str = "row"):
    """cuda/knn_tc.cu's algorithm on the CPU: for each row, the points in tiles of ``tile``; a value
    s^ >= tau joins the row's list while it has room; a full list is compacted (tau = max(tau,
    RD(k-th largest in the list - 2 E_i)), keep s^ >= tau) and the row handed to the exact
    fallback when more than three-quarters of it stays; then the exact re-rank.
    Returns (indices, similarities, rows that fell back)."""
    n = unit.shape[0]
    cap = cap if cap is not None else max(128, -(-4 * k // 32) * 32)
    two = row_two_eps(unit, precision, bound)
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=F32)
    fallback = []
    for i in range(n):
        tau, vals, rows, out = F32(-np.inf), [], [], False
        for j0 in range(0, n, tile):
            cols = np.arange(j0, min(n, j0 + tile))
            cols = cols[cols != i]
            pend = list(zip(shat[i, cols].astype(F32), cols))
            while pend and not out:
                pend = [(v, j) for v, j in pend if v >= tau]
                room = cap - len(vals)
                vals += [v for v, _ in pend[:room]]
                rows += [j for _, j in pend[:room]]
                pend = pend[room:]
                if pend:  # full: compact
                    tau = max(tau, threshold(F32(kth_largest(np.array(vals, dtype=F32), k)), two[i])[()])
                    keep = [t for t in zip(vals, rows) if t[0] >= tau]
                    if len(keep) > cap - cap // 4:
                        out = True
                    vals, rows = [v for v, _ in keep], [j for _, j in keep]
        if out:
            fallback.append(i)
            cand = np.delete(np.arange(n), i)
        else:
            cand = np.array(rows, dtype=np.int64)
        idx[i], sim[i] = exact_rerank(unit, i, cand, k)
    return idx, sim, fallback


# ----------------------------------------------------------------------------- inputs


def points(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        return rng.normal(size=(n, d))
    if kind == "clustered":
        centers = rng.normal(size=(max(1, n // 20), d))
        return centers[rng.integers(0, len(centers), n)] + rng.normal(scale=rng.choice([0.01, 0.05, 0.2]), size=(n, d))
    if kind == "duplicates":  # few distinct rows, and positive multiples of them (same unit row up to rounding)
        base = rng.normal(size=(max(1, n // 8), d))
        return base[rng.integers(0, len(base), n)] * rng.choice([1.0, 1.0, 3.0, 0.37], size=(n, 1))
    if kind == "near_ties":  # every similarity within ~1e-8 of 1: far inside the window, ties galore
        return rng.normal(size=(1, d)) + rng.normal(scale=1e-5, size=(n, d))
    if kind == "integers":  # small integers: many exactly equal similarities
        return rng.integers(-2, 3, size=(n, d)).astype(np.float64) + (np.arange(d) == 0) * 0.5
    if kind == "sparse":
        x = rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.1)
        x[np.arange(n), rng.integers(0, d, n)] = 1.0  # no zero row
        return x
    # worst_rounding: coherent rows (see coherent_rows) with a little noise on top
    rows = coherent_rows(("bf16", "tf32")[seed % 2], d, n)
    return rows * (1 + rng.normal(scale=1e-7, size=(n, d)))


def coherent_rows(precision: str, d: int, n: int) -> np.ndarray:
    """Rows of norm <= 1 whose coordinates all sit just below a rounding midpoint of
    ``precision`` (so every one rounds down, by up to u relatively): in every dot product the
    operand errors add up instead of cancelling. Half the coordinates near 1/sqrt(d) * (1 + u/2),
    the rest chosen so the norm stays <= 1; row r shifts which half is which."""
    bits = 7 if precision == "bf16" else 10  # stored fraction bits

    def below_midpoint(v):
        sp = 2.0 ** (np.floor(np.log2(v)) - bits)
        return np.floor(v / sp) * sp + sp / 2 - sp * 2.0**-12

    c = 1 / np.sqrt(d)
    hi = below_midpoint(c * (1 + 2.0 ** -(bits + 2)))
    lo = below_midpoint(np.sqrt(max(2 / d - hi * hi, 0.25 * c * c)))
    k = np.arange(d)
    x = np.array([np.where((k + r) % 2 == 0, hi, lo) for r in range(n)])
    return x / max(1.0, float(np.sqrt((x * x).sum(axis=1)).max()))


CASES = st.tuples(
    st.sampled_from(KINDS), st.integers(2, 90), st.integers(1, 80), st.integers(1, 12), st.integers(0, 2**32 - 1)
)


def _unit(kind, n, d, seed):
    return unit_rows(np.asarray(points(kind, n, d, seed), dtype=np.float64))


# ----------------------------------------------------------------------------- the bound


def bound_reference(d: int, precision: str) -> Fraction:
    """csrc/knn_bound.hpp's eps in exact rational arithmetic."""
    u = Fraction(1, 256) if precision == "bf16" else Fraction(1, 2048)
    nu = 1 + Fraction(1, 2**20)

    def gamma(n, v):
        return n * v / (1 - n * v)

    return (nu * nu * ((2 * u + u * u) + 2 * (1 + u) ** 2 * gamma(d, Fraction(1, 2**23)) + gamma(d, Fraction(1, 2**24)))
            + 3 * d * Fraction(1, 2**126))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("d", [1, 2, 64, 128, 2048, 2**20])
def test_bound_is_the_formula_rounded_up_to_a_float32(d, precision):
    eps = _core.knn_candidate_bound(d, precision)
    exact = bound_reference(d, precision)
    assert Fraction(eps) >= exact  # an upper bound
    assert float(np.float32(eps)) == eps  # a float32 value
    assert Fraction(float(np.nextafter(F32(eps), F32(0)))) < exact  # the smallest float32 above it


def test_bound_values_and_monotonicity():
    assert 2**-7 < _core.knn_candidate_bound(128, "bf16") < 2**-7 * 1.01
    assert 2**-10 < _core.knn_candidate_bound(128, "tf32") < 2**-10 * 1.1
    for p in PRECISIONS:
        e = [_core.knn_candidate_bound(d, p) for d in (1, 10, 100, 1000, 10_000)]
        assert e == sorted(e) and len(set(e)) == len(e)


@pytest.mark.parametrize(
    "args, error, match",
    [((0, "bf16"), ValueError, r"d must be in \[1, 1048576\], got 0"),
     ((2**20 + 1, "tf32"), ValueError, "d must be in"),
     ((-3, "bf16"), ValueError, "got -3"),
     ((8, "fp16"), ValueError, "precision must be 'bf16' or 'tf32', got 'fp16'"),
     (("8", "bf16"), TypeError, "incompatible function arguments"),
     ((8, 1), TypeError, "incompatible function arguments")],
)
def test_bound_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        _core.knn_candidate_bound(*args)


def test_threshold_rounds_down_exactly():
    rng = np.random.default_rng(5)
    kth = np.concatenate([rng.uniform(-1, 1, 2000), rng.normal(scale=1e-30, size=200), [0.0, -0.0, 1.0, -1.0]])
    kth = kth.astype(F32)
    for p in PRECISIONS:
        te = 2.0 * _core.knn_candidate_bound(64, p)
        t = threshold(kth, te)
        for a, b in zip(kth, t):
            exact = Fraction(float(a)) - Fraction(te)
            assert Fraction(float(b)) <= exact < Fraction(float(np.nextafter(b, F32(np.inf))))


def test_rounding_emulation():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -(1 + 2**-8), 1 + 2**-11, 1 + 3 * 2**-11, 0.0],
                 dtype=F32)
    np.testing.assert_array_equal(round_bf16(x), np.array([1, 1, 1 + 2**-6, 1 + 2**-7, -1, 1, 1, 0], dtype=F32))
    np.testing.assert_array_equal(  # ties away from zero
        round_tf32(x), np.array([1, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8, -(1 + 2**-8), 1 + 2**-10, 1 + 2**-9, 0],
                                dtype=F32))
    torch = pytest.importorskip("torch")
    y = np.random.default_rng(0).normal(size=5000).astype(F32)
    np.testing.assert_array_equal(round_bf16(y), torch.from_numpy(y).to(torch.bfloat16).float().numpy())
    rel = np.abs(round_tf32(y) - y) / np.abs(y)
    assert rel.max() <= 2**-11


@given(CASES)
def test_cpu_emulation_is_the_cpu_kernel(case):
    kind, n, d, k, seed = case
    k = min(k, n - 1)
    x = points(kind, n, d, seed)
    unit = unit_rows(np.asarray(x, dtype=np.float64))
    idx, sim = alscale.knn_graph(x, k)
    dots = cpu_dots(unit, unit)
    np.testing.assert_array_equal(sim, np.take_along_axis(dots, idx, axis=1))  # bit for bit
    for i in range(n):  # and the CPU kernel's order: (s desc, row asc)
        ref, refs = exact_rerank(unit, i, np.delete(np.arange(n), i), k)
        np.testing.assert_array_equal(idx[i], ref)
        np.testing.assert_array_equal(sim[i], refs)


@given(CASES, st.sampled_from(PRECISIONS), st.sampled_from(("ideal", "truncate")))
def test_gemm_similarity_within_the_bound(case, precision, accumulate):
    kind, n, d, _, seed = case
    unit = _unit(kind, n, d, seed)
    s = cpu_dots(unit, unit).astype(np.float64)
    shat = gemm_dots(unit, unit, precision, accumulate, seed)
    eps = _core.knn_candidate_bound(d, precision)
    assert np.abs(shat - s).max() <= eps


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("d", [16, 64, 256])
def test_bound_is_nearly_reached_by_coherent_rounding(precision, d):
    """Adversarial rows (coherent_rows): every coordinate rounds down by a large part of the unit
    roundoff, so the measured error approaches the bound's leading term 2u: the bound holds and
    is not loose by orders of magnitude."""
    unit = coherent_rows(precision, d, 4).astype(F32)
    assert (np.sqrt((unit.astype(np.float64) ** 2).sum(axis=1)) <= 1 + 2.0**-20).all()  # the bound's premise
    s = cpu_dots(unit, unit).astype(np.float64)
    eps = _core.knn_candidate_bound(d, precision)
    for accumulate in ("ideal", "truncate"):
        err = np.abs(gemm_dots(unit, unit, precision, accumulate) - s).max()
        assert 0.4 * eps <= err <= eps, (accumulate, err, eps)


@given(CASES, st.sampled_from(PRECISIONS), st.sampled_from(("ideal", "truncate")))
def test_row_bound_holds_and_never_exceeds_eps(case, precision, accumulate):
    """|s^_ij - s_ij| <= E_i for every pair (E_i from the row's own rounding error), E_i <= eps."""
    kind, n, d, _, seed = case
    unit = _unit(kind, n, d, seed)
    s = cpu_dots(unit, unit).astype(np.float64)
    shat = gemm_dots(unit, unit, precision, accumulate, seed)
    e = row_two_eps(unit, precision) / 2
    assert (np.abs(shat - s) <= e[:, None].astype(np.float64)).all()
    assert (e <= _core.knn_candidate_bound(d, precision)).all()


@given(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=300), st.sampled_from(PRECISIONS))
def test_rounding_norm_is_an_upper_bound(values, precision):
    a = np.array(values, dtype=F32)
    diff = ROUND[precision](a).astype(np.float64) - a.astype(np.float64)
    rho = _core.knn_rounding_norm(float((diff * diff).sum()), len(a))
    exact = sum(Fraction(float(v)) ** 2 for v in diff)
    assert Fraction(rho) ** 2 >= exact and float(np.float32(rho)) == rho


def test_row_bound_arguments_and_values():
    eps = _core.knn_candidate_bound(64, "bf16")
    assert _core.knn_row_bound(0.0, 0.0, 64, "bf16") < 0.01 * eps  # exact operands: accumulation terms only
    u = 2.0**-8
    worst = float(np.float32(u * (1 + 2**-20)))
    assert _core.knn_row_bound(worst, worst, 64, "bf16") == eps  # the worst row: eps itself (capped)
    assert _core.knn_row_bound(float(F32(0.4 * u)), float(F32(0.6 * u)), 64, "bf16") < 0.55 * eps
    for args, match in [((-0.5, 0.1, 8, "bf16"), "need 0 <= rho <= rho_max < 1"),
                        ((0.2, 0.1, 8, "bf16"), "need 0 <= rho <= rho_max < 1"),
                        ((0.1, 0.2, 8, "bf16"), "must be float32 values"),
                        ((0.0, 0.0, 0, "bf16"), "d must be in"),
                        ((0.0, 0.0, 8, "fp8"), "precision must be")]:
        with pytest.raises(ValueError, match=match):
            _core.knn_row_bound(*args)


# ----------------------------------------------------------------------------- the filter


@given(CASES, st.sampled_from(PRECISIONS), st.sampled_from(("ideal", "truncate")), st.sampled_from(("row", "global")))
def test_candidates_contain_the_exact_neighbours(case, precision, accumulate, bound):
    kind, n, d, k, seed = case
    k = min(k, n - 1)
    x = points(kind, n, d, seed)
    unit = unit_rows(np.asarray(x, dtype=np.float64))
    idx, _ = alscale.knn_graph(x, k)
    shat = gemm_dots(unit, unit, precision, accumulate, seed)
    for i, cand in enumerate(candidate_sets(unit, k, precision, shat, bound)):
        assert len(cand) >= k
        assert set(idx[i]) <= set(cand.tolist()), (i, idx[i], cand)


@settings(max_examples=60)
@given(CASES, st.sampled_from(PRECISIONS), st.sampled_from(("ideal", "truncate")), st.sampled_from((4, 16, 64)),
       st.integers(0, 3), st.sampled_from(("row", "global")))
def test_two_stage_algorithm_reproduces_the_cpu_graph(case, precision, accumulate, tile, extra, bound):
    """The kernel's algorithm (tiles, running threshold, compaction, overflow to the fallback) gives
    the CPU's graph bit for bit; small lists (cap = k + 8 + 8 * extra, rounded as the rule
    cap - cap/4 > k needs) force compactions and fallbacks."""
    kind, n, d, k, seed = case
    k = min(k, n - 1)
    x = points(kind, n, d, seed)
    unit = unit_rows(np.asarray(x, dtype=np.float64))
    cap = 4 * (k + 2 + 2 * extra) // 3 + 4
    assert cap - cap // 4 > k
    shat = gemm_dots(unit, unit, precision, accumulate, seed)
    idx, sim, _ = two_stage_knn(unit, k, precision, shat, tile=tile, cap=cap, bound=bound)
    ridx, rsim = alscale.knn_graph(x, k)
    np.testing.assert_array_equal(idx, ridx)
    assert sim.tobytes() == rsim.tobytes()


def test_two_stage_fallback_and_compaction_are_exercised():
    """Duplicate-heavy points overflow small lists (fallback), gaussian ones compact without
    overflowing: both paths run, and both give the CPU graph."""
    x = np.repeat(np.random.default_rng(1).normal(size=(3, 8)), 30, axis=0)
    unit = unit_rows(x)
    shat = gemm_dots(unit, unit, "bf16", "truncate")
    idx, sim, fallback = two_stage_knn(unit, 5, "bf16", shat, tile=8, cap=12)
    assert len(fallback) == len(x)  # every row has 29 exact duplicates in its window
    np.testing.assert_array_equal(idx, alscale.knn_graph(x, 5)[0])

    g = np.random.default_rng(2).normal(size=(150, 32))
    unit = unit_rows(g)
    shat = gemm_dots(unit, unit, "tf32", "ideal")
    idx, sim, fallback = two_stage_knn(unit, 3, "tf32", shat, tile=8, cap=8)
    assert len(fallback) < len(g) // 4
    ridx, rsim = alscale.knn_graph(g, 3)
    np.testing.assert_array_equal(idx, ridx)
    assert sim.tobytes() == rsim.tobytes()


def test_window_sizes_on_random_points():
    """What the bound costs: candidates per row for random 64-d points, k = 10 (recorded in
    BENCHMARKS.md from a larger run); here only that TF32's window is the tighter one."""
    x = np.random.default_rng(3).normal(size=(400, 64))
    unit = unit_rows(x)
    sizes = {}
    for p in PRECISIONS:
        shat = gemm_dots(unit, unit, p, "ideal")
        for b in ("row", "global"):
            sizes[p, b] = np.mean([len(c) for c in candidate_sets(unit, 10, p, shat, b)])
    assert 10 <= sizes["tf32", "row"] <= sizes["bf16", "row"] < sizes["bf16", "global"]
    assert sizes["tf32", "row"] <= sizes["tf32", "global"]
