"""The Bayesian family (alscale.bayesian, csrc/bayes.cpp) against plain numpy references written
from the papers, and against baal's implementations where baal is installed.

- BALD = H[q] - mean_t H[p_t] and the MC-averaged margin / confidence / entropy of the mean
  probabilities q: float64 reference, tolerance 1e-12 (float64 samples) or 2e-5 (float32, whose
  softmax and sums are float32 like the rest of the library);
- selections are the exact top-k of alscale's own scores (ties to the smaller row) and equal the
  float64 reference's where its scores are separated by more than the tolerance;
- an iterable over T, a (T, N, C) array and the MCScores state give the same bits, on any
  thread count;
- select_power equals a numpy Gumbel top-k with the same generator, draw for draw;
- BatchBALD equals a brute-force reference (every label configuration enumerated) while the
  configurations fit, and its sampled estimate approaches the exact joint entropy.
"""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import alscale
from alscale import _core
from hypotheses import SEEDS, assert_same_indices, examples

# --------------------------------------------------------------------------- references


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log p over the last axis, 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)


def same_samples(x: np.ndarray) -> np.ndarray:
    """(N,) bool: every sample of the row equals the first, bit for bit (-0 and +0 differ)."""
    return ((x == x[:1]) & (np.signbit(x) == np.signbit(x[:1]))).all(axis=(0, 2))


def reference_scores(samples: np.ndarray, probabilities: bool = False) -> dict:
    """The (T, N, C) samples' scores in float64, straight from the definitions; BALD is exactly 0
    for a row whose samples all hold the same values (they agree: no disagreement to measure)."""
    x = np.asarray(samples, dtype=np.float64)
    p = x if probabilities else softmax(samples)
    q = p.mean(axis=0)
    s = np.sort(q, axis=1)
    second = s[:, -2] if q.shape[1] > 1 else np.zeros(q.shape[0])
    mi = entropy(q) - entropy(p).mean(axis=0)
    mi[same_samples(x)] = 0.0
    return {"bald": np.maximum(mi, 0.0), "margin": s[:, -1] - second, "confidence": s[:, -1], "entropy": entropy(q),
            "expected_entropy": entropy(p).mean(axis=0)}


def topk_largest(scores: np.ndarray, k: int, exclude=None) -> np.ndarray:
    rows = np.arange(scores.shape[0])
    if exclude is not None:
        rows = rows[~np.isin(rows, exclude)]
    order = rows[np.argsort(-scores[rows], kind="stable")]
    return order[:k]


def joint_entropy_exact(p: np.ndarray, batch: list) -> float:
    """H(y_b for b in batch) by enumerating every label configuration; p is (N, T, C)."""
    t, c = p.shape[1], p.shape[2]
    total = 0.0
    for labels in itertools.product(range(c), repeat=len(batch)):
        joint = np.ones(t)
        for b, y in zip(batch, labels):
            joint = joint * p[b, :, y]
        v = joint.mean()
        if v > 0:
            total -= v * np.log(v)
    return total


def batchbald_reference(p: np.ndarray, budget: int):
    """Greedy BatchBALD with exact joint entropies: (picks, smallest gap between the best and
    the second best score over the steps). p is (N, T, C) probabilities."""
    n = p.shape[0]
    expected = entropy(p).mean(axis=1)
    picks, gap = [], np.inf
    for _ in range(min(budget, n)):
        score = np.array([joint_entropy_exact(p, picks + [i]) - expected[i] if i not in picks else -np.inf
                          for i in range(n)])
        best = int(np.argmax(score))
        rest = np.delete(score, best)
        if rest.size and np.isfinite(rest.max()):
            gap = min(gap, score[best] - rest.max())
        picks.append(best)
    return np.array(picks, dtype=np.int64), gap


# --------------------------------------------------------------------------- inputs

KINDS = ("bald", "margin", "confidence", "entropy")
SCORE_FUNCTIONS = {"bald": alscale.bald_scores, "margin": alscale.mc_margin_scores,
                   "confidence": alscale.mc_confidence_scores, "entropy": alscale.mc_entropy_scores}


@st.composite
def mc_samples(draw, max_t: int = 6, max_n: int = 300, max_c: int = 20):
    """(samples as given, their float64 values, probabilities flag, tolerance)."""
    t = draw(st.integers(1, max_t), label="T")
    n = draw(st.integers(1, max_n), label="N")
    c = draw(st.integers(1, max_c), label="C")
    dtype = draw(st.sampled_from(["float32", "float64"]), label="dtype")
    mode = draw(st.sampled_from(["normal", "wide", "ties", "constant", "peaked"]), label="mode")
    probabilities = draw(st.booleans(), label="probabilities")
    rng = np.random.default_rng(draw(SEEDS, label="seed"))
    if mode == "normal":
        x = rng.standard_normal((t, n, c)) * rng.choice([0.3, 1.0, 3.0])
    elif mode == "wide":
        x = rng.uniform(-30, 30, (t, n, c))
    elif mode == "ties":
        x = rng.integers(-2, 3, (t, n, c)).astype(np.float64)
    elif mode == "constant":
        x = np.full((t, n, c), float(rng.integers(-3, 4)))
    else:
        x = rng.standard_normal((t, n, c))
        x[:, np.arange(n), rng.integers(0, c, n)] += 10.0
    if probabilities:
        x = softmax(x)
    x = x.astype(dtype)
    return x, x.astype(np.float64), probabilities, (1e-12 if dtype == "float64" else 2e-5)


