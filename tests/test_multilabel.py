"""Multi-label uncertainty (issue 20, part 1): ``multilabel=True`` / ``reduction=`` on the score
and selection functions. The kernel's scores must equal tests/reference.py's multilabel_scores
bit for bit (every dtype, layout, thread count, ISA and chunking), so the selections are the
reference's top k exactly — ties, exclusions and tiny shapes included; the reference itself is
checked against the textbook float64 formulas for accuracy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import (SEEDS, THREADS, assert_same_bits, assert_same_indices, budgets, examples, excludes, logits,
                        make_values, result_numpy, scores_numpy)

KINDS = ("margin", "confidence", "entropy")
REDUCTIONS = ("mean", "min")
SELECT = {"margin": alscale.select_margin, "confidence": alscale.select_confidence, "entropy": alscale.select_entropy}
SCORES = {"margin": alscale.margin_scores, "confidence": alscale.confidence_scores, "entropy": alscale.entropy_scores}


def f64_input(case) -> bool:
    return case.dtype == "float64"


# --------------------------------------------------------------------------- scores


@given(case=logits(), kind=st.sampled_from(KINDS), reduction=st.sampled_from(REDUCTIONS))
def test_scores_match_reference_bit_for_bit(case, kind, reduction):
    expected = ref.multilabel_scores(case.x64, kind, reduction, float64=f64_input(case))
    for t in THREADS:
        got = scores_numpy(SCORES[kind](case.x, multilabel=True, reduction=reduction, num_threads=t), case.x, case.n)
        assert_same_bits(got, expected, f"({kind}, {reduction}, num_threads={t})")


@given(case=logits(dtypes=("float32", "float64")), kind=st.sampled_from(KINDS),
       reduction=st.sampled_from(REDUCTIONS))
def test_reference_is_accurate(case, kind, reduction):
    """The documented arithmetic is the textbook formula to a few ulp of the compute type."""
    got = ref.multilabel_scores(case.x64, kind, reduction, float64=f64_input(case))
    truth = ref.multilabel_scores_float64(case.x64, kind, reduction)
    eps = np.finfo(np.float64 if f64_input(case) else np.float32).eps
    np.testing.assert_allclose(got, truth, rtol=8 * eps, atol=8 * eps * (0.7 if kind == "entropy" else 1.0))


def test_textbook_values():
    z = np.array([[0.0, 0.0], [2.0, -2.0], [0.0, 30.0]])
    np.testing.assert_allclose(alscale.margin_scores(z, multilabel=True), [0.0, np.tanh(1.0), np.tanh(15.0) / 2],
                               rtol=1e-15)
    np.testing.assert_allclose(alscale.confidence_scores(z, multilabel=True, reduction="min"),
                               [0.5, 1 / (1 + np.exp(-2.0)), 0.5], rtol=1e-15)

    def h(v):
        p = 1 / (1 + np.exp(-v))
        return -p * np.log(p) - (1 - p) * np.log1p(-p)

    h2 = h(2.0)
    np.testing.assert_allclose(alscale.entropy_scores(z, multilabel=True), [np.log(2), h2, (np.log(2) + h(30.0)) / 2],
                               rtol=1e-14)
    # "min" is the most uncertain class: the largest entropy, the smallest margin
    np.testing.assert_allclose(alscale.entropy_scores(z, multilabel=True, reduction="min"), [np.log(2), h2, np.log(2)],
                               rtol=1e-14)
    np.testing.assert_allclose(alscale.margin_scores(z, multilabel=True, reduction="min"), [0.0, np.tanh(1.0), 0.0])


def test_zero_logits_give_positive_zero_margins():
    """z = ±0 gives margin +0 (not -0) on every path, so scores compare bit for bit."""
    z = np.array([[0.0, -0.0], [-0.0, -0.0]])
    for dtype in ("float16", "float32", "float64"):
        for reduction in REDUCTIONS:
            got = alscale.margin_scores(z.astype(dtype), multilabel=True, reduction=reduction)
            assert not np.signbit(got).any(), got


def test_multilabel_is_not_softmax():
    z = np.array([[3.0, 3.0, -4.0]])
    assert alscale.margin_scores(z)[0] == 0.0  # softmax: two tied classes
    assert alscale.margin_scores(z, multilabel=True)[0] > 0.9  # each sigmoid is confident


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_stable_for_huge_logits(dtype, kind):
    big = 6e4 if dtype == "float16" else 1e4
    z = np.array([[big, -big], [big, 0.0], [-big, -big], [80.0, -80.0], [1e-30, -1e-30], [-0.0, 0.0]]).astype(dtype)
    for reduction in REDUCTIONS:
        got = SCORES[kind](z, multilabel=True, reduction=reduction)
        assert np.isfinite(got).all(), got
        assert_same_bits(got, ref.multilabel_scores(z.astype(np.float64), kind, reduction, float64=dtype == "float64"))
        eps = np.finfo(np.float64 if dtype == "float64" else np.float32).eps
        np.testing.assert_allclose(got, ref.multilabel_scores_float64(z, kind, reduction), rtol=4 * eps, atol=4 * eps)
    confident = SCORES[kind](z[:1], multilabel=True)[0]
    assert confident == (0.0 if kind == "entropy" else 1.0)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_logits_are_refused_naming_the_row(bad, kind):
    z = np.zeros((40, 11), dtype=np.float32)
    z[23, 9] = bad
    with pytest.raises(ValueError, match="NaN or inf at row 23"):
        SCORES[kind](z, multilabel=True)
    with pytest.raises(ValueError, match="NaN or inf at row 23"):
        SELECT[kind](z, 3, multilabel=True, reduction="min")
    with pytest.raises(ValueError, match="NaN or inf at row 23"):  # the pool row, not the chunk's
        SELECT[kind](alscale.chunked(z, 7), 3, multilabel=True)
    z[23, 9] = 0  # a finite neighbour of the refused value is fine
    SELECT[kind](z, 3, multilabel=True)


def test_one_class_and_one_row():
    z = np.array([[1.5]])
    for kind in KINDS:
        for reduction in REDUCTIONS:
            got = SCORES[kind](z, multilabel=True, reduction=reduction)
            assert_same_bits(got, ref.multilabel_scores(z, kind, reduction))
            assert SELECT[kind](z, 5, multilabel=True, reduction=reduction).tolist() == [0]
    # with one class "mean" and "min" are the same number
    x = np.random.default_rng(0).normal(size=(50, 1))
    for kind in KINDS:
        assert_same_bits(SCORES[kind](x, multilabel=True), SCORES[kind](x, multilabel=True, reduction="min"))


def test_empty_pool_is_refused_as_today():
    for kind in KINDS:
        with pytest.raises(ValueError, match="no rows"):
            SELECT[kind](np.zeros((0, 4)), 1, multilabel=True)
        with pytest.raises(ValueError, match="no rows"):
            SCORES[kind](np.zeros((0, 4)), multilabel=True)
    with pytest.raises(ValueError, match="no classes"):
        alscale.margin_scores(np.zeros((3, 0)), multilabel=True)


def test_baseline_avx2_and_avx512_kernels_are_bit_identical(tmp_path):
    """The default (AVX-512 where the CPU has it), ALSCALE_ISA=avx2 and ALSCALE_ISA=base kernels."""
    script = r"""
