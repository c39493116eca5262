"""Bad input to the HAC, kNN and Cluster-Margin functions: a ValueError / TypeError naming it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import alscale

X = np.random.default_rng(0).normal(size=(10, 3))
LOGITS = np.random.default_rng(1).normal(size=(10, 4))
CLUSTERS = np.arange(10) % 3


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


def test_cluster_margin_bad_input():
    with pytest.raises(ValueError, match=r"clusters must have one label per logits row \(10\), got shape \(9,\)"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS[:9], 3)
    with pytest.raises(TypeError, match="clusters must hold integer cluster labels"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS.astype(float), 3)
    with pytest.raises(ValueError, match=r"candidates \(k_m = 2\) must be at least budget \(3\)"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, 3, candidates=2)
    with pytest.raises(ValueError, match="budget must be non-negative"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, -1)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, 3, seed=-4)
    bad = LOGITS.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="logits contain NaN or inf at row 2"):
        alscale.select_cluster_margin(bad, CLUSTERS, 3)
    with pytest.raises(ValueError, match="exclude index 10 is out of range"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, 3, exclude=[10])
    with pytest.raises(TypeError, match="budget must be an integer"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, "3")
    with pytest.raises(ValueError, match="clusters must have one label per logits row"):
        alscale.select_cluster_margin(torch.from_numpy(LOGITS), torch.zeros(3, dtype=torch.int64), 3)