# --------------------------------------------------------------------------- scores


@given(case=mc_samples())
def test_scores_match_float64_reference(case):
    x, x64, probabilities, tol = case
    expected = reference_scores(x64, probabilities)
    for kind in KINDS:
        got = SCORE_FUNCTIONS[kind](x, probabilities=probabilities, num_threads=2)
        assert got.dtype == np.float64 and got.shape == (x.shape[1],)
        np.testing.assert_allclose(got, expected[kind], rtol=0, atol=tol * max(1.0, np.log(x.shape[2])),
                                   err_msg=f"{kind} against the float64 reference")
        assert (alscale.bald_scores(x, probabilities=probabilities) >= 0).all()
    same = same_samples(x64)  # rows whose samples agree: BALD exactly 0, as the reference
    assert (alscale.bald_scores(x, probabilities=probabilities)[same] == 0).all()


@given(case=mc_samples(max_n=200))
def test_iterable_state_and_array_give_the_same_bits(case):
    x, _, probabilities, _ = case
    acc = alscale.MCScores(probabilities=probabilities, num_threads=1)
    for sample in x:
        acc.update(sample)
    for kind in KINDS:
        fused = {th: SCORE_FUNCTIONS[kind](x, probabilities=probabilities, num_threads=th) for th in (1, 2, 3)}
        streamed = SCORE_FUNCTIONS[kind](iter(list(x)), probabilities=probabilities, num_threads=2)
        for th in (2, 3):
            assert fused[th].tobytes() == fused[1].tobytes(), f"{kind}: num_threads={th} changes the bits"
        assert streamed.tobytes() == fused[1].tobytes(), f"{kind}: a generator over T differs from the array"
        assert acc.scores(kind).tobytes() == fused[1].tobytes(), f"{kind}: MCScores differs from the array"


def test_thread_count_independence_on_a_large_pool():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 20_000, 17)) * 2).astype(np.float32)
    out = [alscale.bald_scores(x, num_threads=th).tobytes() for th in (1, 2, 4, 7)]
    assert len(set(out)) == 1
    out = [alscale.bald_scores(list(x), num_threads=th).tobytes() for th in (1, 2, 4, 7)]
    assert len(set(out)) == 1 and out[0] == alscale.bald_scores(x).tobytes()


def _forms(x: np.ndarray):
    """The same (T, N, C) samples as the array, a list, a generator, and (non-contiguous) every
    sample as a strided view of a wider array: the kernel's paths (the row read alongside the
    previous one's exp pass, the state, rows copied by a reader) must agree bit for bit."""
    wide = np.zeros(x.shape[:2] + (2 * x.shape[2],), dtype=x.dtype)
    wide[:, :, ::2] = x
    return {"array": x, "list": list(x), "generator": iter(list(x)), "strided": wide[:, :, ::2],
            "strided list": list(wide[:, :, ::2])}


@pytest.mark.parametrize("seed", range(3))
def test_logits_kernel_on_awkward_shapes(seed):
    """C around the 16-value blocks and 4-block steps of the logits kernel (1, 2, 15, 16, 17, 63,
    64, 65, 1000), T = 1, 2, 3, N from 1, ties, +-0 maxima and a row whose range overflows float32
    (x - max is -inf, clamped): the float64 reference within the tolerance, every form and thread
    count bit for bit alike, BALD exactly 0 where the samples agree."""
    rng = np.random.default_rng(100 + seed)
    for c in (1, 2, 15, 16, 17, 63, 64, 65, 1000):
        for t in (1, 2, 3):
            n = int(rng.choice([1, 2, 5, 70]))
            for dtype in ("float32", "float64"):
                x = (rng.standard_normal((t, n, c)) * 3).astype(dtype)
                x[:, ::3] = np.round(x[:, ::3])  # ties
                x[:, 1::4] = 0.0
                x[-1, 1::4, 0] = -0.0  # a maximum of -0 (other samples: +0)
                if n > 2:
                    big = np.finfo(dtype).max
                    x[:, 2, :] = np.where(rng.random((t, c)) < 0.5, big, -big)  # gaps overflow to -inf
                    x[0, 2, 0] = big
                with np.errstate(over="ignore"):  # the overflowing gaps: exp(-inf) = 0
                    expected = reference_scores(x.astype(np.float64))
                tol = (1e-12 if dtype == "float64" else 2e-5) * max(1.0, np.log(c))
                for kind in KINDS:
                    f = SCORE_FUNCTIONS[kind]
                    got = f(x, num_threads=1)
                    np.testing.assert_allclose(got, expected[kind], rtol=0, atol=tol,
                                               err_msg=f"{kind} C={c} T={t} N={n} {dtype}")
                    for th in (1, 2, 3):
                        for name, form in _forms(x).items():
                            assert f(form, num_threads=th).tobytes() == got.tobytes(), (kind, name, th, c, t, n)
                    acc = alscale.MCScores(num_threads=2)
                    for sample in x:
                        acc.update(sample)
                    assert acc.scores(kind).tobytes() == got.tobytes(), (kind, c, t, n)
                bald = alscale.bald_scores(x)
                assert (bald[same_samples(x.astype(np.float64))] == 0).all() and (bald >= 0).all()


