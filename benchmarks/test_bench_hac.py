"""HAC, kNN graph and Cluster-Margin against their baselines, one pytest-benchmark group each.

Sizes from ``ALSCALE_BENCH_HAC_N`` (default 2,000 points, 64-d, for CI, which runs the suite with
``--benchmark-disable`` so it only checks results). Data: the harness's ``blobs`` (N/20 centres,
noise 0.3) and ``gaussian`` logits; the numpy Cluster-Margin is the harness suites' round-robin.
``alscale bench --suite hac`` runs the exact rows in their own processes, with peak memory. The n = 20,000 / 40,000 figures in
BENCHMARKS.md come from benchmarks/hac_exact.py (time and peak memory per process) and the
1M-point run from benchmarks/hac_1m.py.

    pytest benchmarks/test_bench_hac.py --benchmark-enable
    ALSCALE_BENCH_HAC_N=20000 pytest benchmarks/test_bench_hac.py --benchmark-enable
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.cluster.hierarchy import cophenet, linkage

import alscale
from alscale.al.harness import blobs, gaussian
from alscale.al.metrics import adjusted_rand_index
from alscale.al.suites import round_robin

N = int(os.environ.get("ALSCALE_BENCH_HAC_N", "2000"))
D = 64


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    return blobs(N, D, max(2, N // 20), 0.3, seed=0)[0]


@pytest.fixture(scope="module")
def scipy_z(points):
    return {m: linkage(points.astype(np.float64), "average", metric=m) for m in ("euclidean", "cosine")}


def check_tree(z, expected):
    assert z.shape == expected.shape
    np.testing.assert_allclose(np.sort(z[:, 2]), np.sort(expected[:, 2]), rtol=1e-4, atol=1e-6)
    assert np.corrcoef(cophenet(z), cophenet(expected))[0, 1] > 0.9999


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("lib", ["alscale", "fastcluster", "scipy"])
def test_hac_exact(benchmark, points, scipy_z, metric, lib):
    benchmark.group = f"hac-exact-{metric} (N={N:,}, D={D})"
    x64 = points.astype(np.float64)
    if lib == "alscale":
        z = benchmark(lambda: alscale.hac_average(points, metric=metric, n_clusters=10).linkage)
    elif lib == "fastcluster":
        fastcluster = pytest.importorskip("fastcluster")
        z = benchmark(lambda: fastcluster.linkage(x64, method="average", metric=metric))
    else:
        z = benchmark(lambda: linkage(x64, "average", metric=metric))
    check_tree(z, scipy_z[metric])


@pytest.mark.parametrize("method", ["alscale-exact", "faiss", "numpy"])
def test_knn(benchmark, points, method):
    benchmark.group = f"knn-cosine k=10 (N={N:,}, D={D})"
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    if method == "alscale-exact":
        idx = benchmark(lambda: alscale.knn_graph(points, 10)[0])
    elif method == "faiss":
        pytest.importorskip("faiss")
        idx = benchmark(lambda: alscale.knn_graph(points, 10, knn_method="faiss")[0])
    else:
        def numpy_knn():
            s = unit @ unit.T
            np.fill_diagonal(s, -np.inf)
            return np.argpartition(-s, 10, axis=1)[:, :10]
        idx = benchmark(numpy_knn)
    exact = alscale.knn_graph(points, 10)[0]
    recall = np.mean((np.sort(idx, 1)[:, :, None] == exact[:, None, :]).any(1))
    assert recall > (0.99 if method != "faiss" else 0.9)


@pytest.mark.parametrize("k", [10, 30])
def test_hac_graph(benchmark, points, scipy_z, k):
    benchmark.group = f"hac-graph-cosine (N={N:,}, D={D})"
    c = benchmark(lambda: alscale.hac_average(points, neighbors=k, n_clusters=N // 20))
    exact = alscale.hac_average(points, n_clusters=N // 20)
    assert adjusted_rand_index(c.labels, exact.labels) > 0.9


def round_robin_numpy(logits, clusters, budget, candidates, seed):
    """The paper's rule written with numpy and a Python loop over clusters (the baseline)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    rows = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:candidates]
    return round_robin(rows, clusters, budget, seed)


@pytest.mark.parametrize("impl", ["alscale", "numpy"])
def test_cluster_margin(benchmark, impl):
    n, c, budget = 50 * N, 100, 5 * N
    benchmark.group = f"cluster-margin (N={n:,}, C={c}, budget={budget:,}, k_m=10x)"
    logits = gaussian(n, c, seed=1)
    clusters = np.random.default_rng(1).integers(0, n // 50, n)
    if impl == "alscale":
        sel = benchmark(lambda: alscale.select_cluster_margin(logits, clusters, budget, seed=0))
    else:
        sel = benchmark(lambda: round_robin_numpy(logits, clusters, budget, min(10 * budget, n), 0))
    assert sel.shape == (budget,) and np.unique(sel).size == budget
