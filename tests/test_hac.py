"""Average-linkage HAC: exact against scipy, graph HAC against the brute-force reference,
the kNN graph against numpy; cuts against fcluster; invariance to threads and edge order."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.cluster.hierarchy import cophenet, fcluster, is_valid_linkage, linkage
from scipy.sparse import coo_matrix, csr_matrix
from scipy.spatial.distance import pdist

import alscale
from alscale.hac import ComponentsWarning
import reference as ref
from hypotheses import SEEDS, examples

METRICS = ("euclidean", "sqeuclidean", "cosine")
HEIGHT_RTOL = 2e-5  # float32 distances against scipy's float64


def canonical(labels) -> np.ndarray:
    """Labels renumbered 0.. in order of first appearance (fcluster numbers them otherwise)."""
    numbering: dict = {}
    return np.array([numbering.setdefault(int(v), len(numbering)) for v in labels], dtype=np.int64)


def points(seed: int, n: int, d: int, clustered: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if clustered:
        centers = rng.normal(scale=4.0, size=(max(1, n // 8), d))
        return centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, d))
    return rng.normal(size=(n, d))


def near_ties(heights: np.ndarray, rtol: float, atol: float) -> bool:
    """Whether two merge heights are within float32 rounding of each other (cosine distances
    1 - u·v carry an absolute error of ~1e-7, so tiny heights tie in relative terms too)."""
    h = np.sort(heights)
    return h.size > 1 and bool((np.diff(h) <= rtol * h[1:] + atol).any())


def assert_same_up_to_rounding(z: np.ndarray, expected: np.ndarray, x: np.ndarray, metric: str) -> None:
    """Exactly scipy's tree, unless float32 rounding can explain the difference: two merge
    heights or two input distances within float32 rounding of each other (a near-tie that float32
    may order the other way). Then the heights and the cophenetic distances must still agree."""
    d = np.sort(pdist(x, metric))
    ties = near_ties(expected[:, 2], 1e-4, 1e-5) or bool((np.diff(d) <= 4e-7 * d[1:] + 1e-7).any())
    if not ties:
        # Cosine distances below 2^-18 (parallel rows up to float32 rounding) are 0 by the documented
        # rule (hac_average's docstring), so a height that small may be 0 here and not in scipy.
        assert_same_tree(z, expected, atol=2.0**-18 if metric == "cosine" else 2e-6)
        return
    np.testing.assert_allclose(np.sort(z[:, 2]), np.sort(expected[:, 2]), rtol=1e-4, atol=2e-5)
    cz, ce = cophenet(z), cophenet(expected)
    if ce.size > 2 and ce.std() > 1e-3 * max(ce.max(), 1e-12):
        assert np.corrcoef(cz, ce)[0, 1] > 0.99
    else:
        np.testing.assert_allclose(cz, ce, rtol=1e-3, atol=1e-4)


def assert_same_tree(z: np.ndarray, expected: np.ndarray, rtol: float = HEIGHT_RTOL, atol: float = 2e-6) -> None:
    assert z.shape == expected.shape and z.dtype == np.float64
    np.testing.assert_array_equal(z[:, [0, 1, 3]], expected[:, [0, 1, 3]])
    np.testing.assert_allclose(z[:, 2], expected[:, 2], rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- exact


@pytest.mark.parametrize("metric", METRICS)
@given(seed=SEEDS, n=st.integers(2, 70), d=st.integers(1, 9), clustered=st.booleans())
@examples(0.6)
def test_exact_matches_scipy(metric, seed, n, d, clustered):
    x = points(seed, n, d, clustered)
    expected = linkage(x, "average", metric=metric)
    c = alscale.hac_average(x, metric=metric, n_clusters=3)
    assert is_valid_linkage(c.linkage)
    # Merges that scipy makes at nearly equal heights may come in either order in float32.
    assert_same_up_to_rounding(c.linkage, expected, x, metric)


def test_exact_larger_clustered_data_matches_scipy():
    x = points(7, 600, 16, clustered=True)
    for metric in METRICS:
        c = alscale.hac_average(x, metric=metric, threshold=0.5)
        np.testing.assert_allclose(cophenet(c.linkage), cophenet(linkage(x, "average", metric=metric)),
                                   rtol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
@given(seed=SEEDS, n=st.integers(2, 70), d=st.integers(1, 9), mode=st.sampled_from(["normal", "clustered", "grid"]))
@examples(0.6)
def test_exact_matches_float32_reference_bitwise(metric, seed, n, d, mode):
    # The kernel's own arithmetic (float32 distances and updates) in numpy: the same Z exactly,
    # ties included (grid: small integers, so many distances tie).
    x = np.round(points(seed, n, d) * 1.5) if mode == "grid" else points(seed, n, d, mode == "clustered")
    if metric == "cosine":
        x[np.all(x == 0, axis=1)] = 1.0
    c = alscale.hac_average(x, metric=metric, n_clusters=2)
    np.testing.assert_array_equal(c.linkage, ref.upgma_float32(x, metric))


@given(seed=SEEDS, n=st.integers(2, 60), k=st.integers(1, 70), t=st.floats(0, 6))
@examples(0.3)
def test_cuts_match_fcluster(seed, n, k, t):
    x = points(seed, n, 3)
    c = alscale.hac_average(x, metric="euclidean", n_clusters=k)
    np.testing.assert_array_equal(c.labels, canonical(fcluster(c.linkage, k, "maxclust")))
    np.testing.assert_array_equal(c.labels, ref.flat_labels(c.linkage, n, n_clusters=k))
    assert c.labels.dtype == np.int64 and c.labels.max() + 1 == min(k, n)
    c = alscale.hac_average(x, metric="euclidean", threshold=t)
    np.testing.assert_array_equal(c.labels, canonical(fcluster(c.linkage, t, "distance")))
    np.testing.assert_array_equal(c.labels, ref.flat_labels(c.linkage, n, threshold=t))


@pytest.mark.parametrize("metric", METRICS)
def test_exact_independent_of_threads_and_input_kind(metric):
    x = points(3, 3000, 8, clustered=True)
    one = alscale.hac_average(x, metric=metric, n_clusters=10, num_threads=1)
    two = alscale.hac_average(x, metric=metric, n_clusters=10, num_threads=2)
    np.testing.assert_array_equal(one.linkage, two.linkage)
    np.testing.assert_array_equal(one.labels, two.labels)
    t = alscale.hac_average(torch.from_numpy(x.astype(np.float32)), metric=metric, n_clusters=10)
    np.testing.assert_array_equal(t.linkage, alscale.hac_average(x.astype(np.float32), metric=metric,
                                                                 n_clusters=10).linkage)


def test_exact_ties_duplicates_and_two_points():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    c = alscale.hac_average(x, metric="euclidean", n_clusters=2)
    assert is_valid_linkage(c.linkage)
    np.testing.assert_array_equal(c.labels, [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(c.linkage, linkage(x, "average", metric="euclidean"))
    c = alscale.hac_average(np.array([[1.0, 2.0], [3.0, 1.0]]), metric="cosine", threshold=0.0)
    np.testing.assert_allclose(c.linkage, linkage(np.array([[1.0, 2.0], [3.0, 1.0]]), "average", metric="cosine"),
                               rtol=1e-6)
    np.testing.assert_array_equal(c.labels, [0, 1])


# --------------------------------------------------------------------------- graph


def random_graph(seed: int, n: int, density: float):
    rng = np.random.default_rng(seed)
    m = int(density * n * (n - 1) / 2) + 1
    u, v = rng.integers(0, n, m), rng.integers(0, n, m)
    # few distinct values, so that ties (and duplicates with different values) happen
    s = rng.choice(np.array([0.25, 0.5, 0.75, 1.0, -0.5, 0.0], np.float32), m)
    return u.astype(np.int64), v.astype(np.int64), s


@given(seed=SEEDS, n=st.integers(2, 30), density=st.floats(0.0, 1.0), k=st.integers(1, 30))
@examples(1.0)
def test_graph_matches_bruteforce_reference(seed, n, density, k):
    u, v, s = random_graph(seed, n, density)
    g = coo_matrix((s, (u, v)), shape=(n, n))
    expected = ref.graph_hac(n, u, v, s)
    # More connected components than k: the components are the floor, with a warning (the
    # merges between components tie at distance 1; a maxclust cut would give one cluster).
    components = 1 + int(np.count_nonzero(expected[:, 2] >= 1.0))
    floor = (lambda: pytest.warns(ComponentsWarning)) if components > k else contextlib.nullcontext
    with floor():
        c = alscale.hac_average_graph(g, n_clusters=k)
    np.testing.assert_array_equal(c.linkage, expected)
    np.testing.assert_array_equal(c.labels, ref.flat_labels(expected, n, n_clusters=max(k, components)))
    assert is_valid_linkage(c.linkage)
    # Edge order, direction and thread count do not matter.
    p = np.random.default_rng(seed + 1).permutation(u.size)
    g2 = coo_matrix((s[p], (v[p], u[p])), shape=(n, n))
    with floor():
        np.testing.assert_array_equal(alscale.hac_average_graph(g2, n_clusters=k, num_threads=1).linkage, expected)


@given(seed=SEEDS, n=st.integers(3, 40), d=st.integers(2, 6))
@examples(0.3)
def test_complete_graph_equals_exact_cosine_upgma(seed, n, d):
    x = np.abs(points(seed, n, d)) + 0.01  # non-negative cosines: nothing clipped
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    c = alscale.hac_average(x, neighbors=n - 1, threshold=0.1)
    expected = linkage(x, "average", metric="cosine")
    assert is_valid_linkage(c.linkage)
    # float32 similarities near 1 carry ~1e-7 absolute error, so near-tied merges may swap:
    # heights and cophenetic distances agree to that (the graph kernel's own arithmetic is
    # checked bit for bit against the brute-force reference above).
    np.testing.assert_allclose(np.sort(c.linkage[:, 2]), np.sort(expected[:, 2]), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(cophenet(c.linkage), cophenet(expected), rtol=1e-3, atol=1e-4)
    if not near_ties(expected[:, 2], 1e-2, 1e-4):
        assert_same_tree(c.linkage, expected, rtol=1e-4)
    # and the given-graph form on the dense similarity matrix agrees with it
    dense = csr_matrix(np.triu(unit @ unit.T, 1))
    c2 = alscale.hac_average_graph(dense, threshold=0.1)
    np.testing.assert_allclose(cophenet(c2.linkage), cophenet(c.linkage), rtol=1e-4, atol=1e-5)


def test_graph_knn_tuple_form_and_disconnected_components():
    x = points(11, 300, 8, clustered=True)
    idx, sim = alscale.knn_graph(x, 5)
    c = alscale.hac_average(x, neighbors=5, n_clusters=20)
    c2 = alscale.hac_average_graph((idx, sim), n_clusters=20)
    np.testing.assert_array_equal(c.linkage, c2.linkage)
    rows = np.repeat(np.arange(300), 5)
    np.testing.assert_array_equal(c.linkage, ref.graph_hac(300, rows, idx.ravel(), sim.ravel()))
    # two far-apart pairs and a singleton: the last merges are at distance 1
    with pytest.warns(ComponentsWarning, match="3 connected components, more than the 1 clusters"):
        c = alscale.hac_average_graph((np.array([[1], [0], [3], [2], [-1]]), np.full((5, 1), 0.5)), n_clusters=1)
    np.testing.assert_array_equal(c.linkage[:, 2], [0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(c.linkage[:, :2], [[0, 1], [2, 3], [5, 6], [4, 7]])  # in representative order
    # n_clusters=1 below the 3 components: the components are the floor (was one cluster)
    np.testing.assert_array_equal(c.labels, [0, 0, 1, 1, 2])


def test_graph_independent_of_threads():
    x = points(2, 3000, 16, clustered=True)
    one = alscale.hac_average(x, neighbors=10, n_clusters=30, num_threads=1)
    two = alscale.hac_average(x, neighbors=10, n_clusters=30, num_threads=2)
    np.testing.assert_array_equal(one.linkage, two.linkage)
    np.testing.assert_array_equal(one.labels, two.labels)


# --------------------------------------------------------------------------- kNN


@given(seed=SEEDS, n=st.integers(2, 300), d=st.integers(1, 20), k=st.integers(1, 20))
@examples(0.3)
def test_knn_exact_matches_numpy(seed, n, d, k):
    k = min(k, n - 1)
    x = points(seed, n, d)
    x[np.all(x == 0, axis=1)] = 1.0
    idx, sim = alscale.knn_graph(x, k)
    assert idx.shape == (n, k) and idx.dtype == np.int64 and sim.dtype == np.float32
    ridx, rsim = ref.knn_cosine(x, k)
    np.testing.assert_allclose(sim, rsim, atol=2e-6)
    assert not (idx == np.arange(n)[:, None]).any()
    # The neighbours found are as similar as the true ones (rounding may reorder near-ties).
    x64 = x / np.linalg.norm(x, axis=1, keepdims=True)
    true_sim = np.take_along_axis(x64 @ x64.T, idx, axis=1)
    np.testing.assert_allclose(true_sim, rsim, atol=2e-6)
    assert (np.diff(sim, axis=1) <= 0).all()


def test_knn_ties_to_smaller_index_and_threads():
    x = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 3)
    idx, sim = alscale.knn_graph(x, 3)
    np.testing.assert_array_equal(idx[0], [1, 2, 3])
    np.testing.assert_array_equal(idx[8], [6, 7, 0])
    x = points(4, 2000, 12)
    a = alscale.knn_graph(x, 7, num_threads=1)
    b = alscale.knn_graph(x, 7, num_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_knn_faiss_recall():
    pytest.importorskip("faiss")
    x = points(9, 5000, 16, clustered=True)
    exact, _ = alscale.knn_graph(x, 10)
    approx, sim = alscale.knn_graph(x, 10, knn_method="faiss")
    assert approx.shape == (5000, 10) and approx.dtype == np.int64 and sim.dtype == np.float32
    assert not (approx == np.arange(5000)[:, None]).any()
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist())])
    assert recall > 0.9
    # scanning every inverted list is exhaustive: the exact neighbours
    full, _ = alscale.knn_graph(x, 10, knn_method="faiss", nprobe=10**6)
    assert np.mean([len(set(a) & set(e)) / 10 for a, e in zip(full.tolist(), exact.tolist())]) > 0.999


def test_knn_faiss_missing_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install faiss-cpu"):
        alscale.knn_graph(np.eye(3), 1, knn_method="faiss")


def test_adjusted_rand_index_reference():
    import alscale.al.metrics  # the application half is not imported by `import alscale`

    assert ref.adjusted_rand_index([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0
    assert ref.adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    np.testing.assert_allclose(alscale.al.metrics.adjusted_rand_index([0, 0, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2]),
                               ref.adjusted_rand_index([0, 0, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2]))