@pytest.mark.parametrize("c", [5, 37, 1000])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_anywhere_in_a_row_is_found(c, value):
    """A NaN or inf at the first value, inside a 16-value block, in the last (partial) block, in
    the first, a middle or the last sample and row: named by sample and row from every form,
    whether the row's maximum came from its own pass or from the previous row's."""
    rng = np.random.default_rng(c)
    for t, i in ((0, 0), (1, 1), (2, 63), (3, 129), (3, 0)):
        for at in sorted({0, min(16, c - 1), c // 2, c - 1}):
            x = rng.standard_normal((4, 130, c)).astype(np.float32)
            x[t, i, at] = value
            msg = rf"samples\[{t}\] row {i} contains NaN or inf"
            for th in (1, 2):
                for name, form in _forms(x).items():
                    with pytest.raises(ValueError, match=msg):
                        alscale.bald_scores(form, num_threads=th)


def test_torch_samples_and_layouts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 50, 6))
    expected = alscale.bald_scores(x)
    t = torch.from_numpy(x)
    got = alscale.bald_scores(t)
    assert isinstance(got, torch.Tensor) and got.numpy().tobytes() == expected.tobytes()
    assert alscale.bald_scores([t[i] for i in range(3)]).numpy().tobytes() == expected.tobytes()
    # strided views (every other class of a wider array, a Fortran-ordered sample) read in place
    wide = np.zeros((3, 50, 12))
    wide[:, :, ::2] = x
    assert alscale.bald_scores(wide[:, :, ::2]).tobytes() == expected.tobytes()
    assert alscale.bald_scores([np.asfortranarray(s) for s in x]).tobytes() == expected.tobytes()
    picks = alscale.select_bald(t, 5)
    assert isinstance(picks, torch.Tensor) and picks.dtype == torch.int64
    # float16 / bfloat16 samples compute in float32 like the rest of the library
    half = alscale.bald_scores(t.to(torch.bfloat16))
    np.testing.assert_allclose(half.numpy(), reference_scores(t.to(torch.bfloat16).double().numpy())["bald"],
                               atol=2e-5)
    np.testing.assert_allclose(alscale.bald_scores(x.astype(np.float16)),
                               reference_scores(x.astype(np.float16).astype(np.float64))["bald"], atol=2e-5)


def test_one_sample_and_one_class():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 40, 5))
    assert np.abs(alscale.bald_scores(x)).max() < 1e-15  # T = 1: no disagreement
    assert (alscale.bald_scores(x) == 0).all()  # exactly: the tie rule holds
    assert (alscale.bald_scores(softmax(x), probabilities=True) == 0).all()
    np.testing.assert_allclose(alscale.mc_margin_scores(x), alscale.margin_scores(x[0]), atol=1e-15)
    np.testing.assert_allclose(alscale.mc_entropy_scores(x), alscale.entropy_scores(x[0]), atol=1e-14)
    one = rng.standard_normal((4, 7, 1))
    assert (alscale.bald_scores(one) == 0).all() and (alscale.mc_entropy_scores(one) == 0).all()
    assert (alscale.mc_margin_scores(one) == 1).all() and (alscale.mc_confidence_scores(one) == 1).all()


def test_known_values():
    # two confident samples that disagree: q = (1/2, 1/2), H[q] = log 2, each H[p_t] ~ 0
    x = np.array([[[50.0, 0.0]], [[0.0, 50.0]]])
    np.testing.assert_allclose(alscale.bald_scores(x), [np.log(2)], atol=1e-15)
    np.testing.assert_allclose(alscale.mc_margin_scores(x), [0.0], atol=1e-15)
    # agreeing uncertain samples: all entropy is aleatoric, BALD 0
    same = np.zeros((5, 1, 4))
    assert alscale.bald_scores(same)[0] == 0.0 and alscale.mc_entropy_scores(same)[0] == pytest.approx(np.log(4))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("probabilities", [False, True])
