"""Cold-start selection on embeddings, for when the model knows too little to be uncertain about:
TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022) and ProbCover
(Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens", NeurIPS 2022).

Both work on L2-normalised embeddings (as both papers' code does with its self-supervised
features), where the squared Euclidean distance is 2 - 2·cos. k-means is faiss's (an optional
dependency: ``pip install faiss-cpu``); nearest neighbours are alscale's kNN kernels; ProbCover's
greedy coverage is a C++ kernel (csrc/coverage.cpp).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from . import _core
from ._backend import embeddings_of
from ._backend.arrays import as_budget, as_fraction, as_int, as_threads, check_random_state
from .knn import _knn, load_faiss

__all__ = ["probcover_delta", "select_probcover", "select_typiclust"]

#: TypiClust's official code drops clusters of at most this many points (served last here).
TYPICLUST_MIN_CLUSTER_SIZE = 5


def _faiss():
    return load_faiss("k-means for TypiClust and ProbCover", "; or pass clusters=")


def kmeans_labels(unit: np.ndarray, k: int, seed: int, num_threads: int = 0) -> np.ndarray:
    """faiss k-means (Lloyd, 20 iterations from random initial centroids drawn with ``seed``)
    of the float32 rows into min(k, N) clusters: the cluster of every row (int64)."""
    faiss = _faiss()
    if num_threads > 0:
        faiss.omp_set_num_threads(num_threads)
    k = min(k, unit.shape[0])
    km = faiss.Kmeans(unit.shape[1], k, niter=20, seed=int(seed % (2**31 - 1)), verbose=False)
    km.train(unit)
    return km.index.search(unit, 1)[1].ravel().astype(np.int64)


def _clusters(clusters: Any, n: int) -> np.ndarray:
    c = np.asarray(clusters)
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"clusters must hold one cluster id per row ({n}), got shape {c.shape}")
    if c.dtype.kind not in "iu" or (c.size and c.min() < 0):
        raise TypeError(f"clusters must be non-negative integer cluster ids, got {c.dtype}")
    return c.astype(np.int64)


# --------------------------------------------------------------------------- TypiClust


def select_typiclust(embeddings: Any, budget: Any, *, labeled: Any = None, neighbors: Any = 20, seed: Any = None,
                     clusters: Any = None, num_threads: int = 0, k: Any = None):
    """TypiClust: the most typical point of each of the largest clusters without a label.

    The rule of the paper's official code (avihu111/TypiClust, ``pycls/al/typiclust.py``):

    1. k-means (faiss, ``seed``) of the L2-normalised embeddings into |labeled| + B clusters
       (the code caps this at 500; alscale does not), unless ``clusters`` is given;
    2. clusters of more than 5 points are ordered by their number of labeled points
       (ascending), then by size (descending), then by their smallest row; they are served
       round-robin in that order, one pick per visit, a cluster with no unlabeled point left
       being skipped; clusters of at most 5 points (which the code drops) are served the same
       way only once the large ones are exhausted;
    3. a visited cluster gives its most typical unlabeled, not yet picked point, the typicality
       being computed *within the cluster's remaining points* (as in the code, not over the
       whole pool): typicality(x) = 1 / mean of ‖x - x_i‖² over the k' = min(k, m // 2) nearest
       others x_i among the m remaining points (squared distances, as faiss's IndexFlatL2
       returns them in the code; the paper's formula prints the plain distance), i.e. the point
       with the largest mean cosine similarity to its k' neighbours; ties to the smaller row.
       A cluster with one point left gives that point.

    Neighbours come from alscale's exact kNN kernel (float32 dot products); near-ties closer
    than float32 rounding may order differently from a float64 computation.

    Parameters
    ----------
    embeddings : array_like or torch.Tensor (host memory), shape (N, D)
        Finite, no all-zero row (a zero row has no direction).
    budget : int
        Rows to pick; clipped to the unlabeled rows.
    labeled : index array or boolean mask of shape (N,), optional
        Never picked; they count in their cluster's labeled number.
    neighbors : int, optional
        Neighbours for typicality (20, the paper's). (``k=`` is its old name: it still works, with
        a DeprecationWarning, until alscale 0.3.)
    seed : int >= 0 or numpy.random.Generator, optional
        The k-means seed.
    clusters : array_like of int, shape (N,), optional
        Cluster ids to use instead of k-means (e.g. a self-supervised clustering, as the
        paper's SCAN variant; or to reuse one).
    num_threads : int, optional
        OpenMP threads, 0 (default) for all cores; the picks do not depend on it.

    Returns
    -------
    indices : int64 numpy array (torch tensor for torch input), in pick order.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[1.0, 0.0]] * 3 + [[1.0, 0.2], [0.0, 1.0], [0.1, 1.0], [0.0, 1.0]])
    >>> alscale.select_typiclust(x, 2, neighbors=1, clusters=[0, 0, 0, 0, 1, 1, 1]).tolist()
    [0, 4]
    """
    pool = embeddings_of(embeddings, "select_typiclust", labeled=labeled)
    unit, lab, n = pool.unit, pool.labeled, pool.rows
    b = as_budget(budget)
    if k is not None:
        warnings.warn("select_typiclust(k=...) is renamed neighbors=... (removed in alscale 0.3)", DeprecationWarning,
                      stacklevel=2)
        neighbors = k
    kk = as_int(neighbors, "neighbors", minimum=1)
    threads = as_threads(num_threads)
    b = min(b, n - int(lab.sum()))
    if clusters is None:
        c = (np.zeros(n, dtype=np.int64) if b == 0 else
             kmeans_labels(unit, int(lab.sum()) + b, check_random_state(seed).integers(2**31 - 1), threads))
    else:
        c = _clusters(clusters, n)
    return pool.wrap(typiclust_picks(unit, c, lab, b, kk, threads))


def typiclust_picks(unit: np.ndarray, clusters: np.ndarray, labeled: np.ndarray, budget: int, k: int,
                    num_threads: int = 0) -> np.ndarray:
    """Steps 2 and 3 of :func:`select_typiclust` on unit rows, given the clusters."""
    n = unit.shape[0]
    ids, inverse = np.unique(clusters, return_inverse=True)
    size = np.bincount(inverse, minlength=ids.size)
    nlab = np.bincount(inverse[labeled], minlength=ids.size)
    first = np.full(ids.size, n, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(n))
    small = size <= TYPICLUST_MIN_CLUSTER_SIZE
    order = np.lexsort((first, -size, nlab, small))
    free = np.flatnonzero(~labeled)
    by_cluster = free[np.argsort(inverse[free], kind="stable")]  # ascending rows within each cluster
    cuts = np.cumsum(np.bincount(inverse[free], minlength=ids.size))[:-1]
    remaining = dict(enumerate(np.split(by_cluster, cuts)))
    picks: list[int] = []
    for phase in (False, True):
        ring = [int(c) for c in order if small[c] == phase and remaining[int(c)].size]
        while ring and len(picks) < budget:
            kept = []
            for c in ring:
                if len(picks) == budget:
                    break
                rows = remaining[c]
                at = _most_typical(unit[rows], k, num_threads)
                picks.append(int(rows[at]))
                remaining[c] = np.delete(rows, at)
                if remaining[c].size:
                    kept.append(c)
            ring = kept
    return np.asarray(picks, dtype=np.int64)


def _most_typical(points: np.ndarray, k: int, num_threads: int) -> int:
    """Position of the point with the smallest mean squared distance (2 - 2·cos) to its
    min(k, m // 2) nearest others; ties to the first."""
    kk = min(k, points.shape[0] // 2)
    if kk == 0:
        return 0
    _, sim = _core.knn_exact(np.ascontiguousarray(points), kk, num_threads)
    mean_sq = 2.0 - 2.0 * sim.astype(np.float64).mean(axis=1)
    return int(np.argmin(mean_sq))


# --------------------------------------------------------------------------- ProbCover


def _neighbours(unit: np.ndarray, neighbors: Any, knn_method: str, threads: int, graph: Any = None):
    """(indices, Euclidean distances) of every row's neighbours, nearest first: all others when
    ``neighbors`` is None (exact), else the ``neighbors`` nearest (clipped to N - 1), or those of
    a given ``graph`` (indices, cosine similarities) as :func:`alscale.knn_graph` returns."""
    n = unit.shape[0]
    if graph is not None:
        idx, sim = _given_graph(graph, n)
    elif n < 2:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0))
    elif neighbors is None:
        idx, sim = _core.knn_exact(unit, n - 1, threads)
    else:
        k = min(as_int(neighbors, "neighbors", minimum=1), n - 1)
        idx, sim = _knn(unit, k, knn_method, threads)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sim.astype(np.float64), 0.0))
    dist[idx < 0] = np.inf  # faiss found fewer than k
    return idx, dist