import sys
import numpy as np
import alscale
rng = np.random.default_rng(7)
out = {}
for c in (1, 3, 8, 13, 16, 23, 100):
    for dt in (np.float16, np.float32, np.float64):
        x = (rng.normal(size=(300, c)) * 4).astype(dt)
        x[::7] = np.round(x[::7])
        for kind in ("margin", "confidence", "entropy"):
            for red in ("mean", "min"):
                out[f"{c}-{np.dtype(dt).name}-{kind}-{red}"] = getattr(alscale, kind + "_scores")(
                    x, multilabel=True, reduction=red)
np.savez(sys.argv[1], **out)
"""
    results = []
    for isa in (None, "avx2", "base"):
        env = dict(os.environ)
        env.pop("ALSCALE_ISA", None)
        if isa:
            env["ALSCALE_ISA"] = isa
        path = tmp_path / f"{isa}.npz"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env)
        with np.load(path) as f:
            results.append({k: f[k] for k in f.files})
    assert results[0].keys() == results[1].keys() == results[2].keys() and len(results[0]) == 126
    for key in results[0]:
        assert_same_bits(results[1][key], results[0][key], key + " (avx2 vs default)")
        assert_same_bits(results[2][key], results[0][key], key + " (base vs default)")


# --------------------------------------------------------------------------- selection


@given(case=logits(), kind=st.sampled_from(KINDS), reduction=st.sampled_from(REDUCTIONS), data=st.data())
def test_selection_matches_reference(case, kind, reduction, data):
    exclude = data.draw(excludes(case.n, case.kind))
    budget = data.draw(budgets(case.n))
    expected = ref.select_multilabel(case.x64, budget, kind, reduction, exclude, float64=f64_input(case))
    for t in THREADS:
        got = result_numpy(SELECT[kind](case.x, budget, exclude=exclude, multilabel=True, reduction=reduction,
                                        num_threads=t), case.x)
        assert_same_indices(got, expected, f"({kind}, {reduction}, num_threads={t})")


@examples(0.5)
@given(case=logits(kinds=("numpy",), modes=("integer", "halves", "constant", "duplicate_rows")),
       kind=st.sampled_from(KINDS), reduction=st.sampled_from(REDUCTIONS), data=st.data())
def test_ties_go_to_the_smaller_row(case, kind, reduction, data):
    budget = data.draw(st.integers(0, case.n + 2))
    got = SELECT[kind](case.x, budget, multilabel=True, reduction=reduction)
    scores = SCORES[kind](case.x, multilabel=True, reduction=reduction)
    sign = -1.0 if kind == "entropy" else 1.0
    order = np.lexsort((np.arange(case.n), sign * scores))[:budget]
    assert_same_indices(got, order)


def _chunks(x: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = np.sort(rng.integers(0, x.shape[0] + 1, int(rng.integers(0, 5))))
    return [x[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, x.shape[0]])]


@examples(0.5)
@given(case=logits(kinds=("numpy",)), kind=st.sampled_from(KINDS), reduction=st.sampled_from(REDUCTIONS),
       seed=SEEDS, data=st.data())
def test_chunkings_give_the_same_scores_and_selection(case, kind, reduction, seed, data):
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(case.x)
    exclude = data.draw(excludes(case.n))
    budget = data.draw(budgets(case.n))
    whole = SELECT[kind](x, budget, exclude=exclude, multilabel=True, reduction=reduction)
    assert_same_indices(whole, ref.select_multilabel(case.x64, budget, kind, reduction, exclude,
                                                     float64=f64_input(case)))
    scores = SCORES[kind](x, multilabel=True, reduction=reduction)
    mask = ref.exclude_mask(exclude, case.n)  # a one-shot iterator's length is unknown: no negative indices
    for pool, ex in ((_chunks(x, rng), exclude), (iter(_chunks(x, rng)), mask),
                     (alscale.chunked(x, int(rng.integers(1, case.n + 2))), exclude)):
        got = SELECT[kind](pool, budget, exclude=ex, multilabel=True, reduction=reduction,
                           num_threads=int(rng.integers(0, 3)))
        assert_same_indices(got, whole, f"chunked {type(pool).__name__}")
    assert_same_bits(SCORES[kind](_chunks(x, rng), multilabel=True, reduction=reduction), scores, "chunked scores")
    # row_ids without a group: a local pool named by global ids (ties to the smaller id)
    ids = rng.permutation(case.n).astype(np.int64) + 1000
    got = SELECT[kind](x, budget, exclude=exclude, row_ids=ids, multilabel=True, reduction=reduction)
    s = ref.multilabel_scores(case.x64, kind, reduction, float64=f64_input(case))
    avail = np.flatnonzero(~mask)
    order = avail[np.lexsort((ids[avail], (-s if kind == "entropy" else s)[avail]))][:budget]
    assert_same_indices(got, ids[order], "row_ids")


def test_memmap(tmp_path):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3000, 37)) * 3).astype(np.float16)
    path = tmp_path / "logits.npy"
    np.save(path, x)
    m = np.load(path, mmap_mode="r")
    for kind in KINDS:
        for reduction in REDUCTIONS:
            expected = ref.select_multilabel(x, 200, kind, reduction, exclude=np.arange(0, 3000, 3))
            got = SELECT[kind](m, 200, exclude=np.arange(0, 3000, 3), multilabel=True, reduction=reduction)
            assert_same_indices(got, expected, f"memmap {kind} {reduction}")
            assert_same_bits(SCORES[kind](m, multilabel=True, reduction=reduction),
                             ref.multilabel_scores(x, kind, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logits_from_embeddings(reduction):
    """C far wider than the chunk's rows: the logits exist one chunk at a time."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(700, 16)).astype(np.float32)
    w = rng.normal(size=(2000, 16)).astype(np.float32)
    b = rng.normal(size=2000).astype(np.float32) - 3.0
    pool = alscale.logits_from_embeddings(z, w, b, chunk_rows=97)
    full = np.concatenate(list(pool))  # the same float32 logits, all at once (for the check)
    for kind in KINDS:
        expected = ref.select_multilabel(full, 50, kind, reduction, exclude=np.arange(10))
        got = SELECT[kind](pool, 50, exclude=np.arange(10), multilabel=True, reduction=reduction)
        assert_same_indices(got, expected, kind)
        assert_same_bits(SCORES[kind](pool, multilabel=True, reduction=reduction),
                         ref.multilabel_scores(full, kind, reduction))
    tz = torch.from_numpy(z)
    got = alscale.select_margin(alscale.logits_from_embeddings(tz, w, b, chunk_rows=128), 50, multilabel=True,
                                reduction=reduction)
    assert isinstance(got, torch.Tensor)
    assert_same_indices(got.numpy(), ref.select_multilabel(full, 50, "margin", reduction))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_cpu_tensors_in_torch_out(dtype):
    rng = np.random.default_rng(5)
    t = torch.tensor(rng.normal(size=(400, 19)) * 3, dtype=dtype)
    x64 = t.to(torch.float64).numpy()
    as_f64 = dtype == torch.float64
    for kind in KINDS:
        for reduction in REDUCTIONS:
            got = SCORES[kind](t[:, 1:], multilabel=True, reduction=reduction)  # a strided view
            assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
            assert_same_bits(got.numpy(), ref.multilabel_scores(x64[:, 1:], kind, reduction, float64=as_f64))
            sel = SELECT[kind](t, 30, exclude=torch.arange(5), multilabel=True, reduction=reduction)
            assert isinstance(sel, torch.Tensor) and sel.dtype == torch.int64
            assert_same_indices(sel.numpy(), ref.select_multilabel(x64, 30, kind, reduction, np.arange(5),
                                                                   float64=as_f64))