def test_identical_samples_give_bald_exactly_zero(dtype, probabilities):
    """T = 1, or T equal samples (dropout off): BALD is exactly 0 on every row, from the array,
    an iterable and the streaming state alike (before: rounding noise up to 3e-7 on half the rows,
    so the tie rule was broken), and a row whose samples differ in one value is scored as usual."""
    if probabilities and dtype in ("float16", "bfloat16"):
        pytest.skip("16-bit probabilities do not sum to 1 within the 1e-3 the rules allow")
    rng = np.random.default_rng(11)
    one = rng.standard_normal((1, 2000, 10)) * 3
    if probabilities:
        one = softmax(one)
    t = torch.from_numpy(one).to(getattr(torch, dtype))
    for samples in (t[:1], t.expand(6, -1, -1)):
        x = samples if dtype == "bfloat16" else samples.numpy()
        for form in (x, list(x), iter(list(x))):
            assert (alscale.bald_scores(form, probabilities=probabilities) == 0).all()
        acc = alscale.MCScores(probabilities=probabilities)
        for sample in x:
            acc.update(sample)
        assert (acc.scores("bald") == 0).all()
        # ties to the smaller row, exactly: the first rows in order
        assert alscale.select_bald(x, 5, probabilities=probabilities, exclude=[1]).tolist() == [0, 2, 3, 4, 5]
    x = np.repeat(np.asarray(t.float().numpy() if dtype == "bfloat16" else t.numpy()), 4, axis=0)
    x[2, 7] = x[2, 8]  # row 7's third sample differs
    got = alscale.bald_scores(x, probabilities=probabilities)
    assert got[7] > 0 and (np.delete(got, 7) == 0).all()
    assert alscale.bald_scores(list(x), probabilities=probabilities).tobytes() == got.tobytes()
    np.testing.assert_allclose(got, reference_scores(x.astype(np.float64), probabilities)["bald"], atol=2e-5)
    z = np.zeros((2, 3, 4))
    z[1, 0, 2] = -0.0  # the same value, other bits: "the same" is bit for bit, in both ways in alike
    assert alscale.bald_scores(z).tobytes() == alscale.bald_scores(list(z)).tobytes()


def test_powerbald_on_agreeing_samples_is_a_uniform_batch_not_noise():
    """Samples that agree everywhere have BALD exactly 0, so PowerBALD draws uniformly (the batch
    of select_power on zeros, the same for any sample values); before, it sampled ∝ noise^β."""
    rng = np.random.default_rng(12)
    for scale in (1.0, 5.0):
        x = np.repeat(rng.standard_normal((1, 500, 7)) * scale, 3, axis=0).astype(np.float32)
        for beta in (1.0, 4.0):
            got = alscale.select_powerbald(x, 20, beta=beta, seed=3, exclude=[0, 1])
            assert_same_indices(got, alscale.select_power(np.zeros(500), 20, beta=beta, seed=3, exclude=[0, 1]),
                                "a uniform batch")
    # rows with a positive BALD come first, the agreeing ones after them, uniformly
    x = np.repeat(rng.standard_normal((1, 50, 3)), 4, axis=0)
    x[0, [4, 9], 0] += 3.0
    got = alscale.select_powerbald(x, 6, seed=1)
    assert sorted(got[:2].tolist()) == [4, 9]
    assert_same_indices(got[2:], alscale.select_power(np.zeros(50), 4, seed=1, exclude=[4, 9])[:4], "then uniform")


# --------------------------------------------------------------------------- layouts and warnings


def test_layouts_read_the_same_samples_in_place():
    """layout="ntc" reads (N, T, C) and layout="nct" baal's (N, C, T): the same bits as (T, N, C),
    for every function, numpy and torch; an iterable is over T (layout= refused), and a bad name
    is refused naming the choices."""
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((5, 300, 6)) * 2).astype(np.float32)
    views = {"ntc": x.transpose(1, 0, 2), "nct": np.ascontiguousarray(x.transpose(1, 2, 0))}
    for layout, y in views.items():
        for f in SCORE_FUNCTIONS.values():
            assert f(y, layout=layout).tobytes() == f(x).tobytes(), (layout, f.__name__)
            assert f(torch.from_numpy(y), layout=layout).numpy().tobytes() == f(x).tobytes()
        assert alscale.select_bald(y, 7, layout=layout, exclude=[0]).tolist() == alscale.select_bald(x, 7, exclude=[0]).tolist()
        assert_same_indices(alscale.select_powerbald(y, 9, seed=2, layout=layout), alscale.select_powerbald(x, 9, seed=2),
                            "powerbald")
        assert_same_indices(alscale.select_batchbald(y, 4, candidates=20, seed=0, layout=layout),
                            alscale.select_batchbald(x, 4, candidates=20, seed=0), "batchbald")
    with pytest.raises(ValueError, match="layout must be one of 'tnc', 'ntc', 'nct'"):
        alscale.bald_scores(x, layout="NTC")
    with pytest.raises(ValueError, match="layout='ntc' is for a 3-D array"):
        alscale.bald_scores(list(x), layout="ntc")


