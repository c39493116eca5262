"""Bad and extreme input to HAC (exact and graph) and the kNN graph: non-finite, too few,
zero-norm or out-of-range points, bad cut and metric arguments, malformed graphs, duplicate
points and similarities above 1, coordinates near float32's limits, device and meta tensors,
absurd thread counts, and pools too large for exact HAC: a clear ValueError / TypeError, or the
right answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, is_valid_linkage, linkage
import scipy.sparse as sp
from scipy.sparse import coo_matrix

import alscale
import reference as ref
from alscale.hac import ComponentsWarning
from hypotheses import SEEDS, examples


def assert_usable_by_scipy(z: np.ndarray) -> None:
    """Heights >= 0 and non-decreasing, and scipy accepts the Z (fcluster refuses a negative height)."""
    assert (z[:, 2] >= 0).all(), z[:, 2].min()
    assert (np.diff(z[:, 2]) >= 0).all()
    assert is_valid_linkage(z)
    fcluster(z, 0.5, "distance")


def duplicated_points(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(max(1, n // 3), d))
    return base[rng.integers(0, base.shape[0], n)] * rng.choice([1e-3, 1.0, 7.0])


# --------------------------------------------------------------------------- heights >= 0


@given(seed=SEEDS, n=st.integers(3, 40), d=st.integers(1, 8), k=st.integers(1, 8))
@examples(0.5)
def test_graph_hac_on_duplicate_points_gives_valid_linkage(seed, n, d, k):
    """Duplicate points have float32 cosine similarity up to 1 + 2^-23: the merge height was
    -1.19e-7, which fcluster refuses (308 of 2000 random duplicated sets)."""
    x = duplicated_points(seed, n, d)
    with warnings.catch_warnings():  # about the linkage: more components than 2 is not the point here
        warnings.simplefilter("ignore", ComponentsWarning)
        c = alscale.hac_average(x, neighbors=min(k, n - 1), n_clusters=2)
    assert_usable_by_scipy(c.linkage)


def test_graph_hac_duplicate_points_by_hand():
    x = np.repeat(np.random.default_rng(1).normal(size=(6, 5)), 4, axis=0)
    _, sim = alscale.knn_graph(x, 3)
    assert sim.max() > 1.0  # the float32 rounding this is about
    c = alscale.hac_average(x, neighbors=3, n_clusters=6)
    assert_usable_by_scipy(c.linkage)
    assert (c.linkage[:18, 2] < 1e-6).all() and c.linkage[0, 2] == 0.0  # the 18 merges of duplicates
    np.testing.assert_array_equal(c.labels, np.repeat(np.arange(6), 4))


def clamped_reference(n, u, v, s) -> np.ndarray:
    """The brute-force graph HAC with every height taken as max(0, 1 - w)."""
    merges = [(a, b, max(0.0, h)) for a, b, h in ref.graph_hac_merges(n, u, v, s)]
    return ref.linkage_from_merges(n, merges)


@given(seed=SEEDS, n=st.integers(2, 25), density=st.floats(0.0, 1.0))
@examples(0.5)
def test_graph_similarities_above_one(seed, n, density):
    """hac_average_graph takes any positive similarity; those above 1 merge at height 0 (it was
    1 - w < 0), in the same order as before."""
    rng = np.random.default_rng(seed)
    m = int(density * n * (n - 1) / 2) + 1
    u, v = rng.integers(0, n, m).astype(np.int64), rng.integers(0, n, m).astype(np.int64)
    s = rng.choice(np.array([0.5, 1.0, 1.0000001, 1.5, 3.0, 0.0], np.float32), m)
    with warnings.catch_warnings():  # about the linkage: the components floor is tested in test_hac.py
        warnings.simplefilter("ignore", ComponentsWarning)
        c = alscale.hac_average_graph(coo_matrix((s, (u, v)), shape=(n, n)), n_clusters=1)
    np.testing.assert_array_equal(c.linkage, clamped_reference(n, u, v, s))
    assert_usable_by_scipy(c.linkage)


def test_graph_similarity_above_one_by_hand():
    c = alscale.hac_average_graph((np.array([[1], [0], [3], [2]]), np.array([[1.5], [1.5], [0.5], [0.5]])),
                                  n_clusters=2)
    np.testing.assert_array_equal(c.linkage, [[0, 1, 0.0, 2], [2, 3, 0.5, 2], [4, 5, 1.0, 4]])
    np.testing.assert_array_equal(c.labels, [0, 0, 1, 1])


# --------------------------------------------------------------------------- value range


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize("power", [70, 120, -100, -140])
def test_exact_hac_near_float32_limits_is_the_scaled_tree(metric, power):
    """|x| ≳ 1e19 overflowed the float32 squared distances (inf heights); |x| ≲ 1e-20 underflowed
    them (heights 0). x * 2^p now gives the tree of x exactly, heights times 2^p (2^2p squared)."""
    x = np.random.default_rng(5).normal(size=(40, 6))
    x[7] = x[3]  # a tie
    scaled = np.ldexp(x, power)
    assert np.isfinite(scaled.astype(np.float32)).all()
    base = alscale.hac_average(x, metric=metric, n_clusters=4)
    got = alscale.hac_average(scaled, metric=metric, n_clusters=4)
    expected = base.linkage.copy()
    expected[:, 2] = np.ldexp(expected[:, 2], power if metric == "euclidean" else 2 * power)
    np.testing.assert_array_equal(got.linkage, expected)
    np.testing.assert_array_equal(got.labels, base.labels)
    assert_usable_by_scipy(got.linkage)
    # a distance cut in the caller's units
    t = float(np.median(base.linkage[:, 2]))
    cut = alscale.hac_average(scaled, metric=metric, threshold=np.ldexp(t, power if metric == "euclidean" else 2 * power))
    np.testing.assert_array_equal(cut.labels, alscale.hac_average(x, metric=metric, threshold=t).labels)


def test_exact_hac_near_float32_limits_by_hand():
    x = np.array([[1e19, 0.0], [-1e19, 0.0], [0.0, 3e19]])
    c = alscale.hac_average(x, metric="euclidean", n_clusters=1)
    np.testing.assert_allclose(c.linkage, linkage(x, "average", metric="euclidean"), rtol=1e-6)
    c = alscale.hac_average(x * 1e-40, metric="euclidean", threshold=2.5e-21)
    np.testing.assert_allclose(c.linkage[:, 2], [2e-21, np.sqrt(10) * 1e-21], rtol=1e-6)
    np.testing.assert_array_equal(c.labels, [0, 0, 1])
    # float32's largest values (beyond them is still refused: test_errors_hac)
    big = np.array([[3e38, 0.0], [-3e38, 0.0], [0.0, 1.0]])
    c = alscale.hac_average(big, metric="sqeuclidean", n_clusters=1)
    np.testing.assert_allclose(c.linkage, linkage(big, "average", metric="sqeuclidean"), rtol=1e-6)
    np.testing.assert_allclose(c.linkage[:, 2], [9e76, (3.6e77 + 9e76) / 2], rtol=1e-6)


# --------------------------------------------------------------------------- memory


def test_exact_hac_says_how_much_memory_it_needs(monkeypatch):
    """n = 200,000 ended in a bare std::bad_alloc / MemoryError: refused up front, with the
    memory exact HAC needs (n(n-1)/2 float32) and the way out (neighbors=)."""
    from alscale import hac

    x = np.random.default_rng(0).normal(size=(1000, 3))
    monkeypatch.setattr(hac, "_available_memory", lambda: 1_000_000)  # 1000 points need 2.0 MB
    with pytest.raises(MemoryError, match=r"exact HAC of 1000 points needs 1\.9 MiB .* n\(n-1\)/2 float32 .* "
                                          r"1\.0 MiB is available; pass neighbors=k"):
        alscale.hac_average(x, n_clusters=3)
    alscale.hac_average(x, n_clusters=3, neighbors=5)  # the graph version does not need it

    monkeypatch.setattr(hac, "_available_memory", lambda: None)  # unknown: try, and explain a failure

    def no_memory(*args):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(hac._core, "hac_average_exact", no_memory)
    with pytest.raises(MemoryError, match=r"exact HAC of 1000 points needs 1\.9 MiB for its n\(n-1\)/2 float32 "
                                          r"distances; pass neighbors=k"):
        alscale.hac_average(x, n_clusters=3)


def test_exact_hac_at_200k_points_is_refused_up_front():
    from alscale import hac

    available = hac._available_memory()
    if available is None or available >= 200_000 * 199_999 // 2 * 4:
        pytest.skip("this machine could hold the 74.5 GiB condensed matrix")
    x = np.random.default_rng(0).normal(size=(200_000, 2)).astype(np.float32)
    with pytest.raises(MemoryError, match=r"exact HAC of 200000 points needs 74\.5 GiB .* pass neighbors=k"):
        alscale.hac_average(x, n_clusters=3)


# --------------------------------------------------------------------------- arguments and devices


class FakeDeviceArray:
    """What CuPy, Numba and friends look like to alscale: a __cuda_array_interface__."""

    def __init__(self, shape, typestr="<f4"):
        self.shape, self.typestr = shape, typestr

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.typestr, "data": (4096, False), "version": 3, "strides": None}


X = np.random.default_rng(0).normal(size=(10, 3))


@pytest.mark.parametrize("metric", [["cosine"], ("cosine",), None, 2, b"cosine"])
def test_metric_of_the_wrong_kind(metric):
    with pytest.raises(TypeError, match=r"metric must be one of \['cosine', 'euclidean', 'sqeuclidean'\], got"):
        alscale.hac_average(X, n_clusters=2, metric=metric)
    with pytest.raises(ValueError, match="metric must be 'cosine'"):
        alscale.knn_graph(X, 2, metric=metric)


@pytest.mark.parametrize("neighbors", [None, 3])
def test_device_arrays_say_there_is_no_gpu_kernel(neighbors):
    with pytest.raises(ValueError, match=r"hac_average has no GPU kernel yet; pass x in host memory"):
        alscale.hac_average(FakeDeviceArray((10, 3)), n_clusters=2, neighbors=neighbors)
    with pytest.raises(ValueError, match="hac_average_graph has no GPU kernel yet; pass indices in host memory"):
        alscale.hac_average_graph((FakeDeviceArray((10, 2), "<i8"), np.ones((10, 2))), n_clusters=2)
    with pytest.raises(ValueError, match=r"knn_graph\(knn_method='faiss'\) has no GPU kernel yet"):
        alscale.knn_graph(FakeDeviceArray((10, 3)), 2, knn_method="faiss")


def test_meta_tensors_say_they_hold_no_data():
    meta = torch.empty((10, 3), device="meta")
    for call in (lambda: alscale.hac_average(meta, n_clusters=2),
                 lambda: alscale.hac_average(meta, n_clusters=2, neighbors=3),
                 lambda: alscale.knn_graph(meta, 2)):
        with pytest.raises(ValueError, match="x is a meta-device tensor: it has a shape but no data"):
            call()
    with pytest.raises(ValueError, match="indices is a meta-device tensor: it has a shape but no data"):
        alscale.hac_average_graph((torch.zeros((10, 2), dtype=torch.int64, device="meta"), np.ones((10, 2))),
                                  n_clusters=2)


# --------------------------------------------------------------------------- points, cuts, metrics, graphs

def hac_exact(x, **kw):
    return alscale.hac_average(x, n_clusters=2, **kw)


def hac_graph(x, **kw):
    return alscale.hac_average(x, n_clusters=2, neighbors=3, **kw)


def knn(x, **kw):
    return alscale.knn_graph(x, 3, **kw)


POINT_FUNCS = pytest.mark.parametrize("fn", [hac_exact, hac_graph, knn], ids=["exact", "graph", "knn"])


@POINT_FUNCS
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_points(fn, bad):
    x = X.copy()
    x[4, 1] = bad
    with pytest.raises(ValueError, match="x contains NaN or inf at row 4"):
        fn(x)


@POINT_FUNCS
def test_too_few_points(fn):
    with pytest.raises(ValueError, match="at least 2 points"):
        fn(X[:1])
    with pytest.raises(ValueError, match="at least 2 points"):
        fn(np.zeros((0, 3)))


@POINT_FUNCS
def test_shape_and_dtype(fn):
    with pytest.raises(ValueError, match=r"x must be 2-D \(points, features\), got shape \(10,\)"):
        fn(X[:, 0])
    with pytest.raises(ValueError, match="no features"):
        fn(np.zeros((10, 0)))
    with pytest.raises(TypeError, match="real-valued"):
        fn(X.astype(np.complex128))


@POINT_FUNCS
def test_zero_row_has_no_cosine(fn):
    x = X.copy()
    x[6] = 0.0
    with pytest.raises(ValueError, match="row 6 has zero norm"):
        fn(x)


def test_beyond_float32_range():
    x = X.copy()
    x[3, 0] = 1e300
    with pytest.raises(ValueError, match="row 3 has values beyond float32's range"):
        alscale.hac_average(x, n_clusters=2, metric="euclidean")
    # cosine normalises in float64 first: fine
    c = alscale.hac_average(x, n_clusters=2)
    assert np.isfinite(c.linkage).all()


def test_cut_arguments():
    with pytest.raises(ValueError, match=r"exactly one of threshold and n_clusters \(got both\)"):
        alscale.hac_average(X, threshold=0.5, n_clusters=2)
    with pytest.raises(ValueError, match=r"exactly one of threshold and n_clusters \(got neither\)"):
        alscale.hac_average(X)
    with pytest.raises(ValueError, match="threshold must be a non-negative distance, got -0.5"):
        alscale.hac_average(X, threshold=-0.5)
    with pytest.raises(ValueError, match="threshold must be a non-negative distance, got nan"):
        alscale.hac_average(X, threshold=float("nan"))
    with pytest.raises(TypeError, match="threshold must be a real number"):
        alscale.hac_average(X, threshold="1")
    with pytest.raises(ValueError, match="n_clusters must be at least 1, got 0"):
        alscale.hac_average(X, n_clusters=0)
    with pytest.raises(TypeError, match="n_clusters must be an integer"):
        alscale.hac_average(X, n_clusters=2.0)
    with pytest.raises(ValueError, match="exactly one of threshold and n_clusters"):
        alscale.hac_average_graph((np.zeros((3, 1), np.int64), np.zeros((3, 1))))


def test_metric_and_neighbors():
    with pytest.raises(ValueError, match="metric must be one of"):
        alscale.hac_average(X, n_clusters=2, metric="manhattan")
    with pytest.raises(ValueError, match="cosine only"):
        alscale.hac_average(X, n_clusters=2, metric="euclidean", neighbors=3)
    with pytest.raises(ValueError, match="neighbors must be at least 1, got 0"):
        alscale.hac_average(X, n_clusters=2, neighbors=0)
    with pytest.raises(ValueError, match=r"neighbors must be less than the number of points \(10\), got 10"):
        alscale.hac_average(X, n_clusters=2, neighbors=10)
    with pytest.raises(ValueError, match="knn method must be one of"):
        alscale.hac_average(X, n_clusters=2, neighbors=3, knn_method="annoy")
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        alscale.knn_graph(X, 0)
    with pytest.raises(ValueError, match=r"k must be less than the number of points \(10\), got 12"):
        alscale.knn_graph(X, 12)
    with pytest.raises(ValueError, match="nprobe must be at least 1, got 0"):
        alscale.knn_graph(X, 2, nprobe=0)
    with pytest.raises(ValueError, match="metric must be 'cosine'"):
        alscale.knn_graph(X, 2, metric="euclidean")
    with pytest.raises(ValueError, match="num_threads must be non-negative"):
        alscale.hac_average(X, n_clusters=2, num_threads=-1)


def test_bad_graphs():
    with pytest.raises(TypeError, match="scipy.sparse matrix or a tuple"):
        alscale.hac_average_graph(np.eye(3), n_clusters=1)
    with pytest.raises(ValueError, match="square"):
        alscale.hac_average_graph(sp.csr_matrix(np.ones((3, 4))), n_clusters=1)
    with pytest.raises(ValueError, match="at least 2 points"):
        alscale.hac_average_graph(sp.csr_matrix(np.ones((1, 1))), n_clusters=1)
    with pytest.raises(ValueError, match="similarities contain NaN or inf"):
        alscale.hac_average_graph(sp.csr_matrix(np.array([[0, np.nan], [0, 0]])), n_clusters=1)
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, 3\)"):
        alscale.hac_average_graph((np.array([[1], [2], [3]]), np.ones((3, 1))), n_clusters=1)
    with pytest.raises(ValueError, match=r"both be \(N, k\)"):
        alscale.hac_average_graph((np.array([[1], [2], [0]]), np.ones((3, 2))), n_clusters=1)
    with pytest.raises(TypeError, match="indices must be integers"):
        alscale.hac_average_graph((np.ones((3, 1)), np.ones((3, 1))), n_clusters=1)
    with pytest.raises(ValueError, match="must be \\(indices, similarities\\)"):
        alscale.hac_average_graph((np.ones((3, 1)),), n_clusters=1)


@pytest.mark.parametrize("call", [
    lambda x: alscale.knn_graph(x, 2, num_threads=2**31 - 1),
    lambda x: alscale.hac_average(x, n_clusters=2, num_threads=10**6),
])
def test_absurd_thread_counts_are_refused_by_hac_and_knn(call):
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="num_threads"):
        call(x)


def test_non_cpu_tensors_are_refused_by_the_hac_functions():
    meta = torch.empty((4, 3), device="meta")
    for call in (lambda: alscale.hac_average(meta, n_clusters=2), lambda: alscale.knn_graph(meta, 2)):
        with pytest.raises(ValueError, match="meta-device tensor"):
            call()
