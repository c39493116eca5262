"""k-nearest-neighbour graphs by cosine similarity: exact (blocked brute force, CPU or CUDA) and
approximate at millions of points (faiss), for graph HAC, Cluster-Margin, TypiClust and ProbCover.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from . import _core
from ._backend import device as _gpu
from ._backend import host_only
from ._backend.arrays import as_int, as_points, as_threads, real_matrix, unit_rows

__all__ = ["auto_knn_method", "knn_graph"]

_KNN_METHODS = ("exact", "faiss")


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