def test_a_likely_mix_up_warns():
    """(N, T, C) or baal's (N, C, T) read as (T, N, C), and probabilities read as logits, warn with
    a SamplesWarning naming the fix (the scores are still computed as asked); the ordinary inputs
    of these tests never warn (pytest turns warnings into errors)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((8, 500, 4))
    for wrong in (x.transpose(1, 0, 2), x.transpose(1, 2, 0)):
        with pytest.warns(alscale.SamplesWarning, match=r"500 MC samples of .* rows\?.*layout='ntc'.*layout='nct'"):
            alscale.select_bald(wrong, 3)
    with pytest.warns(alscale.SamplesWarning, match="layout='nct'"):
        alscale.select_batchbald(x.transpose(1, 0, 2), 2, candidates=4)
    p = softmax(x)
    calls = [lambda: alscale.select_bald(p, 3), lambda: alscale.bald_scores(list(p)),
             lambda: alscale.select_powerbald(p, 3, seed=0), lambda: alscale.select_batchbald(p, 2, candidates=5),
             lambda: alscale.MCScores().update(p[0]), lambda: alscale.select_bald(p.transpose(1, 2, 0), 3, layout="nct")]
    for call in calls:
        with pytest.warns(alscale.SamplesWarning, match="look like probabilities.*probabilities=True") as seen:
            call()
        assert len(seen) == 1 and seen[0].filename == __file__  # once, pointing at the caller
    alscale.select_bald(p, 3, probabilities=True)  # no warning
    alscale.bald_scores(x.transpose(1, 0, 2), layout="ntc")
    alscale.bald_scores(np.eye(3)[None].repeat(2, axis=0))  # one-hot integers: logits as likely as not
    alscale.bald_scores(np.full((2, 5, 1), 1.0))  # one class: every input is probability 1


# --------------------------------------------------------------------------- selection


@given(case=mc_samples(), data=st.data())
def test_select_bald_is_topk_of_own_scores_and_reference(case, data):
    x, x64, probabilities, tol = case
    n = x.shape[1]
    exclude = data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True), label="exclude")
    budget = data.draw(st.integers(0, n + 3), label="budget")
    ex = np.array(exclude, dtype=np.int64)
    got = alscale.select_bald(x, budget, probabilities=probabilities, exclude=ex, num_threads=2)
    own = alscale.bald_scores(x, probabilities=probabilities)
    assert_same_indices(got, topk_largest(own, budget, ex), "against the top-k of alscale's BALD scores")
    mask = np.zeros(n, dtype=bool)
    mask[ex] = True
    assert_same_indices(alscale.select_bald(list(x), budget, probabilities=probabilities, exclude=mask), got,
                        "iterable with a boolean mask")
    ref = reference_scores(x64, probabilities)["bald"]
    expected = topk_largest(ref, budget, ex)
    rows = np.setdiff1d(np.arange(n), ex)
    head = np.sort(ref[rows])[::-1][: expected.size + 1]
    if head.size < 2 or np.min(-np.diff(head)) > 4 * tol:
        assert_same_indices(got, expected, "against the float64 BALD reference")


def test_select_bald_ties_go_to_the_smaller_row():
    x = np.zeros((3, 8, 4))
    x[0, [2, 5], 0] = 5.0  # rows 2 and 5 disagree between samples: the only positive BALD
    got = alscale.select_bald(x, 5)
    assert got.tolist() == [2, 5, 0, 1, 3]
    assert alscale.select_bald(x, 10, exclude=[2, 0]).tolist() == [5, 1, 3, 4, 6, 7]


# --------------------------------------------------------------------------- power acquisition


def power_reference(scores, budget, beta, seed, exclude=()):
    """Gumbel top-k with numpy's generator, as documented: positive rows by beta log s + G
    (ties to the smaller row), then the zero rows by G."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.random.default_rng(seed).gumbel(size=s.shape[0])
    rows = np.setdiff1d(np.arange(s.shape[0]), np.asarray(exclude, dtype=np.int64))
    pos = rows[s[rows] > 0] if beta > 0 else rows
    zero = rows[s[rows] == 0] if beta > 0 else rows[:0]
    with np.errstate(divide="ignore"):
        key = beta * np.log(s[pos]) + g[pos] if beta > 0 else g[pos]
    first = pos[np.lexsort((pos, -key))]
    rest = zero[np.lexsort((zero, -g[zero]))]
    return np.concatenate([first, rest])[:budget]


@given(seed=SEEDS, n=st.integers(1, 400), budget=st.integers(0, 420), beta=st.sampled_from([0.0, 0.5, 1.0, 4.0]),
       zeros=st.floats(0, 1), data=st.data())
def test_select_power_is_gumbel_topk(seed, n, budget, beta, zeros, data):
    rng = np.random.default_rng(seed)
    s = rng.exponential(size=n) * (rng.random(n) >= zeros)
    exclude = data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True), label="exclude")
    got = alscale.select_power(s, budget, beta=beta, seed=seed, exclude=np.array(exclude, dtype=np.int64))
    assert_same_indices(got, power_reference(s, budget, beta, seed, exclude), "against the numpy Gumbel top-k")
    assert np.unique(got).size == got.size and not np.isin(got, exclude).any()
    again = alscale.select_power(s, budget, beta=beta, seed=seed, exclude=np.array(exclude, dtype=np.int64))
    assert got.tobytes() == again.tobytes()


def test_select_power_samples_proportionally():
    """The first pick's frequencies over 4000 seeds against s^beta / sum s^beta (fixed seeds:
    deterministic; 5 standard deviations)."""
    s = np.array([0.0, 1.0, 2.0, 4.0, 0.5])
    for beta in (1.0, 2.0):
        counts = np.bincount([alscale.select_power(s, 1, beta=beta, seed=i)[0] for i in range(4000)], minlength=5)
        p = s**beta / (s**beta).sum()
        sd = np.sqrt(4000 * p * (1 - p))
        assert counts[0] == 0
        assert (np.abs(counts - 4000 * p) <= 5 * sd + 1).all(), (beta, counts, 4000 * p)