# --------------------------------------------------------------------------- Cluster-Margin


@examples(0.4)
@given(case=logits(kinds=("numpy",), max_n=600, max_c=40), reduction=st.sampled_from(REDUCTIONS), seed=SEEDS,
       data=st.data())
def test_cluster_margin_uses_multilabel_margins(case, reduction, seed, data):
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, int(rng.integers(1, 12)), case.n)
    exclude = data.draw(excludes(case.n))
    budget = data.draw(budgets(case.n))
    km = None if rng.random() < 0.5 else budget * int(rng.integers(1, 4))
    scores = ref.multilabel_scores(case.x64, "margin", reduction, float64=f64_input(case))
    expected = ref.select_cluster_margin(scores, clusters, budget, seed, km, exclude)
    for pool in (case.x, _chunks(np.ascontiguousarray(case.x), rng)):
        got = alscale.select_cluster_margin(pool, clusters, budget, candidates=km, exclude=exclude, seed=seed,
                                            multilabel=True, reduction=reduction)
        assert_same_indices(got, expected)


# --------------------------------------------------------------------------- sharded


@pytest.fixture(scope="module")
def group():
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    import ranks

    pool = ranks.Ranks(3)
    yield pool
    pool.close()


@examples(0.1, minimum=8)
@given(seed=SEEDS, n=st.integers(1, 300), c=st.integers(1, 20), kind=st.sampled_from(KINDS),
       reduction=st.sampled_from(REDUCTIONS), budget=st.integers(0, 320), chunk=st.booleans())
