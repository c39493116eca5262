"""Coreset and BADGE kernels against plain numpy implementations of the same rules.

Sizes: the default "small" (N=20,000, D=64, C=10, L=200 labeled, B=100) keeps CI quick; with
``ALSCALE_BENCH_SIZE=imagenet`` the pool is Fashion-MNIST-sized pixels (N=60,000, D=784, C=10,
L=500, B=100), the regime of BENCHMARKS.md's active-learning runs. The numpy baselines are
what one writes without alscale: a float64 min-distance vector updated with one vectorised
pass per pick (greedy k-center), and k-means++ on the explicit N x C·D gradient embedding.
Data: the harness's ``blobs`` (C centres, noise 1: overlapping classes) and ``gaussian`` head.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import alscale
from alscale.al.harness import blobs, gaussian

SIZES = {"small": (20_000, 64, 10, 200, 100), "imagenet": (60_000, 784, 10, 500, 100)}
N, D, C, L, B = SIZES.get(os.environ.get("ALSCALE_BENCH_SIZE", "small"), SIZES["small"])


@pytest.fixture(scope="module")
def pool():
    z, _ = blobs(N, D, C, 1.0, seed=0)
    logits = (z @ gaussian(D, C, seed=1)) / np.float32(np.sqrt(D))
    labeled = np.zeros(N, dtype=bool)
    labeled[np.random.default_rng(0).choice(N, L, replace=False)] = True
    return z, logits, labeled


def numpy_coreset(z, labeled, budget):
    x = z.astype(np.float64)
    mind = np.full(x.shape[0], np.inf)
    for c in np.flatnonzero(labeled):
        np.minimum(mind, ((x - x[c]) ** 2).sum(1), out=mind)
    mind[labeled] = -np.inf
    out = []
    for _ in range(budget):
        c = int(np.argmax(mind))
        out.append(c)
        np.minimum(mind, ((x - x[c]) ** 2).sum(1), out=mind)
        mind[out] = -np.inf
    return np.array(out)


def numpy_badge(logits, z, budget, exclude, seed):
    """BADGE as the reference code writes it: the explicit gradient embedding, D² sampling."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    a = p.copy()
    a[np.arange(len(a)), logits.argmax(1)] -= 1.0
    g = (a[:, :, None] * z[:, None, :]).reshape(len(a), -1)  # N x C·D
    rows = np.flatnonzero(~exclude)
    g = g[rows]
    rng = np.random.default_rng(seed)
    first = int(np.argmax((g * g).sum(1)))
    picks, mind = [first], ((g - g[first]) ** 2).sum(1)
    for _ in range(budget - 1):
        w = mind / mind.sum()
        c = int(rng.choice(len(g), p=w))
        picks.append(c)
        np.minimum(mind, ((g - g[c]) ** 2).sum(1), out=mind)
    return rows[picks]


@pytest.mark.benchmark(group="coreset")
def test_coreset_alscale(benchmark, pool):
    z, _, labeled = pool
    got = benchmark(alscale.select_coreset, z, B, labeled=labeled)
    assert got.size == B and not labeled[got].any()
    # The same rule: the first picks agree with the numpy loop (later ones could differ by the
    # summation order of near-equal distances).
    assert np.array_equal(got[:5], numpy_coreset(z, labeled, 5))


@pytest.mark.benchmark(group="coreset")
def test_coreset_numpy(benchmark, pool):
    z, _, labeled = pool
    benchmark.pedantic(numpy_coreset, args=(z, labeled, B), rounds=1, iterations=1)


@pytest.mark.benchmark(group="badge")
def test_badge_alscale(benchmark, pool):
    z, logits, labeled = pool
    got = benchmark(alscale.select_badge, logits, z, B, exclude=labeled, seed=0)
    assert got.size == B and np.unique(got).size == B and not labeled[got].any()


@pytest.mark.benchmark(group="badge")
def test_badge_numpy_explicit_gradients(benchmark, pool):
    z, logits, labeled = pool
    got = benchmark.pedantic(numpy_badge, args=(logits, z, B, labeled, 0), rounds=1, iterations=1)
    assert got.size == B