def test_power_wrappers_use_the_documented_scores():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 300, 5)) * 2
    for select, scores in ((alscale.select_powerbald, alscale.bald_scores(x)),
                           (alscale.select_power_entropy, alscale.mc_entropy_scores(x)),
                           (alscale.select_power_margin, 1.0 - alscale.mc_margin_scores(x))):
        got = select(x, 30, beta=2.0, seed=11, exclude=[0, 1, 2])
        assert_same_indices(got, alscale.select_power(scores, 30, beta=2.0, seed=11, exclude=[0, 1, 2]),
                            select.__name__)
        assert_same_indices(select(iter(list(x)), 30, beta=2.0, seed=11, exclude=[0, 1, 2]), got, "iterable")
    t = alscale.select_powerbald(torch.from_numpy(x), 5, seed=0)
    assert isinstance(t, torch.Tensor)


# --------------------------------------------------------------------------- BatchBALD


@examples(0.2)
@given(seed=SEEDS, n=st.integers(1, 9), t=st.integers(1, 6), c=st.integers(1, 4), budget=st.integers(1, 4),
       scale=st.sampled_from([0.5, 2.0, 5.0]))
def test_batchbald_exact_matches_brute_force(seed, n, t, c, budget, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, n, c)) * scale
    p = np.moveaxis(softmax(x), 0, 1)  # (N, T, C)
    expected, gap = batchbald_reference(p, budget)
    assume(gap > 1e-9)
    got = alscale.select_batchbald(x, budget, num_samples=c ** budget)  # every configuration fits
    assert_same_indices(got, expected, "against brute-force BatchBALD")
    assert_same_indices(alscale.select_batchbald(list(x), budget, num_samples=c ** budget), got, "iterable")


@examples(0.2)
@given(seed=SEEDS, n=st.integers(1, 9), t=st.integers(1, 6), c=st.integers(1, 4), budget=st.integers(1, 4))
def test_batchbald_gains_are_the_joint_information_increments(seed, n, t, c, budget):
    """batchbald_picks' gains, exact while the configurations are enumerated: the k-th is
    I(y_1..y_k; ω) - I(y_1..y_{k-1}; ω) from the brute-force joint entropies, the first is the
    pick's BALD, and none exceeds the pick's own BALD (the information is submodular)."""
    from alscale.bayesian import batchbald_picks

    x = np.random.default_rng(seed).standard_normal((t, n, c)) * 2
    p = np.moveaxis(softmax(x), 0, 1)  # (N, T, C)
    picks, gains, _ = batchbald_picks(x, budget, num_samples=c ** budget)
    assert_same_indices(picks, alscale.select_batchbald(x, budget, num_samples=c ** budget), "select_batchbald")
    expected = entropy(p).mean(axis=1)
    info = [joint_entropy_exact(p, picks[:k].tolist()) - expected[picks[:k]].sum() for k in range(picks.size + 1)]
    np.testing.assert_allclose(gains, np.diff(info), atol=1e-9)
    bald = alscale.bald_scores(x)[picks]
    assert abs(gains[0] - bald[0]) < 1e-9 and (gains <= bald + 1e-9).all()


def test_batchbald_first_pick_is_bald_and_exclusions_hold():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 200, 4)) * 2
    assert alscale.select_batchbald(x, 1)[0] == alscale.select_bald(x, 1)[0]
    ex = alscale.select_bald(x, 20)
    got = alscale.select_batchbald(x, 10, exclude=ex, seed=0)
    assert got.size == 10 and np.unique(got).size == 10 and not np.isin(got, ex).any()
    assert got[0] == alscale.select_bald(x, 1, exclude=ex)[0]
    assert alscale.select_batchbald(x, 500, exclude=ex, num_samples=8, seed=0).size == 180
    cand = alscale.select_batchbald(x, 5, candidates=30, seed=0)
    assert np.isin(cand, alscale.select_bald(x, 30)).all()


def test_batchbald_sampled_estimate_approaches_the_exact_joint_entropy():
    """Configurations drawn from the joint (as select_batchbald draws them) and the importance
    weights: the estimate of H(y_0..y_3, y_x) is within 0.02 nats of the exact value."""
    rng = np.random.default_rng(7)
    p = np.moveaxis(softmax(rng.standard_normal((8, 6, 3)) * 2), 0, 1)  # (N=6, T=8, C=3)
    batch = [0, 1, 2, 3]
    configs = np.array([np.prod([p[b, :, y] for b, y in zip(batch, labels)], axis=0)
                        for labels in itertools.product(range(3), repeat=4)])
    mass = configs.mean(axis=1)
    draw = configs[np.random.default_rng(0).choice(len(configs), size=20_000, p=mass / mass.sum())]
    weight = 1.0 / (draw.shape[0] * draw.mean(axis=1))
    est = _core.joint_entropy(draw, weight, np.ascontiguousarray(p[4:]), 2)
    exact = [joint_entropy_exact(p, batch + [i]) for i in (4, 5)]
    np.testing.assert_allclose(est, exact, atol=0.02)
    full = _core.joint_entropy(configs, np.ones(len(configs)), np.ascontiguousarray(p[4:]), 1)
    np.testing.assert_allclose(full, exact, rtol=1e-12)


