"""Average-linkage hierarchical clustering (UPGMA): exact, or on a k-nearest-neighbour graph.

The exact version gives scipy.cluster.hierarchy.linkage(x, "average", metric)'s merges and
heights (float32 distances, so heights agree to float32 rounding) in a quarter of the memory of
scipy's float64 condensed matrix. The graph version runs exact average linkage on a sparse
cosine-similarity graph (Dhulipala et al., ICML 2021) and scales to millions of points.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._backend import host_only
from ._backend.arrays import (
    as_float32_points,
    as_fraction,
    host_numpy,
    as_int,
    as_points,
    as_threads,
    unit_rows,
)
# The kNN graph lives in alscale.knn; these names stay importable from alscale.hac.
from .knn import (  # noqa: F401
    _CHUNK_ROWS,
    _knn,
    _knn_cells,
    _pca_unit,
    _unit_chunks,
    _unit_points,
    KnnGraph,
    RecallWarning,
    auto_knn_method,
    knn_graph,
    load_faiss,
)

__all__ = ["Clustering", "ComponentsWarning", "hac_average", "hac_average_graph", "knn_graph"]

_METRICS = dict(_core.Metric.__members__)  # the kernel's enum (csrc/hac.hpp HacMetric)


class ComponentsWarning(UserWarning):
    """Graph HAC was asked for fewer clusters than its graph has connected components: the
    result is the components themselves (more clusters than asked), not one cluster."""


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
                neighbors: Any = None, knn_method: str = "exact", recall: Any = 0.95,
                num_threads: int = 0) -> Clustering:
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
    two points have negative cosine similarity. An approximate ``knn_method`` keeps ``recall``
    (measured; :class:`alscale.knn.RecallWarning` where it cannot), and ``n_clusters`` below the
    graph's connected components gives the components (:class:`ComponentsWarning`).

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
    knn_method : {"exact", "faiss", "ivf", "hnsw", "cells", "nndescent"}
        How the graph version builds its kNN graph (see :func:`knn_graph`).
    recall : float in (0, 1], optional
        The promised recall@k of an approximate ``knn_method`` (see :func:`knn_graph`: measured,
        and a :class:`alscale.knn.RecallWarning` where it cannot be met).
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
    target = as_fraction(recall, "recall")
    idx, sim = _knn(unit, k, knn_method, threads, None, target)
    return _graph(unit.shape[0], idx, sim, t, k_clusters, threads)


def _graph(n: int, idx: np.ndarray, sim: np.ndarray, t: float, k_clusters: int, threads: int) -> Clustering:
    """Graph HAC on the (N, k) kNN arrays, which the kernel reads in place (int64 or int32
    neighbours, -1 = none; float32 similarities): no edge list is made."""
    if idx.dtype not in (np.int64, np.int32):
        idx = idx.astype(np.int64)
    idx = np.ascontiguousarray(idx)
    sim = np.ascontiguousarray(sim, dtype=np.float32)
    z, labels = _core.hac_average_knn_graph(idx, sim, t, k_clusters, threads)
    return _components_floor(z, labels, k_clusters)


def _components_floor(z: np.ndarray, labels: np.ndarray, k_clusters: int, stacklevel: int = 4) -> Clustering:
    """The n_clusters cut of a graph dendrogram, floored at the graph's connected components.

    Clusters that no edge joins merge last, at distance exactly 1 (the C - 1 last rows of Z for
    C components); those merges tie, so a maxclust cut below C would apply them all and give one
    cluster. Instead the result is the C components (labels numbered as usual, by smallest point),
    with a ComponentsWarning. The linkage is unchanged."""
    n = labels.shape[0]
    joins = int(np.count_nonzero(z[:, 2] >= 1.0))
    if k_clusters < 1 or joins + 1 <= k_clusters:
        return Clustering(labels, z)
    m = n - 1 - joins  # merges inside components
    parent = np.arange(2 * n - 1, dtype=np.int64)
    rows = z[:m, :2].astype(np.int64)
    parent[rows[:, 0]] = n + np.arange(m)
    parent[rows[:, 1]] = n + np.arange(m)
    while True:  # pointer jumping: every node to its root (log2 of the depth passes)
        up = parent[parent]
        if np.array_equal(up, parent):
            break
        parent = up
    roots, first, inverse = np.unique(parent[:n], return_index=True, return_inverse=True)
    rank = np.empty(roots.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(roots.size)
    warnings.warn(ComponentsWarning(
        f"the graph has {roots.size:,} connected components, more than the {k_clusters:,} clusters asked for: "
        f"returning the components as clusters (merges between them, at distance 1, join clusters with no edge "
        f"between them); a larger k (neighbors) or recall joins more of the graph"), stacklevel=stacklevel)
    return Clustering(rank[inverse.ravel()], z)


def hac_average_graph(graph: Any, *, threshold: Any = None, n_clusters: Any = None, num_threads: int = 0) -> Clustering:
    """Exact average linkage on a sparse similarity graph (missing edges count as similarity 0).

    The similarity of clusters A and B is w(A, B) = Σ s(a, b) / (|A| |B|) over the edges a–b
    between them; their distance is 1 - w (cosine distance for cosine-similarity graphs). The
    globally most similar pair is merged first (ties: the pair with the smaller representatives,
    a cluster's representative being its smallest point index). Clusters that no edge joins are
    merged last at distance 1, in order of representative. Edges are undirected; an edge given
    several times (e.g. in both directions) takes its largest similarity; self-loops and
    similarities <= 0 count as a missing edge. The result does not depend on the edge order.

    Connected components: those merges at distance 1 join clusters with no edge between them, so
    they carry no information. A cut into ``n_clusters`` fewer than the graph's C connected
    components therefore gives the C components themselves (the floor: more clusters than
    asked, never the single cluster those tied merges would give) and a :class:`ComponentsWarning`;
    the linkage still holds every merge, and ``threshold`` >= 1 still applies them.

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
    return _components_floor(z, labels, k_clusters, 3)


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