def _given_graph(graph: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(graph, tuple) or len(graph) != 2:
        raise TypeError("graph must be a tuple (indices, similarities) as alscale.knn_graph returns")
    idx, sim = np.asarray(graph[0]), np.asarray(graph[1])
    if idx.ndim != 2 or idx.shape[0] != n or sim.shape != idx.shape:
        raise ValueError(f"graph indices and similarities must both be (N, k) with N = {n} rows, "
                         f"got {idx.shape} and {sim.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"graph indices must be integers, got {idx.dtype}")
    if idx.size and (idx.max() >= n or idx.min() < -1):
        raise ValueError(f"graph indices must lie in [-1, {n}) (-1: no neighbour)")
    if (idx == np.arange(n)[:, None]).any():
        raise ValueError("graph indices list a row as its own neighbour")
    if sim.dtype.kind not in "fiu" or not np.isfinite(sim).all():
        raise ValueError("graph similarities must be finite real numbers")
    order = np.argsort(-np.where(idx < 0, -np.inf, sim.astype(np.float64)), axis=1, kind="stable")
    return np.take_along_axis(idx.astype(np.int64), order, axis=1), np.take_along_axis(sim, order, axis=1)


def _purity_delta(idx: np.ndarray, dist: np.ndarray, clusters: np.ndarray, purity: float) -> float:
    """The largest δ whose balls (points at distance < δ) are pure for a fraction >= ``purity``
    of the points. A point's ball is pure for every δ <= r, r being its distance to the nearest
    point of another cluster; on a kNN list without such a point r is the k-th distance (purity
    is only known up to there: the result is a lower bound of the exact δ), or, with every other
    point listed, infinite. The result is at most 2, the unit sphere's diameter."""
    n = idx.shape[0]
    exact = idx.shape[1] == n - 1 and bool((idx >= 0).all())  # every other point is listed
    other = (clusters[np.maximum(idx, 0)] != clusters[:, None]) & (idx >= 0)
    first = np.where(other.any(axis=1), other.argmax(axis=1) if idx.shape[1] else 0, -1)
    r = np.full(n, np.inf)
    has = first >= 0
    r[has] = dist[np.flatnonzero(has), first[has]]
    if not exact:  # purity is known up to the farthest listed neighbour (0 with none listed)
        listed = (idx >= 0).sum(axis=1)
        known = np.where(listed > 0, dist[np.arange(n), np.maximum(listed - 1, 0)] if idx.shape[1] else 0.0, 0.0)
        r[~has] = known[~has]
    m = max(1, int(purity * n))  # the fewest points that must be pure: smallest m with m / n >= purity
    while m > 1 and (m - 1) / n >= purity:
        m -= 1
    while m < n and m / n < purity:
        m += 1
    return float(min(np.sort(r)[::-1][m - 1], 2.0))


def probcover_delta(embeddings: Any, *, num_classes: Any = None, purity: Any = 0.95, clusters: Any = None,
                    neighbors: Any = None, knn_method: str = "exact", graph: Any = None, seed: Any = None,
                    num_threads: int = 0) -> float:
    """ProbCover's ball radius: the largest δ for which at least ``purity`` (α) of the points have
    a pure δ-ball, w.r.t. a k-means clustering into ``num_classes`` clusters (the paper's rule,
    Yehuda et al. 2022, section 4).

    A ball B_δ(x) = {y : ‖x - y‖ < δ} of the L2-normalised embeddings is pure when all its
    points share x's cluster, i.e. when δ <= r(x), the distance from x to the nearest point of
    another cluster; so δ is exactly the m-th largest r(x), m the fewest points with m / N >= α
    (no grid of δ values). Capped at 2, the unit sphere's diameter.

    ``neighbors=None`` is exact (every pair: N² distances, meant for N up to a few thousand).
    ``neighbors=k`` reads r(x) off x's k nearest neighbours: where none of them lies in another
    cluster, r(x) is taken as the k-th neighbour's distance (purity beyond it is not known), so
    the result is a lower bound of the exact δ, equal to it when every point has a point of
    another cluster among its k nearest; memory O(N·k).

    Parameters
    ----------
    embeddings : array_like or torch.Tensor (host memory), shape (N, D)
    num_classes : int
        Clusters of the k-means (the number of classes); not needed with ``clusters``.
    purity : float in (0, 1]
        α, 0.95 in the paper.
    clusters : array_like of int, shape (N,), optional
        A clustering to use instead of k-means.
    neighbors : int, optional
        k of the kNN graph (None: exact).
    knn_method : {"exact", "faiss", "ivf", "hnsw", "cells", "nndescent"}
        How the kNN graph is built (see :func:`alscale.knn_graph`; an approximate one promises
        recall@k 0.95: measured, or a RecallWarning).
    graph : tuple (indices, similarities), optional
        A kNN graph of the embeddings as :func:`alscale.knn_graph` returns ((N, k) neighbours,
        -1 = none, and their cosine similarities) to use instead of building one (e.g. to reuse
        it over rounds); ``neighbors`` and ``knn_method`` are then ignored.
    seed : int >= 0 or numpy.random.Generator, optional
        The k-means seed.
    num_threads : int, optional

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> round(alscale.probcover_delta(x, clusters=[0, 0, 1, 1], purity=1.0), 4)
    1.2665
    """
    unit = embeddings_of(embeddings, "probcover_delta").unit
    p = as_fraction(purity, "purity")
    threads = as_threads(num_threads)
    c = _clustering(unit, clusters, num_classes, seed, threads)
    idx, dist = _neighbours(unit, neighbors, knn_method, threads, graph)
    return _purity_delta(idx, dist, c, p)


def _clustering(unit: np.ndarray, clusters: Any, num_classes: Any, seed: Any, threads: int) -> np.ndarray:
    if clusters is not None:
        return _clusters(clusters, unit.shape[0])
    if num_classes is None:
        raise ValueError("ProbCover's δ needs num_classes (the k-means clusters of the purity rule), clusters, or delta")
    c = as_int(num_classes, "num_classes", minimum=1)
    return kmeans_labels(unit, c, check_random_state(seed).integers(2**31 - 1), threads)


def balls(idx: np.ndarray, dist: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """The δ-balls as CSR (indptr, members): row i's ball is i itself, then its listed
    neighbours at distance < δ, nearest first. From a kNN list a ball holds at most k + 1
    points: it is the exact ball when that has at most k + 1 points, else its k + 1 nearest."""
    n = idx.shape[0]
    inside = np.concatenate([np.ones((n, 1), dtype=bool), (dist < delta) & (idx >= 0)], axis=1)
    every = np.concatenate([np.arange(n, dtype=np.int64)[:, None], idx], axis=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(inside.sum(axis=1), out=indptr[1:])
    return indptr, np.ascontiguousarray(every[inside], dtype=np.int64)


def select_probcover(embeddings: Any, budget: Any, *, labeled: Any = None, delta: Any = None, purity: Any = 0.95,
                     num_classes: Any = None, clusters: Any = None, neighbors: Any = None, knn_method: str = "exact",
                     graph: Any = None, seed: Any = None, num_threads: int = 0):
    """ProbCover: greedy maximum coverage of δ-balls on the L2-normalised embeddings.

    The δ-graph has an edge x -> y when ‖x - y‖ < δ (x -> x included). The labeled points' balls
    are covered first; then each step picks the unlabeled point whose ball holds the most
    uncovered points (ties to the smaller row) and covers its ball. When no ball holds an
    uncovered point, the rest of the budget is drawn uniformly at random (``seed``) from the
    unlabeled rows, as the paper's code does. ``delta=None`` takes :func:`probcover_delta`.

    ``neighbors=None`` is exact (the complete graph; N² distances, for small N). ``neighbors=k``
    builds the balls from the k-nearest-neighbour graph, O(N·k) memory: a ball with more than
    k + 1 points (itself and k neighbours) is truncated to its k + 1 nearest, so the coverage
    counts are lower bounds; balls of at most k + 1 points are exact. The greedy loop is a C++
    kernel (a lazy max-heap: gains only fall), exact against a numpy reference and independent
    of the thread count.

    Parameters
    ----------
    embeddings : array_like or torch.Tensor (host memory), shape (N, D)
    budget : int
        Rows to pick; clipped to the unlabeled rows.
    labeled : index array or boolean mask of shape (N,), optional
    delta : float > 0, optional
        The ball radius (Euclidean, on unit rows: at most 2 matters).
    purity, num_classes, clusters, neighbors, knn_method, graph
        As in :func:`probcover_delta` (only used when ``delta`` is None, except ``neighbors``,
        ``knn_method`` and ``graph``, which also give the balls).
    seed : int >= 0 or numpy.random.Generator, optional
        The k-means seed and the random fill.
    num_threads : int, optional

    Returns
    -------
    indices : int64 numpy array (torch tensor for torch input), in pick order.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> alscale.select_probcover(x, 2, delta=0.3).tolist()
    [0, 3]
    """
    # the input checked once (embeddings, labeled), then the graph, then the coverage in one place
    pool = embeddings_of(embeddings, "select_probcover", labeled=labeled)
    b = as_budget(budget)
    threads = as_threads(num_threads)
    rng = check_random_state(seed)
    d = None if delta is None else _as_delta(delta)
    p = as_fraction(purity, "purity") if delta is None else None
    idx, dist = _neighbours(pool.unit, neighbors, knn_method, threads, graph)
    picks = _probcover_picks(pool.unit, idx, dist, pool.labeled, b, d, p, clusters, num_classes, rng, threads)
    return pool.wrap(picks)


def _as_delta(delta: Any) -> float:
    if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, (int, float, np.integer, np.floating)):
        raise TypeError(f"delta must be a positive real number, got {delta!r}")
    d = float(delta)
    if math.isnan(d) or d <= 0:
        raise ValueError(f"delta must be a positive distance, got {delta!r}")
    return d


def _probcover_picks(unit: np.ndarray, idx: np.ndarray, dist: np.ndarray, labeled: np.ndarray, budget: int,
                     delta: float | None, purity: float | None, clusters: Any, num_classes: Any,
                     rng: np.random.Generator, threads: int) -> np.ndarray:
    """ProbCover on the neighbour lists: δ by the purity rule when not given, the δ-balls, the
    greedy coverage and the random fill."""
    if delta is None:
        delta = _purity_delta(idx, dist, _clustering(unit, clusters, num_classes, rng, threads), purity)
    indptr, members = balls(idx, dist, delta)
    return coverage_picks(indptr, members, labeled, budget, rng, threads)


def coverage_picks(indptr: np.ndarray, members: np.ndarray, labeled: np.ndarray, budget: int,
                   rng: np.random.Generator, num_threads: int = 0) -> np.ndarray:
    """The greedy picks of :func:`select_probcover` given the balls (CSR), then the random fill."""
    n = labeled.shape[0]
    covered = np.zeros(n, dtype=np.uint8)
    counts = np.diff(indptr)
    covered[members[np.repeat(labeled, counts)]] = 1
    b = min(budget, n - int(labeled.sum()))
    picks, _ = _core.max_coverage(indptr, members, covered, (~labeled).astype(np.uint8), b, num_threads)
    if picks.size < b:
        free = ~labeled
        free[picks] = False
        rest = np.flatnonzero(free)
        picks = np.concatenate([picks, rng.choice(rest, b - picks.size, replace=False)])
    return picks.astype(np.int64)