def test_batchbald_sampled_mode_is_reproducible_and_sensible():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((10, 300, 10)) * 2
    a = alscale.select_batchbald(x, 12, num_samples=200, seed=3)
    b = alscale.select_batchbald(iter(list(x)), 12, num_samples=200, seed=3, num_threads=1)
    assert a.tobytes() == b.tobytes()
    assert np.unique(a).size == 12
    # duplicated pool: BatchBALD spreads over distinct rows where top-k BALD takes copies
    dup = np.concatenate([x[:, :20]] * 5, axis=1)  # 5 copies of 20 rows
    top = alscale.select_bald(dup, 10)
    bb = alscale.select_batchbald(dup, 10, num_samples=500, seed=0)
    assert np.unique(bb % 20).size > np.unique(top % 20).size


# --------------------------------------------------------------------------- errors


def test_bad_input_is_refused_clearly():
    good = np.zeros((2, 3, 4))
    cases = [
        (lambda: alscale.bald_scores(np.zeros((3, 4))), ValueError, "3-D"),
        (lambda: alscale.bald_scores(np.zeros((0, 3, 4))), ValueError, "empty"),
        (lambda: alscale.bald_scores([]), ValueError, "empty"),
        (lambda: alscale.bald_scores(iter([])), ValueError, "empty"),
        (lambda: alscale.bald_scores(5), TypeError, "iterable"),
        (lambda: alscale.bald_scores("abc"), TypeError, "iterable"),
        (lambda: alscale.bald_scores([np.zeros((3, 4)), np.zeros((2, 4))]), ValueError, r"samples\[1\] has shape"),
        (lambda: alscale.bald_scores([np.zeros((3, 4)), np.zeros(4)]), ValueError, r"samples\[1\] must be 2-D"),
        (lambda: alscale.bald_scores(np.zeros((2, 3, 4), dtype=np.int64)), TypeError, "floating"),
        (lambda: alscale.bald_scores(np.zeros((2, 0, 4))), ValueError, "empty"),
        (lambda: alscale.bald_scores(np.zeros((2, 3, 0))), ValueError, "no classes"),
        (lambda: alscale.bald_scores(np.full((2, 3, 4), -0.1), probabilities=True), ValueError,
         r"samples\[0\] row 0 has a negative probability"),
        (lambda: alscale.bald_scores(np.full((2, 3, 4), 0.5), probabilities=True), ValueError,
         r"samples\[0\] row 0 does not sum to 1.*probabilities=False"),
        (lambda: alscale.select_bald(good, -1), ValueError, "budget"),
        (lambda: alscale.select_bald(good, 1, exclude=[3]), ValueError, "out of range"),
        (lambda: alscale.select_power(np.array([1.0, -1.0]), 1), ValueError, "row 1"),
        (lambda: alscale.select_power(np.array([1.0, np.nan]), 1), ValueError, "row 1"),
        (lambda: alscale.select_power(np.ones((2, 2)), 1), ValueError, "1-D"),
        (lambda: alscale.select_power(np.ones(3), 1, beta=-1), ValueError, "beta"),
        (lambda: alscale.select_power(np.ones(3), 1, beta=float("inf")), ValueError, "beta"),
        (lambda: alscale.select_power(np.ones(3), 1, beta="1"), TypeError, "beta"),
        (lambda: alscale.select_batchbald(good, 1, num_samples=0), ValueError, "num_samples"),
        (lambda: alscale.select_batchbald(iter(list(good)), 1, candidates=2), ValueError, "twice"),
        (lambda: alscale.MCScores().scores("bald"), ValueError, "empty"),
        (lambda: alscale.MCScores().update(good[0]).scores("mutual"), ValueError, "kind"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("where", [(0, 0), (1, 2), (2, 299)])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_sample_and_row(where, value):
    x = np.random.default_rng(0).standard_normal((3, 300, 5))
    x[where[0], where[1], 3] = value
    msg = rf"samples\[{where[0]}\] row {where[1]} contains NaN or inf"
    for samples in (x, list(x), iter(list(x))):
        with pytest.raises(ValueError, match=msg):
            alscale.bald_scores(samples, num_threads=2)
    with pytest.raises(ValueError, match=msg):
        alscale.select_batchbald(x, 2)
    p = softmax(np.nan_to_num(x, nan=0, posinf=0, neginf=0))
    p[where[0], where[1], 3] = value
    with pytest.raises(ValueError, match=rf"samples\[{where[0]}\] row {where[1]} contains NaN or inf"):
        alscale.bald_scores(p, probabilities=True)
    with pytest.raises(ValueError, match=rf"samples\[{where[0]}\] row {where[1]} is not a probability"):
        alscale.select_batchbald(p, 2, probabilities=True)


def test_a_refused_sample_leaves_the_state_unusable():
    acc = alscale.MCScores()
    acc.update(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"samples\[1\] row 1"):
        acc.update(np.array([[0.0, 1.0], [np.nan, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="incomplete"):
        acc.scores("bald")
    with pytest.raises(ValueError, match="incomplete"):
        acc.update(np.zeros((3, 2)))


def test_docstring_examples():
    import alscale.bayesian

    result = doctest.testmod(alscale.bayesian, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- baal

try:
    import warnings

    with warnings.catch_warnings():  # baal's logging set-up uses structlog's deprecated threadlocal
        warnings.simplefilter("ignore", DeprecationWarning)
        import baal.active.heuristics as baal_heuristics
except ImportError:  # baal is in the test extra for Python >= 3.10 only
    baal_heuristics = None
needs_baal = pytest.mark.skipif(baal_heuristics is None, reason="baal is not installed (pip install baal)")


def _baal_layout(x: np.ndarray, probabilities: bool) -> np.ndarray:
    """(T, N, C) -> baal's (N, C, T) probabilities."""
    p = x if probabilities else softmax(x)
    return np.ascontiguousarray(np.moveaxis(p, 0, 2))


@needs_baal
@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_baal(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((10, 400, 7)) * rng.choice([0.5, 2.0, 4.0])
    pb = _baal_layout(x, False)
    h = baal_heuristics
    np.testing.assert_allclose(alscale.bald_scores(x), h.BALD().get_uncertainties(pb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(alscale.mc_margin_scores(x), h.Margin().get_uncertainties(pb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(alscale.mc_entropy_scores(x), h.Entropy().get_uncertainties(pb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(alscale.mc_confidence_scores(x), h.Certainty().get_uncertainties(pb), rtol=0,
                               atol=1e-12)
    # baal's own (N, C, T) layout, read in place with layout="nct"
    np.testing.assert_allclose(alscale.bald_scores(pb, probabilities=True, layout="nct"), h.BALD().get_uncertainties(pb),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(alscale.mc_margin_scores(pb, probabilities=True, layout="nct"),
                               h.Margin().get_uncertainties(pb), rtol=0, atol=1e-12)
    # float32 samples: alscale computes in float32, baal in float32 too
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(alscale.bald_scores(softmax(x32).astype(np.float32), probabilities=True),
                               h.BALD().get_uncertainties(_baal_layout(softmax(x32).astype(np.float32), True)),
                               rtol=0, atol=2e-5)


@needs_baal
@pytest.mark.parametrize("seed", range(5))
def test_bald_picks_equal_baal(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((10, 500, 7)) * 2
    ranks = baal_heuristics.BALD()(_baal_layout(x, False))
    scores = alscale.bald_scores(x)
    head = np.sort(scores)[::-1][:51]
    assert np.min(-np.diff(head)) > 1e-10  # no ties: baal's argsort order is then defined
    assert_same_indices(alscale.select_bald(x, 50), ranks[:50], "against baal's BALD ranking")
    pb = _baal_layout(x, False)  # the (N, C, T) probabilities baal ranked, read in its layout
    assert_same_indices(alscale.select_bald(pb, 50, probabilities=True, layout="nct"), ranks[:50], "baal's layout")


@needs_baal
def test_batchbald_joint_entropy_equals_baal():
    """baal's BatchBALD estimator of the joint entropy (its deterministic part, given the
    sampled configurations) and alscale's kernel with the importance weights 1 / (M p(m))."""
    rng = np.random.default_rng(9)
    p = softmax(rng.standard_normal((12, 300, 6)) * 2)  # (T, N, C)
    pb = _baal_layout(p, True)  # (N, C, T)
    heuristic = baal_heuristics.BatchBALD(num_samples=5, num_draw=40)
    torch.manual_seed(0)
    selected = heuristic._sample_from_history(pb[[3, 17, 42]], num_draw=40)  # (M, T)
    expected = np.concatenate(list(heuristic._joint_entropy(pb, selected)))
    weight = 1.0 / (selected.shape[0] * selected.mean(axis=1))
    got = _core.joint_entropy(np.ascontiguousarray(selected), weight, np.ascontiguousarray(np.moveaxis(p, 0, 1)), 2)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@needs_baal
@pytest.mark.parametrize("seed", [228, 266, 390])  # pools whose greedy steps are 0.03+ nats apart
def test_batchbald_picks_equal_baal_where_clear(seed):
    """baal samples its configurations with torch's generator (M = T x num_draw = 16,000 here;
    its estimate is off by well under 0.01 nats), alscale enumerates them: on a pool whose greedy
    steps are separated by more than 0.025 nats, both pick the same batch (compared as sets:
    baal ranks its picks by their step scores, not in pick order)."""
    rng = np.random.default_rng(seed)
    t, n, c, budget = 8, 12, 3, 4
    x = rng.standard_normal((t, n, c)) * 3
    p = np.moveaxis(softmax(x), 0, 1)
    expected, gap = batchbald_reference(p, budget)
    assert gap > 0.025
    torch.manual_seed(seed)
    heuristic = baal_heuristics.BatchBALD(num_samples=budget - 1, num_draw=2000)
    ranks = heuristic(_baal_layout(x, False))
    got = alscale.select_batchbald(x, budget, num_samples=c ** budget)
    assert_same_indices(got, expected, "exact BatchBALD")
    assert sorted(ranks[:budget].tolist()) == sorted(got.tolist())
