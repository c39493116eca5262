"""Multi-label margin (``multilabel=True``) against its floor and a plain numpy baseline, in one
pytest-benchmark group: the floor (``logits.sum()``), alscale's fused kernel with "mean" and
"min", and numpy's ``|tanh(z/2)|`` reduced over the classes then ``argsort`` (an N × C float32
temporary). Each test checks its result, so CI (``--benchmark-disable``) keeps them right.

    pytest benchmarks/test_bench_multilabel.py --benchmark-enable
    ALSCALE_BENCH_SIZE=imagenet pytest benchmarks/test_bench_multilabel.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest

import alscale


def numpy_select(logits: np.ndarray, budget: int, reduction: str) -> np.ndarray:
    m = np.abs(np.tanh(logits * np.float32(0.5)))
    score = m.mean(axis=1, dtype=np.float64) if reduction == "mean" else m.min(axis=1)
    return np.argsort(score, kind="stable")[:budget]


@pytest.mark.benchmark(group="multilabel-margin")
def test_multilabel_floor(benchmark, data):
    assert np.isfinite(benchmark(data.logits.sum))


@pytest.mark.benchmark(group="multilabel-margin")
@pytest.mark.parametrize("reduction", ["mean", "min"])
def test_multilabel_alscale(benchmark, data, reduction):
    idx = benchmark(lambda: alscale.select_margin(data.logits, data.budget, multilabel=True, reduction=reduction))
    idx = np.asarray(idx)
    assert idx.shape == (min(data.budget, data.size.n),) and np.unique(idx).size == idx.size
    scores = np.asarray(alscale.margin_scores(data.logits, multilabel=True, reduction=reduction))
    picked = scores[idx]
    assert np.all(np.diff(picked) >= 0)
    rest = np.ones(data.size.n, dtype=bool)
    rest[idx] = False
    assert picked.max() <= scores[rest].min()


@pytest.mark.benchmark(group="multilabel-margin")
@pytest.mark.parametrize("reduction", ["mean", "min"])
def test_multilabel_numpy_tanh(benchmark, data, reduction):
    ref = benchmark.pedantic(lambda: numpy_select(data.logits, data.budget, reduction), rounds=3, iterations=1)
    ours = np.asarray(alscale.select_margin(data.logits, data.budget, multilabel=True, reduction=reduction))
    # numpy's float32 tanh and mean round differently: only rows tied with the cut may swap
    scores = np.asarray(alscale.margin_scores(data.logits, multilabel=True, reduction=reduction))
    swapped = np.setxor1d(ours, ref)
    cut = scores[ours].max()
    assert np.all(np.abs(scores[swapped] - cut) <= 1e-6 * max(1.0, cut))
