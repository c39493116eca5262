"""Average-linkage hierarchical clustering (UPGMA): exact, or on a k-nearest-neighbour graph.

The exact version gives scipy.cluster.hierarchy.linkage(x, "average", metric)'s merges and
heights (float32 distances, so heights agree to float32 rounding) in a quarter of the memory of
scipy's float64 condensed matrix. The graph version runs exact average linkage on a sparse
cosine-similarity graph (Dhulipala et al., ICML 2021) and scales to millions of points.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._backend import device as _gpu
from ._backend import host_only
from ._backend.arrays import (
    host_numpy,
    as_float32_points,
    as_int,
    as_points,
    as_threads,
    real_matrix,
    unit_rows,
)

__all__ = ["Clustering", "hac_average", "hac_average_graph", "knn_graph"]

_METRICS = dict(_core.Metric.__members__)  # the kernel's enum (csrc/hac.hpp HacMetric)
_KNN_METHODS = ("exact", "faiss")


class Clustering(NamedTuple):
    """Flat clusters and the full dendrogram of a hierarchical clustering.

    Attributes
    ----------
    labels : numpy.ndarray of int64, shape (N,)
        Cluster of every point at the requested cut, numbered 0..K-1 in order of each
        cluster's smallest point index (point 0 is in cluster 0).
    linkage : numpy.ndarray of float64, shape (N-1, 4)
        scipy's Z format: row i merges clusters Z[i, 0] < Z[i, 1] (points are 0..N-1, row i
        creates N+i) at height Z[i, 2] into a cluster of Z[i, 3] points; heights non-decreasing.
        Works with scipy.cluster.hierarchy.fcluster, cophenet, dendrogram.
    """

    labels: np.ndarray
    linkage: np.ndarray


def _cut(threshold: Any, n_clusters: Any) -> tuple[float, int]:
    if (threshold is None) == (n_clusters is None):
        raise ValueError("give exactly one of threshold and n_clusters (got both)" if threshold is not None
                         else "give exactly one of threshold and n_clusters (got neither)")
    if n_clusters is not None:
        return math.nan, as_int(n_clusters, "n_clusters", minimum=1)
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a real number, got {threshold!r}")
    t = float(threshold)
    if math.isnan(t) or t < 0:
        raise ValueError(f"threshold must be a non-negative distance, got {threshold!r}")
    return t, -1


def _metric(metric: Any):
    if not isinstance(metric, str):
        raise TypeError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    return _METRICS[metric]


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), else the physical
    memory, else None (unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _exact_memory_error(n: int, available: int | None) -> MemoryError:
    def size(b: int) -> str:
        return f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"

    have = "" if available is None else f", and {size(available)} is available"
    return MemoryError(
        f"exact HAC of {n} points needs {size(n * (n - 1) // 2 * 4)} for its n(n-1)/2 float32 distances{have}; "
        f"pass neighbors=k (e.g. neighbors=30) for graph HAC on the k-nearest-neighbour graph, whose "
        f"memory grows with n·k"
    )


def _float32_exponent(a: np.ndarray, metric: str) -> int:
    """e such that the float32 points a * 2^-e keep every squared distance (at most 4·D·top²)
    finite and away from float32's subnormals: 0 for ordinary data, else top * 2^-e lies in
    [0.5, 1). The scaling is exact (done in float64, before rounding to float32), so it changes
    no merge and scales every height exactly."""
    if metric == "cosine":
        return 0
    top = max(float(a.max()), -float(a.min()))
    if top == 0.0:
        return 0
    exponent = int(np.frexp(top)[1])
    if 2 * exponent + math.log2(4.0 * a.shape[1]) <= 120 and exponent >= -30:
        return 0
    return exponent


def _ldexp(t: float, power: int) -> float:
    """t * 2^power (a threshold in the scaled units); nan and inf stay, overflow gives inf."""
    if not math.isfinite(t):
        return t
    try:
        return math.ldexp(t, power)
    except OverflowError:
        return math.inf


def hac_average(x: Any, *, threshold: Any = None, n_clusters: Any = None, metric: str = "cosine",
                neighbors: Any = None, knn_method: str = "exact", num_threads: int = 0) -> Clustering:
    """Average-linkage (UPGMA) clustering of points, cut at a distance or into a number of clusters.

    ``neighbors=None`` is exact: the same merges and heights as
    ``scipy.cluster.hierarchy.linkage(x, "average", metric)`` up to float32 rounding
    (nearest-neighbour chain with scipy's tie rules over a float32 condensed distance matrix;
    n(n-1)/2 floats of memory, 3.2 GB at n = 40,000: refused up front with a MemoryError that
    says so when the machine has less available). Distances that tie exactly in scipy's
    float64 but not in float32 (or the reverse) can merge in another order, e.g. on small
    integer-valued data; heights and cophenetic distances still agree to float32 rounding.
    Cosine distances below 2^-18 (parallel or equal rows, up to float32 rounding) are 0.
    Euclidean points so large (|x| ≳ 1e17) or small (≲ 1e-9) that float32 squared distances would
    overflow or underflow are first scaled by an exact power of two, which changes no merge;
    heights (and ``threshold``) stay in the caller's units.

    ``neighbors=k`` runs graph average linkage on the k-nearest-neighbour cosine-similarity
    graph of the L2-normalised points (see :func:`hac_average_graph`): memory and time grow
    with N·k, not N², for millions of points. With k = N - 1 it equals exact cosine UPGMA when no
    two points have negative cosine similarity.

    Parameters
    ----------
    x : array_like or torch.Tensor (CPU), shape (N, D)
        Real-valued, finite, N >= 2. Computed in float32 (host memory only: there is no GPU
        kernel yet).
    threshold : float, optional
        Cut: merges at height <= threshold are applied (fcluster criterion "distance").
    n_clusters : int, optional
        Cut into at most this many clusters (fcluster criterion "maxclust": fewer only when
        merges tie in height at the cut). Exactly one of threshold and n_clusters.
    metric : {"cosine", "euclidean", "sqeuclidean"}
        Exact only; the graph version is cosine.
    neighbors : int, optional
        k for the graph version, 1 <= k < N.
    knn_method : {"exact", "faiss"}
        How the graph version builds its kNN graph (see :func:`knn_graph`).
    num_threads : int, optional
        OpenMP threads, 0 (default) for all cores; the result does not depend on it.

    Returns
    -------
    Clustering
        ``labels`` (N,) int64 and ``linkage`` (N-1, 4) float64 in scipy's Z format, numpy
        arrays (also for torch input).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.5]])
    >>> c = alscale.hac_average(x, metric="euclidean", threshold=2.0)
    >>> c.labels
    array([0, 0, 1, 1])
    >>> c.linkage[:, 2].round(2)
    array([1.  , 1.5 , 5.09])
    """
    t, k_clusters = _cut(threshold, n_clusters)
    code = _metric(metric)
    threads = as_threads(num_threads)
    host_only(x, "hac_average", "x")
    if neighbors is None:
        a = as_points(x)
        n = a.shape[0]
        available = _available_memory()
        if available is not None and n * (n - 1) // 2 * 4 > available:
            raise _exact_memory_error(n, available)
        e = _float32_exponent(a, metric)
        power = e if metric == "euclidean" else 2 * e  # heights scale as distances do
        if metric == "cosine":
            pts = unit_rows(a)
        else:
            if e > 128:  # values beyond float32's range: refused (the message names the row)
                as_float32_points(a)
            pts = as_float32_points(np.ldexp(a, -e) if e else a)
        if e:
            t = _ldexp(t, -power)
        try:
            z, labels = _core.hac_average_exact(pts, int(code), t, k_clusters, threads)
        except MemoryError:
            raise _exact_memory_error(n, available) from None
        if e:
            z[:, 2] = np.ldexp(z[:, 2], power)
        return Clustering(labels, z)
    if metric != "cosine":
        raise ValueError(f"the graph version (neighbors={neighbors!r}) is cosine only, got metric={metric!r}")
    k = as_int(neighbors, "neighbors", minimum=1)
    unit = _unit_points(x)
    if k >= unit.shape[0]:
        raise ValueError(f"neighbors must be less than the number of points ({unit.shape[0]}), got {k}")
    idx, sim = _knn(unit, k, knn_method, threads)
    return _graph(unit.shape[0], idx, sim, t, k_clusters, threads)


def _graph(n: int, idx: np.ndarray, sim: np.ndarray, t: float, k_clusters: int, threads: int) -> Clustering:
    """Graph HAC on the (N, k) kNN arrays, which the kernel reads in place (int64 or int32
    neighbours, -1 = none; float32 similarities): no edge list is made."""
    if idx.dtype not in (np.int64, np.int32):
        idx = idx.astype(np.int64)
    idx = np.ascontiguousarray(idx)
    sim = np.ascontiguousarray(sim, dtype=np.float32)
    z, labels = _core.hac_average_knn_graph(idx, sim, t, k_clusters, threads)
    return Clustering(labels, z)


def hac_average_graph(graph: Any, *, threshold: Any = None, n_clusters: Any = None, num_threads: int = 0) -> Clustering:
    """Exact average linkage on a sparse similarity graph (missing edges count as similarity 0).

    The similarity of clusters A and B is w(A, B) = Σ s(a, b) / (|A| |B|) over the edges a–b
    between them; their distance is 1 - w (cosine distance for cosine-similarity graphs). The
    globally most similar pair is merged first (ties: the pair with the smaller representatives,
    a cluster's representative being its smallest point index). Clusters that no edge joins are
    merged last at distance 1, in order of representative. Edges are undirected; an edge given
    several times (e.g. in both directions) takes its largest similarity; self-loops and
    similarities <= 0 count as a missing edge. The result does not depend on the edge order.

    Parameters
    ----------
    graph : scipy.sparse matrix/array of shape (N, N), or a tuple (indices, similarities)
        The tuple form is a kNN graph as :func:`knn_graph` returns: (N, k) integer neighbours
        (-1 = none) and (N, k) similarities; contiguous int64 or int32 neighbours and float32
        similarities are read in place (memory: about 0.27 GiB a million points at k = 10).
    threshold, n_clusters, num_threads
        As in :func:`hac_average`.

    Returns
    -------
    Clustering

    Examples
    --------
    >>> import numpy as np, alscale
    >>> idx = np.array([[1], [0], [3], [2]])
    >>> sim = np.array([[0.9], [0.9], [0.5], [0.5]])
    >>> c = alscale.hac_average_graph((idx, sim), n_clusters=2)
    >>> c.labels, c.linkage[:, 2].round(2)
    (array([0, 0, 1, 1]), array([0.1, 0.5, 1. ]))
    """
    t, k_clusters = _cut(threshold, n_clusters)
    threads = as_threads(num_threads)
    if isinstance(graph, tuple):
        if len(graph) != 2:
            raise ValueError("a graph tuple must be (indices, similarities)")
        host_only(graph[0], "hac_average_graph", "indices")
        host_only(graph[1], "hac_average_graph", "similarities")
        idx, sim = host_numpy(graph[0], "indices"), host_numpy(graph[1], "similarities")
        if idx.ndim != 2 or sim.shape != idx.shape:
            raise ValueError(f"indices and similarities must both be (N, k), got {idx.shape} and {sim.shape}")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got {idx.dtype}")
        n = idx.shape[0]
        _check_graph_size(n)
        if idx.size and (idx.max() >= n or idx.min() < -1):
            raise ValueError(f"indices must lie in [-1, {n}) for a graph of {n} points")
        sim = _finite_similarities(sim)
        return _graph(n, idx, sim, t, k_clusters, threads)
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy missing
        sp = None
    if sp is None or not sp.issparse(graph):
        raise TypeError("graph must be a scipy.sparse matrix or a tuple (indices, similarities)")
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"graph must be a square (N, N) matrix, got shape {graph.shape}")
    n = graph.shape[0]
    _check_graph_size(n)
    coo = sp.coo_matrix(graph)
    data = _finite_similarities(coo.data)
    z, labels = _core.hac_average_graph(n, coo.row.astype(np.int64), coo.col.astype(np.int64), data,
                                        t, k_clusters, threads)
    return Clustering(labels, z)


def _check_graph_size(n: int) -> None:
    if n < 2:
        raise ValueError(f"the graph must have at least 2 points to cluster, got {n}")


def _finite_similarities(s: np.ndarray) -> np.ndarray:
    if s.dtype.kind not in "fiu":
        raise TypeError(f"similarities must be real numbers, got {s.dtype}")
    s = np.ascontiguousarray(s, dtype=np.float32)
    if not np.isfinite(s).all():
        raise ValueError("similarities contain NaN or inf")
    return s


def auto_knn_method(n: int) -> str:
    """The kNN method for an n-point graph when the caller has no preference: ``"faiss"`` beyond
    200,000 points if faiss is importable (the exact all-pairs graph takes hours at millions;
    faiss's, with recall-targeted parameters, about 11 minutes at 9M on 2 cores), else
    ``"exact"``."""
    import importlib.util

    return "faiss" if n > 200_000 and importlib.util.find_spec("faiss") is not None else "exact"


def knn_graph(x: Any, k: Any, *, metric: str = "cosine", method: str = "exact", recall: Any = 0.95,
              nprobe: Any = None, pca: Any = None, num_threads: int = 0):
    """The k nearest neighbours of every point by cosine similarity, excluding the point itself.

    Parameters
    ----------
    x : array_like or torch.Tensor (CPU), shape (N, D)
        Finite, no zero rows; L2-normalised here (float32, chunk by chunk: no float64 copy).
    k : int
        1 <= k < N.
    metric : {"cosine"}
    method : {"exact", "faiss"}
        "exact": blocked brute force in C++ (O(N² D), up to a few hundred thousand points).
        "faiss": approximate, for millions of points: an inverted file of about N/128 cells
        (two-level spherical k-means with faiss: √(N/128) groups, each split into cells; a point
        lies in the cell of the most similar centroid among the cells of its 3 most similar
        groups). Each point ranks those cells by similarity; the points of a cell are compared
        exactly (alscale's blocked kernel) with the points of every cell that one of them ranks
        among its ``nprobe`` first. Time grows with N·(cells scanned)·128·D, memory with N·k.
        Needs faiss (``pip install faiss-cpu``).
    recall : float in (0, 1], optional
        Method "faiss" with ``nprobe=None``: the target recall@k. alscale finds the exact
        neighbours of 512 sampled points (faiss brute force) and takes the smallest ``nprobe``
        of 2, 3, 4, 6, 8 (scanning at least two cells, so that a cluster split over two cells
        stays joined) whose scanned cells hold that fraction of them; the graph's recall is
        that estimate up to sampling noise (about ±1%). Where 8 does not reach it, 8.
    nprobe : int, optional
        Method "faiss": the cells each point ranks for scanning (up to 32), instead of
        ``recall``; at least the number of cells scans every cell: the exact graph.
    pca : int, optional
        First project the L2-normalised points on their top ``pca`` principal directions
        (uncentred, so ``pca`` = D keeps every cosine; faiss ``PCAMatrix`` trained on at most
        65,536 sampled points, applied chunk by chunk: memory N·pca), e.g. 2048-d CNN features
        to 128 (BENCHMARKS.md measures what it does to the clustering). Needs faiss.
    num_threads : int, optional

    Returns
    -------
    indices : numpy.ndarray of int64, shape (N, k)
        Neighbours by descending similarity (ties to the smaller index); -1 where the scanned
        cells held fewer than k points.
    similarities : numpy.ndarray of float32, shape (N, k)
        0 where the index is -1.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    >>> idx, sim = alscale.knn_graph(x, 1)
    >>> idx.ravel()
    array([1, 0, 1])
    """
    if metric != "cosine":
        raise ValueError(f"metric must be 'cosine', got {metric!r}")
    threads = as_threads(num_threads)
    if method == "exact" and _gpu.wants(x, "x"):  # CUDA points: the GPU kernel, same graph
        return _gpu.knn_graph(x, as_int(k, "k", minimum=1))
    host_only(x, f"knn_graph(method={method!r})", "x")
    kk = as_int(k, "k", minimum=1)
    target = _recall(recall)
    probes = None if nprobe is None else as_int(nprobe, "nprobe", minimum=1)
    dims = None if pca is None else as_int(pca, "pca", minimum=1)
    unit = _unit_points(x) if dims is None else _pca_unit(x, dims)
    if kk >= unit.shape[0]:
        raise ValueError(f"k must be less than the number of points ({unit.shape[0]}), got {kk}")
    return _knn(unit, kk, method, threads, probes, target)


def _recall(recall: Any) -> float:
    if isinstance(recall, (bool, np.bool_)) or not isinstance(recall, (int, float, np.integer, np.floating)):
        raise TypeError(f"recall must be a number in (0, 1], got {recall!r}")
    r = float(recall)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall!r}")
    return r


_CHUNK_ROWS = 1 << 16


def _unit_chunks(x: Any, name: str = "x"):
    """(start, float32 unit rows) for chunks of x: as_points + unit_rows without an (N, D)
    float64 copy; errors name the row in x."""
    a = real_matrix(x, name, "points")
    if a.shape[0] < 2 or a.shape[1] == 0:
        as_points(a, name)  # raises: too few points / no features
    for s in range(0, a.shape[0], _CHUNK_ROWS):
        b = a[s : s + _CHUNK_ROWS]
        finite = np.isfinite(b).all(axis=1)
        if not finite.all():
            raise ValueError(f"{name} contains NaN or inf at row {s + int(np.argmin(finite))}")
        zero = ~(np.abs(b).max(axis=1) > 0)
        if zero.any():
            raise ValueError(f"{name} row {s + int(np.argmax(zero))} has zero norm: cosine distance is undefined for it")
        yield s, unit_rows(np.asarray(b, dtype=np.float64), name)


def _unit_points(x: Any, name: str = "x") -> np.ndarray:
    """The rows of x scaled to unit L2 norm, float32 (N, D), validated chunk by chunk."""
    a = real_matrix(x, name, "points")
    out = np.empty(a.shape, dtype=np.float32)
    for s, u in _unit_chunks(a, name):
        out[s : s + u.shape[0]] = u
    return out


def _pca_unit(x: Any, dims: int, name: str = "x") -> np.ndarray:
    """Unit rows of x reduced to ``dims`` dimensions by uncentred PCA (the top eigenvectors of
    their second-moment matrix: faiss PCAMatrix trained on at most 65,536 sampled unit rows and
    their negatives, applied chunk by chunk), then scaled to unit norm again."""
    faiss = _faiss()
    a = real_matrix(x, name, "points")
    if dims > a.shape[1]:
        raise ValueError(f"pca must be at most the number of features ({a.shape[1]}), got {dims}")
    rng = np.random.default_rng(0)
    n = a.shape[0]
    sample = np.arange(n) if n <= _CHUNK_ROWS else np.sort(rng.choice(n, _CHUNK_ROWS, replace=False))
    pca = faiss.PCAMatrix(a.shape[1], dims)
    u = _unit_points(a[sample], name)
    pca.train(np.concatenate([u, -u]))  # mean 0: uncentred, so that pca = D keeps every cosine
    del u
    out = np.empty((n, dims), dtype=np.float32)
    for s, u in _unit_chunks(a, name):
        r = pca.apply(u)
        norm = np.sqrt(np.einsum("ij,ij->i", r, r))[:, None]
        out[s : s + u.shape[0]] = r / np.maximum(norm, np.float32(1e-30))
    return out


def _knn(unit: np.ndarray, k: int, method: str, threads: int, nprobe: int | None = None, recall: float = 0.95):
    if method == "exact":
        return _core.knn_exact(unit, k, threads)
    if method == "faiss":
        return _knn_cells(unit, k, threads, nprobe, recall)
    raise ValueError(f"knn method must be one of {_KNN_METHODS}, got {method!r}")


_CELL = 128  # points per inverted-file cell (BENCHMARKS.md: kNN graphs at millions of points)
_NPROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_RANKED = 8  # cells each point ranks for the recall ladder (its nearest centroids)
_BEAM = 3  # top-level groups whose cells a point ranks
_RECALL_SAMPLE = 512


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "knn method 'faiss' needs the optional dependency faiss: pip install faiss-cpu "
            "(or, in the alscale checkout, pip install \".[faiss]\")"
        ) from err
    return faiss


def _nearest(faiss, points: np.ndarray, centroids: np.ndarray, k: int = 1) -> np.ndarray:
    """(len(points), k) indices of the most similar centroids (inner product; faiss, chunked)."""
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    out = np.empty((points.shape[0], k), dtype=np.int64)
    for s in range(0, points.shape[0], 1 << 18):
        out[s : s + (1 << 18)] = index.search(points[s : s + (1 << 18)], k)[1]
    return out


def _kmeans(faiss, points: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """Unit centroids of spherical k-means (faiss, 10 iterations on at most 32 points a cell)."""
    if cells <= 1:
        c = points.sum(axis=0, dtype=np.float64)
        return (c / max(np.linalg.norm(c), 1e-30)).astype(np.float32)[None, :]
    km = faiss.Kmeans(points.shape[1], cells, niter=10, seed=seed, spherical=True,
                      max_points_per_centroid=32, min_points_per_centroid=1)
    km.train(points)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _cells(faiss, unit: np.ndarray, ranked: int):
    """Two-level spherical k-means: √L groups, each split into about (its points)/128 cells.

    Returns (cell, keys, best, cells): every point's cell (the most similar centroid among the
    cells of its ``_BEAM`` most similar groups), and for every pair (cell c, cell c') that some
    point of c ranks among its ``ranked`` most similar cells, key = c·cells + c' (sorted) and
    best = the smallest rank any point of c gives c' (c' = c: 0)."""
    n = unit.shape[0]
    groups = max(1, int(round(math.sqrt(max(1, n // _CELL)))))
    rng = np.random.default_rng(0)
    sample = unit if n <= 64 * groups else unit[np.sort(rng.choice(n, 64 * groups, replace=False))]
    top = _kmeans(faiss, sample, groups, 1)
    beam = min(groups, _BEAM)
    group = _nearest(faiss, unit, top, beam)  # (n, beam)
    order = np.argsort(group[:, 0], kind="stable")
    bounds = np.searchsorted(group[order, 0], np.arange(groups + 1))
    # Small faiss calls from here: one faiss thread (its OpenMP threads spin-wait for the next
    # region, which costs 10-40x on a busy machine; BENCHMARKS.md).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        indexes, first = [], np.zeros(groups + 1, dtype=np.int64)
        for g in range(groups):
            rows = order[bounds[g] : bounds[g + 1]]
            c = _kmeans(faiss, unit[rows], min(max(1, rows.size), max(1, int(round(rows.size / _CELL)))), 2 + g)
            index = faiss.IndexFlatIP(unit.shape[1])
            index.add(c)
            indexes.append(index)
            first[g + 1] = first[g] + c.shape[0]
        cells = int(first[-1])
        ranked = min(ranked, cells)
        cell = np.empty(n, dtype=np.int64)
        pairs = []
        step = 1 << 20
        for s in range(0, n, step):
            u, grp = unit[s : s + step], group[s : s + step]
            rows_n = u.shape[0]
            sims = np.full((rows_n, beam, ranked), -np.inf, dtype=np.float32)
            ids = np.full((rows_n, beam, ranked), -1, dtype=np.int64)
            for b in range(beam):
                o = np.argsort(grp[:, b], kind="stable")
                lim = np.searchsorted(grp[o, b], np.arange(groups + 1))
                for g in np.flatnonzero(np.diff(lim)):
                    r = o[lim[g] : lim[g + 1]]
                    kk = min(ranked, indexes[g].ntotal)
                    d, i = indexes[g].search(u[r], kk)
                    sims[r, b, :kk] = d
                    ids[r, b, :kk] = i + first[g]
            sims, ids = sims.reshape(rows_n, -1), ids.reshape(rows_n, -1)
            pick = np.argsort(-sims, axis=1, kind="stable")[:, :ranked]
            near = np.take_along_axis(ids, pick, axis=1)  # (rows, ranked), most similar first
            cell[s : s + step] = near[:, 0]
            rank = np.broadcast_to(np.arange(ranked), near.shape)
            ok = near >= 0
            pairs.append(_distinct(((near[:, :1] * cells + near) * ranked + rank)[ok]))
    finally:
        faiss.omp_set_num_threads(threads)
    code = _distinct(np.concatenate(pairs))  # sorted by (cell, cell', rank)
    keys = code // ranked
    firsts = np.ones(code.size, dtype=bool)
    firsts[1:] = keys[1:] != keys[:-1]
    return cell, keys[firsts], (code % ranked)[firsts], cells


def _distinct(a: np.ndarray) -> np.ndarray:
    """The distinct values of a, sorted."""
    a = np.sort(a)
    keep = np.ones(a.size, dtype=bool)
    keep[1:] = a[1:] != a[:-1]
    return a[keep]


def _knn_cells(unit: np.ndarray, k: int, threads: int, nprobe: int | None, recall: float,
               info: dict | None = None):
    """The "faiss" kNN graph; ``info`` (benchmarks) receives the cells, probes and stage times."""
    faiss = _faiss()
    if threads > 0:
        faiss.omp_set_num_threads(threads)
    info = {} if info is None else info
    t = time.perf_counter()
    ranked = min(max(_RANKED, nprobe or 0), 4 * _RANKED)
    cell, keys, best, cells = _cells(faiss, unit, ranked)
    ranked = min(ranked, cells)
    if nprobe is not None and nprobe >= cells:  # every cell scans every cell: exhaustive
        keys = np.arange(cells * cells, dtype=np.int64)
        best = np.zeros(keys.size, dtype=np.int64)
    info.update(cells=cells, cells_s=time.perf_counter() - t)
    t = time.perf_counter()
    if nprobe is None:
        # At least 2: with one, a cluster split over two cells has no edge across them.
        ladder = [p for p in _NPROBES if min(2, ranked) <= p < ranked] + [ranked]
        p, info["recall_estimate"] = _probes_for(faiss, unit, cell, keys, best, cells, k, recall, ladder)
    else:
        p = min(nprobe, ranked)
    scan = best < p  # cell c scans cell c' when one of its points ranks c' among its p nearest
    probes = np.ascontiguousarray(keys[scan] % cells, dtype=np.int64)
    probe_start = np.zeros(cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys[scan] // cells, minlength=cells), out=probe_start[1:])
    counts = np.bincount(cell, minlength=cells)
    cell_start = np.zeros(cells + 1, dtype=np.int64)
    np.cumsum(counts, out=cell_start[1:])
    info.update(nprobe=p, cells_scanned=round(probes.size / cells, 2),
                candidates_per_point=round(float((counts[keys[scan] // cells] * counts[probes]).sum()) / unit.shape[0], 1),
                probes_s=time.perf_counter() - t)
    t = time.perf_counter()
    cell_rows = np.argsort(cell, kind="stable").astype(np.int64)
    out = _core.knn_cells(unit, k, cell_start, cell_rows, probe_start, probes, threads)
    info["scan_s"] = time.perf_counter() - t
    return out


def _probes_for(faiss, unit: np.ndarray, cell: np.ndarray, keys: np.ndarray, best: np.ndarray, cells: int, k: int,
                recall: float, ladder: list[int]) -> tuple[int, float]:
    """The smallest probe count whose scanned cells hold ``recall`` of the exact k neighbours of
    sampled points (a true neighbour in a scanned cell is always found), and that fraction."""
    n = unit.shape[0]
    rng = np.random.default_rng(1)
    q = np.sort(rng.choice(n, min(n, _RECALL_SAMPLE), replace=False))
    truth = faiss.knn(unit[q], unit, k + 1, metric=faiss.METRIC_INNER_PRODUCT)[1]  # no copy of unit
    truth = np.array([[j for j in row if j != i][:k] for i, row in zip(q.tolist(), truth.tolist())])
    # needed: the probe count from which the true neighbour's cell is scanned for its query
    key = cell[q][:, None] * cells + cell[truth]
    at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    needed = np.where(keys[at] == key, best[at] + 1, np.iinfo(np.int64).max)
    p = next((p for p in ladder if np.mean(needed <= p) >= recall), ladder[-1])
    return p, float(np.mean(needed <= p))