def test_sharded_equals_one_process(group, seed, n, c, kind, reduction, budget, chunk):
    import ranks

    rng = np.random.default_rng(seed)
    x = make_values(rng, n, c, str(rng.choice(["normal", "integer", "wide"]))).astype(np.float32)
    exclude = rng.random(n) < 0.3
    owner = rng.integers(0, 3, n)
    args = []
    for r in range(3):
        ids = rng.permutation(np.flatnonzero(owner == r)).astype(np.int64)
        local = x[ids]
        if chunk and ids.size:
            local = _chunks(local, rng)
        args.append((f"select_{kind}", local, budget,
                     {"row_ids": ids, "exclude": exclude[ids], "multilabel": True, "reduction": reduction}))
    out = group.run(ranks.select, args)
    expected = ref.select_multilabel(x, budget, kind, reduction, exclude)
    for r in range(3):
        assert_same_indices(out[r], expected, f"rank {r}")


def test_sharded_cluster_margin_and_refusals(group):
    import ranks

    rng = np.random.default_rng(9)
    x = rng.normal(size=(240, 6)).astype(np.float32) * 3
    clusters = rng.integers(0, 7, 240)
    ids = [np.arange(r, 240, 3) for r in range(3)]
    args = [(x[i], clusters[i], 20, {"row_ids": i, "seed": 4, "multilabel": True, "reduction": "min"}) for i in ids]
    out = group.run(ranks.select_clusters, args)
    expected = ref.select_cluster_margin(ref.multilabel_scores(x, "margin", "min"), clusters, 20, 4)
    for r in range(3):
        assert_same_indices(out[r], expected, f"rank {r}")
    # a bad reduction on one rank fails every rank (no rank left waiting)
    args[1] = (x[ids[1]], clusters[ids[1]], 20, {"row_ids": ids[1], "seed": 4, "multilabel": True,
                                                 "reduction": "max"})
    with pytest.raises(ranks.RankError) as info:
        group.run(ranks.select_clusters, args)
    assert any(kind == "ValueError" and "reduction" in msg for _, kind, msg in info.value.args[0])
    with pytest.raises(ranks.RankError):
        group.run(ranks.select, [("select_balanced", x[i], 10, {"row_ids": i, "multilabel": True}) for i in ids])


# --------------------------------------------------------------------------- API errors


@pytest.mark.parametrize("kind", KINDS)
def test_bad_reduction_is_named(kind):
    z = np.zeros((4, 3))
    for fn in (SCORES[kind], lambda x, **kw: SELECT[kind](x, 2, **kw)):
        with pytest.raises(ValueError, match="'max'"):
            fn(z, multilabel=True, reduction="max")
        with pytest.raises(ValueError, match="reduction"):
            fn(z, multilabel=True, reduction=None)
        for given_reduction in ("min", "mean"):  # reduction without multilabel=True
            with pytest.raises(ValueError, match="multilabel=True"):
                fn(z, reduction=given_reduction)
        with pytest.raises(TypeError, match="multilabel"):
            fn(z, multilabel="yes")
    with pytest.raises(ValueError, match="'median'"):
        alscale.select_cluster_margin(z, np.zeros(4, np.int64), 1, multilabel=True, reduction="median")
    with pytest.raises(ValueError, match="multilabel=True"):
        alscale.select_cluster_margin(z, np.zeros(4, np.int64), 1, reduction="min")


def test_default_reduction_is_mean():
    z = np.random.default_rng(1).normal(size=(30, 9))
    for kind in KINDS:
        assert_same_bits(SCORES[kind](z, multilabel=True), SCORES[kind](z, multilabel=True, reduction="mean"))
    # single-label calls are unchanged
    assert_same_bits(alscale.margin_scores(z), alscale.margin_scores(z, multilabel=False))


def test_base_and_mase_refuse_multilabel():
    z = np.random.default_rng(2).normal(size=(20, 4))
    for fn in (alscale.select_balanced, alscale.select_boundary):
        with pytest.raises(ValueError, match="one softmax"):
            fn(z, 3, multilabel=True)
        with pytest.raises(ValueError, match="one softmax"):
            fn(alscale.chunked(z, 5), 3, multilabel=True)
        fn(z, 3, multilabel=False)
    with pytest.raises(ValueError, match="one softmax"):
        alscale.BalancedSelector(4, 3, multilabel=True)


class _FakeDeviceArray:
    """Looks like a CUDA array (alscale dispatches on __cuda_array_interface__)."""

    __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f4", "data": (1, True), "version": 3}


def test_device_arrays_are_not_built_yet():
    for kind in KINDS:
        with pytest.raises(NotImplementedError, match=r"logits\.cpu\(\)"):
            SCORES[kind](_FakeDeviceArray(), multilabel=True)
        with pytest.raises(NotImplementedError, match="not built yet"):
            SELECT[kind](_FakeDeviceArray(), 2, multilabel=True, reduction="min")
    with pytest.raises(NotImplementedError, match="not built yet"):
        alscale.select_cluster_margin(_FakeDeviceArray(), np.zeros(4, np.int64), 1, multilabel=True)
