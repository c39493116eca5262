"""k-nearest-neighbour graphs by cosine similarity: exact (blocked brute force, CPU or CUDA) and
approximate at millions of points (faiss's indexes, or alscale's cell scan), for graph HAC,
Cluster-Margin, TypiClust and ProbCover.

``recall=`` is a promise: an approximate graph's recall@k is measured after it is built, on the
exact neighbours of 1,000 sampled points, and returned with the graph (:class:`KnnGraph`); where
the target is missed, the search widens, and where it cannot be met within the stated bounds a
:class:`RecallWarning` says what was reached.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._backend import device as _gpu
from ._backend import host_only
from ._backend.arrays import (as_fraction, as_int, as_points, as_threads, real_matrix, release_pages, take_rows,
                              unit_rows)

__all__ = ["KnnGraph", "RecallWarning", "auto_knn_method", "knn_graph"]

_KNN_METHODS = ("exact", "faiss", "ivf", "hnsw", "cells", "lists", "nndescent")
# What knn_method="faiss" runs (BENCHMARKS.md, "kNN graphs at a promised recall"): "lists" where
# even its dearest ranking (lists of 64 points: N·(N/64)·D) is within _LISTS_FIRST — at 200K it was
# the fastest at recall 0.95 on separated blobs and Fashion-MNIST's pixels and tied faiss's IVF-Flat
# on overlapping blobs; beyond, the cell scan (its ranking grows about as N: 9M separated in 432 s),
# handing over to "lists" when its own estimate says it would miss the target (at 2M overlapping
# IVF's per-query scan behind an HNSW quantizer took 1,694 s for the graph, "lists" a fraction).
# faiss's NN-descent ("nndescent") was measured beside them and is slower everywhere measured
# (4x IVF's CPU time at 200K overlapping; at 2M overlapping 890 CPU s for recall 0.81), so the
# default does not hand over to it.
_DEFAULT_APPROX = "cells"
_LISTS_FIRST = 5e11  # multiply-adds: about 10 s on 2 cores (e.g. 250,000 x 64 or 80,000 x 784)


class RecallWarning(UserWarning):
    """An approximate kNN graph's measured recall@k is below the ``recall`` it was asked for
    (the search reached its time bound first); the message gives the measured figure."""


class _Pair(NamedTuple):
    indices: np.ndarray
    similarities: np.ndarray


class KnnGraph(_Pair):
    """A kNN graph: the tuple ``(indices, similarities)`` (it unpacks as two arrays, and every
    function taking a graph tuple takes it), with what was measured about it.

    Attributes
    ----------
    indices : numpy.ndarray of int64, shape (N, k)
    similarities : numpy.ndarray of float32, shape (N, k)
    recall : float
        The recall@k measured on the exact neighbours of ``info["recall_queries"]`` sampled
        points (1.0 for the exact graph, by construction).
    info : dict
        How it was built: ``method`` (the one that built it: "exact", "ivf", "hnsw", "cells",
        "nndescent"), its parameter (``nprobe``, ``efSearch``, or ``degree`` and ``iterations``), ``recall_queries``, ``target`` and stage
        times in seconds.
    """

    recall: float = math.nan  # instance attributes set by __new__ (class defaults for _make)
    info: dict = {}

    def __new__(cls, indices: np.ndarray, similarities: np.ndarray, recall: float = math.nan,
                info: dict | None = None) -> "KnnGraph":
        self = super().__new__(cls, indices, similarities)
        self.recall = float(recall)
        self.info = dict(info or {})
        return self

    def __repr__(self) -> str:
        n, k = self.indices.shape
        return f"KnnGraph(N={n}, k={k}, recall={self.recall:.4f}, method={self.info.get('method', '?')!r})"


_AUTO_EXACT_WORK = 1e11  # N²·D up to which auto_knn_method keeps the exact graph (seconds)


def auto_knn_method(n: int, features: int | None = None) -> str:
    """The kNN method for a graph of n points of ``features`` dimensions when the caller has no
    preference: ``"exact"`` where its work N²·D is at most 10¹¹ multiply-adds (e.g. 39,000 × 64
    or 11,000 × 784 points: seconds on 2 cores), beyond it ``"faiss"`` (the graph that keeps
    its recall promise, measured) if faiss is importable, else ``"exact"``. The exact graph of
    70,000 × 784 Fashion-MNIST pixels takes minutes, at millions of points hours. Without
    ``features`` (the form before it): ``"faiss"`` beyond 200,000 points."""
    import importlib.util

    if features is None:
        far = n > 200_000
    else:
        far = float(n) * n * as_int(features, "features", minimum=1) > _AUTO_EXACT_WORK
    return "faiss" if far and importlib.util.find_spec("faiss") is not None else "exact"


_UNSET: Any = object()


def knn_graph(x: Any, neighbors: Any = _UNSET, *, metric: str = "cosine", knn_method: str = "exact",
              recall: Any = 0.95, nprobe: Any = None, pca: Any = None, num_threads: int = 0,
              k: Any = _UNSET, method: Any = _UNSET) -> KnnGraph:
    """The k nearest neighbours of every point by cosine similarity, excluding the point itself.

    Approximate methods keep a promise: the returned graph's recall@k (the fraction of the
    exact k nearest neighbours it holds; a neighbour tied with the k-th in similarity counts) is
    measured after building on the exact neighbours of 1,000 sampled points (seeded: the same
    points every call; every point when N <= 1,000) and returned as ``.recall``. Below
    ``recall``, the search widens (IVF: more lists probed; HNSW: a larger efSearch; the cell scan:
    faiss's IVF instead) and is measured again; when the widening would cost more than a quarter
    of brute force's work, the exact graph is built instead if its work N²·D is at most 4·10¹²
    (e.g. 200,000 × 100 or 70,000 × 784; recall 1); beyond that the best graph found is returned
    with a :class:`RecallWarning` giving the measured recall — never silently.

    Memory: O(N·k + index): the (N, k) result (12 bytes an entry), the unit points (N·D float32,
    or N·pca) and the index (IVF-Flat and HNSW: a float32 copy of the points, plus 8 bytes a
    point for IVF's ids or 2·32·4 bytes for HNSW's links; IVF's centroids N/64·D and their HNSW
    links), searched in chunks of 65,536 queries; NN-descent: the float32 copy of the points in
    faiss's index plus its neighbourhoods, about 0.7 KB a point (measured: 1.9 GiB together at
    2M × 64, degree 16), then its (N, degree) int32 graph, re-ranked in chunks of 64 MB;
    "lists": a float32 copy of the points packed list by list (N·D·4 bytes, plus the lists'
    padding to 32 points), the rows' ranked lists, at most the (N, k) result's size at once (256
    MiB at least; beyond, spilled to TMPDIR: N·nprobe·4 bytes of disk, whatever the overlap; a
    TMPDIR in memory or without the room: held in memory, with a ResourceWarning), and
    per thread a chunk's inverted (query, list) pairs (at most 2²⁴ int32s) — 1.99 GiB peak at
    2M × 64 overlapping, nprobe 48;
    6.29 GiB for the whole Cluster-Margin run at 9M × 64 overlapping (lists of 256, nprobe 12);
    the cell scan's cell-pair lists grow with how much the data overlaps (O(N·ranked)), and
    exact adds (block) working space only.

    Parameters
    ----------
    x : array_like or torch.Tensor (CPU), shape (N, D)
        Finite, no zero rows; L2-normalised here into a float32 copy (chunk by chunk: no float64
        copy) — except a C-contiguous float32 array whose rows already have norm 1 (within
        10⁻⁶), which is used as given, without a copy (the similarities are then its rows' dot
        products).
    neighbors : int
        k, the neighbours of every point: 1 <= k < N. (``k=`` is its old name: it still works,
        with a DeprecationWarning, until alscale 0.3.)
    metric : {"cosine"}
    knn_method : {"exact", "faiss", "ivf", "hnsw", "cells", "lists", "nndescent"}
        (``method=`` is its old name: it still works, with a DeprecationWarning, until alscale 0.3.)
        "exact": blocked brute force in C++ (O(N² D), up to a few hundred thousand points; CUDA
        tensors: the GPU kernel).
        "faiss": approximate, for millions of points (needs faiss: ``pip install faiss-cpu``):
        "lists" where even its dearest ranking, N·(N/64)·D, is at most 5·10¹¹ multiply-adds
        (e.g. 250,000 × 64); beyond, "cells", which hands over to "lists" where it would miss
        ``recall`` — together the fastest at recall 0.95 across separated blobs, overlapping
        blobs (at 2M: "lists" in a fraction of faiss IVF's time) and Fashion-MNIST in
        BENCHMARKS.md ("kNN graphs at a promised recall"). Up to 5,000 points the exact graph
        (cheaper than any index).
        "ivf": faiss IndexIVFFlat, inner product, about N/64 lists (spherical k-means, 10
        iterations on 32 points a list; beyond 256 lists two-level: √lists groups, each split);
        beyond 4,096 lists the coarse quantizer is an HNSW graph of the centroids (a flat one
        costs N·nlist·D); ``nprobe`` (at least 2, so that a cluster split over two lists
        keeps edges across them) tuned on 1,000 sampled points to reach ``recall``.
        "hnsw": faiss IndexHNSWFlat (M = 32, efConstruction 40); efSearch tuned likewise.
        "cells": alscale's hand-written cell scan (two-level spherical k-means into ~128-point
        cells; each cell compared exactly with the cells its points rank among their ``nprobe``
        first); below ``recall`` it hands over to "lists" (skipping its scan when its own
        estimate is already 0.02 below).
        "lists": alscale's inverted file searched GEMM-shaped (csrc/knn_lists.hpp): lists of
        about S points (trained as "ivf"'s); every point ranks every centroid exactly
        (O(N·N/S·D)) and is compared with the points of its first ``nprobe`` lists, list by list
        in tiles of 8 queries × 32 points, not query by query as faiss's IVF scan. S (32 to 1,024
        points) and nprobe are tuned together, exactly, on 1,000 sampled points (a neighbour is
        found iff its list is among its query's nprobe; nprobe at most a quarter of the lists):
        the pair reaching ``recall`` with the least work N·(N/S)·D + 2·N·nprobe·S·D, so lists
        about the size of the data's clusters (BENCHMARKS.md: S = 64 at 2M overlapping blobs,
        256 at 9M). A fixed ``nprobe`` keeps S = 64. Memory: a packed copy of the points and
        the ranked lists, held at most the result's size at a time (the rest spilled to TMPDIR).
        "nndescent": faiss IndexNNDescentFlat (NN-descent: local joins of neighbours' neighbours
        from a random graph; 10 new and 100 reverse neighbours sampled a point and iteration)
        with degree 1.6·k and 10 iterations, its rows re-ranked here by similarity (ties to the
        smaller index) and cut to k; below ``recall`` rebuilt at degree 2.4·k, 12 iterations,
        then 3.2·k, 16 (each a fresh build: its time bound). Up to 1,000 points, or where
        16·(degree + 10) > N (faiss's candidate pools may not fill: it aborts), the exact graph.
        With more than one thread its graph may differ between calls (faiss's threads race);
        ``num_threads=1`` gives the same graph every call.
    recall : float in (0, 1], optional
        The promised recall@k of an approximate method (see above); ignored by "exact".
    nprobe : int, optional
        Fixes the search breadth instead of tuning it to ``recall`` (IVF lists or cells probed,
        HNSW efSearch, NN-descent iterations); the recall is still measured and returned, without a warning. At least
        the number of lists or cells: the exact graph.
    pca : int, optional
        First project the L2-normalised points on their top ``pca`` principal directions
        (uncentred, so ``pca`` = D keeps every cosine; faiss ``PCAMatrix`` trained on at most
        65,536 sampled points, applied chunk by chunk: memory N·pca), e.g. 2048-d CNN features
        to 128 (BENCHMARKS.md measures what it does to the clustering). Needs faiss. The recall
        is measured against the exact neighbours of the reduced points.
    num_threads : int, optional

    Returns
    -------
    KnnGraph
        Unpacks as ``indices, similarities``:
        indices, numpy.ndarray of int64, shape (N, k): neighbours by descending similarity (exact:
        ties to the smaller index); -1 where fewer than k were found.
        similarities, numpy.ndarray of float32, shape (N, k): 0 where the index is -1.
        ``.recall`` is the measured recall@k and ``.info`` how it was built.

    Warns
    -----
    RecallWarning
        When the measured recall is below ``recall`` after the widest search within the bounds.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    >>> idx, sim = alscale.knn_graph(x, 1)
    >>> idx.ravel()
    array([1, 0, 1])
    >>> alscale.knn_graph(x, 1).recall
    1.0
    """
    neighbors = _renamed(neighbors, k, "neighbors", "k")
    knn_method = _renamed(knn_method, method, "knn_method", "method", default="exact")
    method, k = knn_method, neighbors
    if metric != "cosine":
        raise ValueError(f"metric must be 'cosine', got {metric!r}")
    threads = as_threads(num_threads)
    if method not in _KNN_METHODS:
        raise ValueError(f"knn method must be one of {_KNN_METHODS}, got {method!r}")
    if method == "exact" and _gpu.wants(x, "x"):  # CUDA points: the GPU kernel, same graph
        idx, sim = _gpu.knn_graph(x, as_int(k, "k", minimum=1))
        return KnnGraph(idx, sim, 1.0, {"method": "exact", "recall_queries": 0})
    host_only(x, f"knn_graph(knn_method={method!r})", "x")
    kk = as_int(k, "k", minimum=1)
    target = as_fraction(recall, "recall")
    probes = None if nprobe is None else as_int(nprobe, "nprobe", minimum=1)
    dims = None if pca is None else as_int(pca, "pca", minimum=1)
    unit = _as_unit(x) if dims is None else _pca_unit(x, dims)
    if kk >= unit.shape[0]:
        raise ValueError(f"k must be less than the number of points ({unit.shape[0]}), got {kk}")
    return _knn(unit, kk, method, threads, probes, target)


def _renamed(new: Any, old: Any, new_name: str, old_name: str, default: Any = _UNSET) -> Any:
    """knn_graph's renamed keywords (alscale 0.2): the old one still works, with a
    DeprecationWarning naming the new form, until alscale 0.3."""
    if old is _UNSET:
        if new is _UNSET:
            raise TypeError(f"knn_graph() missing required argument: '{new_name}'")
        return new
    if new is not _UNSET and new != default:
        raise TypeError(f"knn_graph() got both {new_name}= and its old name {old_name}=; pass {new_name}= only")
    warnings.warn(f"knn_graph({old_name}=...) is renamed knn_graph({new_name}=...); {old_name}= will be removed "
                  "in alscale 0.3", DeprecationWarning, stacklevel=3)
    return old


_CHUNK_ROWS = 1 << 16  # rows of 64 features a chunk; the PCA's training sample
_CHUNK_VALUES = _CHUNK_ROWS * 64  # a chunk's values: 32 MiB in float64 whatever the width


def _chunk_rows(features: int) -> int:
    return max(1, _CHUNK_VALUES // max(1, features))


def _row_scales(b: np.ndarray, start: Any, name: str) -> np.ndarray:
    """Each row's largest |entry| (max and -min: no |b| copy); a ValueError naming the first
    row (start + its index, or start[its index] for an array of row ids) with NaN or inf, then
    the first all-zero row."""
    scale = np.maximum(b.max(axis=1), -b.min(axis=1))
    row = (lambda i: int(start[i])) if isinstance(start, np.ndarray) else (lambda i: start + i)
    bad = ~np.isfinite(scale)
    if bad.any():
        raise ValueError(f"{name} contains NaN or inf at row {row(int(np.argmax(bad)))}")
    zero = ~(scale > 0)
    if zero.any():
        raise ValueError(f"{name} row {row(int(np.argmax(zero)))} has zero norm: cosine distance is undefined for it")
    return scale


def _unit_chunks(x: Any, name: str = "x"):
    """(start, float32 unit rows) for chunks of x: as_points + unit_rows without an (N, D)
    float64 copy; errors name the row in x."""
    a = real_matrix(x, name, "points")
    if a.shape[0] < 2 or a.shape[1] == 0:
        as_points(a, name)  # raises: too few points / no features
    step = _chunk_rows(a.shape[1])
    for s in range(0, a.shape[0], step):
        b = a[s : s + step]
        _row_scales(b, s, name)
        u = unit_rows(np.asarray(b, dtype=np.float64), name)
        release_pages(b)  # a memmap (e.g. 9M × 2048 on disk) keeps one chunk resident
        yield s, u


def _unit_points(x: Any, name: str = "x") -> np.ndarray:
    """The rows of x scaled to unit L2 norm, float32 (N, D), validated chunk by chunk."""
    a = real_matrix(x, name, "points")
    out = np.empty(a.shape, dtype=np.float32)
    for s, u in _unit_chunks(a, name):
        out[s : s + u.shape[0]] = u
    return out


def _as_unit(x: Any, name: str = "x") -> np.ndarray:
    """x itself where it is already what _unit_points would give up to rounding — a C-contiguous
    float32 numpy array of finite rows of norm 1 within _UNIT_TOL, checked chunk by chunk — so
    that no second N·D copy is made (2.1 GiB at 9M × 64); else _unit_points(x)."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous
            and x.shape[0] >= 2 and x.shape[1] > 0):
        return _unit_points(x, name)
    step = _chunk_rows(x.shape[1])
    for s in range(0, x.shape[0], step):
        b = x[s : s + step]
        norm = np.sqrt(np.einsum("ij,ij->i", b, b, dtype=np.float64))
        if not (np.abs(norm - 1.0) <= _UNIT_TOL).all():  # NaN rows too
            return _unit_points(x, name)
    return x


_UNIT_TOL = 1e-6  # rows of norm 1 within this are unit rows as given (float32 rounding: ~1e-7)


def _pca_unit(x: Any, dims: int, name: str = "x", rows: np.ndarray | None = None) -> np.ndarray:
    """Unit rows of x reduced to ``dims`` dimensions by uncentred PCA (the top eigenvectors of
    their second-moment matrix: faiss PCAMatrix trained on at most 65,536 sampled unit rows and
    their negatives), then scaled to unit norm again. The rows are projected as they are (each
    scaled by its largest entry, in float32): the projection of the unit row has the same
    direction, so no float64 unit copy of a wide chunk is made (9M × 2048 features). ``rows``
    (sorted ids): only those rows, as ``x[rows]`` would give them, without copying x."""
    faiss = load_faiss()
    a = real_matrix(x, name, "points")
    if dims > a.shape[1]:
        raise ValueError(f"pca must be at most the number of features ({a.shape[1]}), got {dims}")
    if a.shape[0] < 2:
        as_points(a, name)  # raises: too few points
    rng = np.random.default_rng(0)
    n = a.shape[0] if rows is None else rows.size
    sample = np.arange(n) if n <= _CHUNK_ROWS else np.sort(rng.choice(n, _CHUNK_ROWS, replace=False))
    pca = faiss.PCAMatrix(a.shape[1], dims)
    ids = sample if rows is None else rows[sample]
    picked = take_rows(a, ids)
    _row_scales(picked, ids, name)  # a bad sampled row named by its row in x
    u = _unit_points(picked, name)
    pca.train(np.concatenate([u, -u]))  # mean 0: uncentred, so that pca = D keeps every cosine
    del u
    out = np.empty((n, dims), dtype=np.float32)
    step = _chunk_rows(a.shape[1])
    o = 0
    for s in range(0, a.shape[0], step):
        b = a[s : s + step]
        ids: Any = s
        part = b
        if rows is not None:  # this chunk's rows among ``rows``
            lo, hi = np.searchsorted(rows, [s, s + b.shape[0]])
            ids = rows[lo:hi]
            part = b if ids.size == b.shape[0] else b[ids - s]
        if part.shape[0]:
            wide = part.dtype.itemsize > 4 or part.dtype.kind != "f"  # float64, ints: scaled before the cast
            c = np.asarray(part, dtype=np.float64 if wide else np.float32)
            scale = _row_scales(c, ids, name)
            c = np.divide(c, scale[:, None], out=c if c is not b else None)
            r = pca.apply(np.ascontiguousarray(c, dtype=np.float32))
            norm = np.sqrt(np.einsum("ij,ij->i", r, r))[:, None]
            out[o : o + r.shape[0]] = r / np.maximum(norm, np.float32(1e-30))
            o += r.shape[0]
        release_pages(b)  # a memmap (e.g. 9M × 2048 on disk) keeps one chunk resident
    return out


def _knn(unit: np.ndarray, k: int, method: str, threads: int, nprobe: int | None = None,
         recall: float = 0.95) -> KnnGraph:
    """The kNN graph of unit rows by ``method``, keeping the recall promise (see knn_graph)."""
    if method not in _KNN_METHODS:
        raise ValueError(f"knn method must be one of {_KNN_METHODS}, got {method!r}")
    if method == "exact":
        return _exact(unit, k, threads, {})
    faiss = load_faiss()
    if threads > 0:
        faiss.omp_set_num_threads(threads)
    n = unit.shape[0]
    if method == "faiss":
        if n <= _SMALL and nprobe is None:
            return _exact(unit, k, threads, {"asked": "faiss", "why": f"N <= {_SMALL:,}: exact is cheapest"})
        method = "lists" if float(n) * (n / _IVF_LIST) * unit.shape[1] <= _LISTS_FIRST else _DEFAULT_APPROX
    info: dict = {"target": recall}
    if method == "cells":
        t = time.perf_counter()
        cells_info: dict = {}
        # the estimate (512 sampled points' true neighbours in scanned cells) is the scan's
        # recall up to sampling noise: clearly below the target, the scan is not run
        out = _knn_cells(unit, k, threads, nprobe, recall, cells_info, skip_below=recall - 0.02)
        info.update(method="cells", nprobe=cells_info["nprobe"], build_s=time.perf_counter() - t,
                    cells=cells_info["cells"])
        scanned = out is not None
        if out is None:
            got = cells_info["recall_estimate"]
            info.update(measure_s=0.0, cells_estimate=got)
        else:
            idx, sim = out
            got, _ = _measure(faiss, unit, k, idx, info)
            if got >= recall or nprobe is not None:
                return KnnGraph(idx, sim, got, info)
            del idx, sim, out
        # below the target: another index
        info = {"target": recall, "cells_recall": got, "cells_nprobe": info["nprobe"],
                "cells_s": info["build_s"] + info["measure_s"], "cells_scan_run": scanned}
        method = "lists"
    if method == "lists":
        return _knn_lists(faiss, unit, k, threads, nprobe, recall, info)
    if method == "nndescent":
        return _knn_nndescent(faiss, unit, k, threads, nprobe, recall, info)
    return _knn_index(faiss, unit, k, threads, method, nprobe, recall, info)


_SMALL = 5000  # knn_method="faiss" up to here: the exact graph (cheaper than building an index)
_RECALL_QUERIES = 1000  # sampled points on which recall@k is tuned, and then measured
_EXACT_WORK = 4e12  # N²·D up to which a missed target falls back to the exact graph
_MAX_SCAN = 0.25  # IVF probes at most this fraction of the lists (then exact or a warning)
_IVF_LIST = 64  # points per IVF list (BENCHMARKS.md: kNN graphs at a promised recall)
_FLAT_QUANTIZER = 4096  # lists up to which the coarse quantizer is flat (beyond: HNSW)
_FLAT_KMEANS = 256  # lists up to which they are trained by flat k-means (beyond: two-level)
_QUANTIZER_EF = 64  # the HNSW coarse quantizer's efSearch, at least
_IVF_PROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
_HNSW_M = 32
_HNSW_EF = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
_SEARCH_ROWS = 1 << 16


def _exact(unit: np.ndarray, k: int, threads: int, info: dict) -> KnnGraph:
    t = time.perf_counter()
    idx, sim = _core.knn_exact(unit, k, threads)
    return KnnGraph(idx, sim, 1.0, {**info, "method": "exact", "recall": 1.0, "recall_queries": 0,
                                    "build_s": time.perf_counter() - t})


def _sample(n: int, seed: int) -> np.ndarray:
    if n <= _RECALL_QUERIES:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, _RECALL_QUERIES, replace=False))


def _drop_self(ids: np.ndarray, sims: np.ndarray | None, rows: np.ndarray, k: int):
    """(m, k+1) search results of rows themselves -> (m, k) without the row (or, where the row
    is not among them, without the last); -1 entries get similarity 0."""
    m = ids.shape[0]
    pos = np.where(ids == rows[:, None], np.arange(k + 1), k).min(axis=1)
    keep = np.ones(ids.shape, dtype=bool)
    keep[np.arange(m), pos] = False
    out_i = ids[keep].reshape(m, k)
    if sims is None:
        return out_i, None
    out_s = sims[keep].reshape(m, k)
    out_s[out_i < 0] = 0.0
    return out_i, out_s


def _true_ids(faiss, unit: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The exact k nearest other rows of each sampled row, (m, k) (``_brute``, on faiss's thread
    count: the caller's ``num_threads`` where it gave one)."""
    return _drop_self(_brute(unit, q, k + 1, faiss.omp_get_max_threads())[0], None, q, k)[0]


_BRUTE_ROWS = 1 << 20  # rows ranked at a time against the sampled rows by _brute (a packed copy)


def _brute(unit: np.ndarray, q: np.ndarray, kk: int, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` most similar rows of ``unit`` to each row of ``unit[q]`` (itself included),
    exactly: (m, kk) int64 ids and float64 similarities, most similar first, ties to the smaller
    row. Chunks of at most _BRUTE_ROWS rows, at least one a thread, are ranked by
    knn_rank_lists (float32 dot products in tiles), their candidates merged by float64
    similarity. (faiss's brute force takes its one-dot-at-a-time path below 128,000 queries:
    5x slower for these samples, BENCHMARKS.md.)"""
    n = unit.shape[0]
    kk = min(kk, n)
    queries = np.ascontiguousarray(unit[q])
    workers = threads if threads > 0 else (os.cpu_count() or 1)
    step = max(1, min(_BRUTE_ROWS, -(-n // workers)))  # at least a chunk a thread

    def part(s: int) -> np.ndarray:
        rows = unit[s : s + step]
        return _core.knn_rank_lists(queries, rows, min(kk, rows.shape[0]), num_threads=1).astype(np.int64) + s

    starts = range(0, n, step)
    workers = min(len(starts), workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        cand = np.concatenate(list(pool.map(part, starts)), axis=1)
    sims = np.empty(cand.shape)
    a = queries.astype(np.float64)
    for j in range(cand.shape[1]):  # a column at a time: no (m, candidates, D) gather
        sims[:, j] = np.einsum("md,md->m", a, unit[cand[:, j]])
    order = _by_similarity(cand, sims)[:, :kk]
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(sims, order, axis=1)


def _truth(faiss, unit: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest similarity of each sampled row to another row (float64 from the float32
    unit rows), from faiss's exact brute force."""
    return _sims(unit, q, _true_ids(faiss, unit, q, k)).min(axis=1)


def _sims(unit: np.ndarray, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    a = unit[q].astype(np.float64)
    b = unit[np.maximum(ids, 0)].astype(np.float64)
    s = np.einsum("md,mkd->mk", a, b)
    s[ids < 0] = -np.inf
    return s


def _hits(unit: np.ndarray, q: np.ndarray, ids: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Per sampled row: the fraction of its k graph neighbours that are among its exact k
    nearest (similarity at least the k-th exact one, so that ties count)."""
    ok = (ids >= 0) & (ids != q[:, None]) & (_sims(unit, q, ids) >= kth[:, None] - 1e-9)
    return ok.mean(axis=1)


def _measure(faiss, unit: np.ndarray, k: int, idx: np.ndarray, info: dict) -> tuple[float, float]:
    """The built graph's recall@k on the measuring sample (seed 2) and its standard error;
    recorded in ``info``."""
    t = time.perf_counter()
    q = _sample(unit.shape[0], 2)
    row = _hits(unit, q, idx[q], _truth(faiss, unit, q, k))
    got, se = float(row.mean()), float(row.std() / math.sqrt(row.size))
    info.update(recall=round(got, 4), recall_queries=int(q.size), measure_s=time.perf_counter() - t)
    return got, se


def _search(index, unit: np.ndarray, rows: np.ndarray | None, k: int):
    """(indices, similarities) of the k nearest other rows, by index.search of k + 1."""
    if rows is not None:
        d, i = index.search(unit[rows], k + 1)
        return _drop_self(i, d, rows, k)
    n = unit.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, _SEARCH_ROWS):
        rows_s = np.arange(s, min(n, s + _SEARCH_ROWS))
        d, i = index.search(unit[s : s + _SEARCH_ROWS], k + 1)
        idx[s : s + rows_s.size], sim[s : s + rows_s.size] = _drop_self(i, d, rows_s, k)
    return idx, sim


def _build_index(faiss, unit: np.ndarray, method: str):
    """(index, name of its search parameter, ladder of values within the time bound)."""
    n, d = unit.shape
    if method == "hnsw":
        index = faiss.IndexHNSWFlat(d, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.add(unit)
        return index, "efSearch", list(_HNSW_EF)
    centroids = _trained_lists(faiss, unit)
    nlist = centroids.shape[0]
    if nlist > _FLAT_QUANTIZER:  # N·nlist·D to assign with a flat one: an HNSW graph of the centroids
        quantizer = faiss.IndexHNSWFlat(d, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        quantizer.hnsw.efConstruction = 40
    else:
        quantizer = faiss.IndexFlatIP(d)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True  # (the constructor keeps the quantizer alive with the index)
    _set(index, "nprobe", 1)
    for s in range(0, n, _SEARCH_ROWS):
        index.add(unit[s : s + _SEARCH_ROWS])
    # At least 2 lists (as the cell scan's 2 cells): with one, a cluster split over two lists has
    # no edge across them, and graph HAC keeps its halves apart whatever the recall.
    top = max(min(2, nlist), int(_MAX_SCAN * nlist))
    ladder = [p for p in _IVF_PROBES if min(2, nlist) <= p < top] + [top]
    return index, "nprobe", ladder


def _trained_lists(faiss, unit: np.ndarray, size: int = _IVF_LIST) -> np.ndarray:
    """The unit centroids of about N/size lists ("ivf" and "lists"): two-level spherical k-means
    on 32 sampled points a list (seed 3)."""
    n = unit.shape[0]
    nlist = max(1, n // size)
    rng = np.random.default_rng(3)
    train = unit if n <= 32 * nlist else unit[np.sort(rng.choice(n, 32 * nlist, replace=False))]
    return _two_level(faiss, train, nlist)


def _two_level(faiss, sample: np.ndarray, lists: int) -> np.ndarray:
    """About ``lists`` unit centroids of the sample by two-level spherical k-means (√lists groups,
    each split in proportion to its points; 10 iterations on at most 32 points a centroid):
    O(m·√lists·D) a pass instead of flat k-means's O(m·lists·D). The groups' k-means run on the
    threads side by side, one faiss thread each (its spinning OpenMP threads cost more than they
    give on calls this small); each is seeded, so the centroids do not depend on the threads."""
    if lists <= _FLAT_KMEANS:
        return _kmeans(faiss, sample, lists, 1234)
    groups = max(1, int(round(math.sqrt(lists))))
    threads = faiss.omp_get_max_threads()
    top = _kmeans(faiss, sample, groups, 1234)
    group = _nearest(sample, top)[:, 0]
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(groups + 1))

    def split(g: int) -> np.ndarray | None:
        rows = order[bounds[g] : bounds[g + 1]]
        if not rows.size:
            return None
        faiss.omp_set_num_threads(1)  # this thread's OpenMP setting
        want = min(rows.size, max(1, int(round(lists * rows.size / sample.shape[0]))))
        return _kmeans(faiss, sample[rows], want, 1235 + g)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        parts = [c for c in pool.map(split, range(groups)) if c is not None]
    return np.ascontiguousarray(np.concatenate(parts))


def _set(index, param: str, value: int) -> None:
    if param == "efSearch":
        index.hnsw.efSearch = value
        return
    index.nprobe = value
    quantizer = load_faiss().downcast_index(index.quantizer)
    if hasattr(quantizer, "hnsw"):  # its candidate list: 2x the lists probed
        quantizer.hnsw.efSearch = max(_QUANTIZER_EF, 2 * value)


def _knn_index(faiss, unit: np.ndarray, k: int, threads: int, method: str, fixed: int | None, recall: float,
               info: dict) -> KnnGraph:
    """faiss IVF-Flat or HNSW-Flat: the search parameter tuned on sample A (seed 1) to reach
    ``recall`` with two standard errors to spare, the whole graph searched, its recall measured on
    sample B (seed 2); missed: the next parameter, then exact or a RecallWarning."""
    n, d = unit.shape
    t = time.perf_counter()
    index, param, ladder = _build_index(faiss, unit, method)
    info.update(method=method, build_s=time.perf_counter() - t)
    if method == "ivf":
        info["nlist"] = index.nlist
        info["quantizer"] = "hnsw" if index.nlist > _FLAT_QUANTIZER else "flat"
        if fixed is not None and fixed >= index.nlist:  # every list: exhaustive, i.e. exact
            del index
            return _exact(unit, k, threads, info)
    t = time.perf_counter()
    if fixed is not None:
        ladder = [fixed]
    else:
        qa = _sample(n, 1)
        kth = _truth(faiss, unit, qa, k)
        start, top = len(ladder) - 1, 0.0
        for j, value in enumerate(ladder):
            _set(index, param, value)
            row = _hits(unit, qa, _search(index, unit, qa, k)[0], kth)
            top = max(top, float(row.mean()))
            if row.mean() - 2 * row.std() / math.sqrt(row.size) >= recall:
                start = j
                break
        ladder = ladder[start:]
        info["tune_s"] = time.perf_counter() - t
        if top < recall and float(n) * n * d <= _EXACT_WORK:  # out of reach within the bound: exact now
            del index
            return _exact(unit, k, threads, {**info, "approx_recall": round(top, 4)})
    info["tune_s"] = time.perf_counter() - t
    best = None
    search_s = 0.0
    for value in ladder:
        _set(index, param, value)
        t = time.perf_counter()
        idx, sim = _search(index, unit, None, k)
        search_s += time.perf_counter() - t
        info.update({param: value, "search_s": search_s})
        got, best = _better(faiss, unit, k, idx, sim, info, best)
        if got >= recall or fixed is not None:
            return KnnGraph(idx, sim, got, info)
        del idx, sim
        if n <= _RECALL_QUERIES:  # measured on every row: the tuning sample saw it all
            break
    del index
    return _missed(unit, k, threads, recall, best, info,
                   f"{method} at {param} {best[3][param]} is its time bound (a quarter of brute force)")


def _better(faiss, unit: np.ndarray, k: int, idx: np.ndarray, sim: np.ndarray, info: dict,
            best: tuple | None) -> tuple[float, tuple]:
    """The graph's measured recall, and the best (indices, similarities, recall, info) so far."""
    got, _ = _measure(faiss, unit, k, idx, info)
    return got, (idx, sim, got, dict(info)) if best is None or got > best[2] else best


def _missed(unit: np.ndarray, k: int, threads: int, recall: float, best: tuple, info: dict, bound: str) -> KnnGraph:
    """Below ``recall`` at the widest search: the exact graph where its work N²·D is within
    _EXACT_WORK, else the best graph found (indices, similarities, recall, its info) with a
    RecallWarning saying what bounded the search."""
    n, d = unit.shape
    if float(n) * n * d <= _EXACT_WORK:
        return _exact(unit, k, threads, {**info, "approx_recall": round(best[2], 4)})
    idx, sim, got, info = best
    warnings.warn(RecallWarning(
        f"kNN graph recall@{k} is {got:.4f} (measured on {info['recall_queries']:,} sampled points), below the "
        f"requested {recall}: {bound} and the exact graph of {n:,} x {d} is beyond {_EXACT_WORK:.0e} "
        f"multiply-adds; pass knn_method='exact' or another method, or a smaller recall"), stacklevel=5)
    return KnnGraph(idx, sim, got, info)


# NN-descent (faiss IndexNNDescentFlat): the rungs of its ladder, (graph degree as a multiple of
# k, iterations), each a fresh build; S new neighbours sampled a point and iteration, R reverse
# ones, a candidate pool of the degree + _NND_POOL (BENCHMARKS.md: kNN graphs at a promised recall).
_NND_LADDER = ((1.6, 10), (2.4, 12), (3.2, 16))
_NND_S, _NND_R, _NND_POOL = 10, 100, 10
_NND_MIN = 1000  # knn_method="nndescent" up to this many points: the exact graph (faiss's needs > 100)
# Its pools must reach the degree: near N/4 on clustered data they did not (faiss then aborts the
# process); up to N/16 they always did in tests. Beyond: the exact graph (N <= 16·(degree + 10)).
_NND_SPARSE = 16
_GATHER_FLOATS = 1 << 24


def _knn_nndescent(faiss, unit: np.ndarray, k: int, threads: int, fixed: int | None, recall: float,
                   info: dict) -> KnnGraph:
    """faiss NN-descent: the graph of degree K >= k built by local joins from a random one, its
    own neighbours re-ranked by similarity here, measured on sample B (seed 2); missed: the next
    rung of _NND_LADDER (a larger degree, more iterations), then exact or a RecallWarning.
    ``fixed`` fixes the iterations (degree: the first rung's)."""
    n = unit.shape[0]
    info.update(method="nndescent")
    if n <= _NND_MIN:
        return _exact(unit, k, threads, {**info, "why": f"N <= {_NND_MIN:,}: exact is cheapest"})
    ladder = [(f, fixed) for f, _ in _NND_LADDER[:1]] if fixed is not None else list(_NND_LADDER)
    best = None
    build_s = 0.0
    for factor, iters in ladder:
        degree = max(k + 1, int(math.ceil(factor * k)))
        if _NND_SPARSE * (degree + _NND_POOL) > n:  # faiss's pools may not fill (it aborts): exact
            return _exact(unit, k, threads, {**info, "why": f"degree {degree} too large for N = {n:,}"})
        t = time.perf_counter()
        idx, sim = _nndescent_graph(faiss, unit, k, degree, iters)
        build_s += time.perf_counter() - t
        info.update(degree=degree, iterations=iters, build_s=build_s)
        got, best = _better(faiss, unit, k, idx, sim, info, best)
        if got >= recall or fixed is not None:
            return KnnGraph(idx, sim, got, info)
        del idx, sim
    return _missed(unit, k, threads, recall, best, info, f"nndescent at degree {best[3]['degree']} and "
                   f"{best[3]['iterations']} iterations (the last rung of its ladder) is its time bound")


def _nndescent_graph(faiss, unit: np.ndarray, k: int, degree: int, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of the k most similar among each point's ``degree`` NN-descent
    neighbours, by descending float32 similarity (ties: the smaller index); rows that faiss left
    short (an id out of range, the point itself or a repeat: not seen in practice) are replaced by
    their exact neighbours."""
    n, d = unit.shape
    index = faiss.IndexNNDescentFlat(d, degree, faiss.METRIC_INNER_PRODUCT)
    nd = index.nndescent
    nd.S, nd.R, nd.L, nd.iter = _NND_S, _NND_R, degree + _NND_POOL, iters
    index.add(unit)  # builds the graph (a float32 copy of the points in the index)
    graph = faiss.vector_to_array(nd.final_graph).reshape(n, degree)
    del index
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    bad = []
    step = max(1, _GATHER_FLOATS // (degree * d))  # the gathered neighbour rows: 64 MB a chunk
    for s in range(0, n, step):
        g = graph[s : s + step].astype(np.int64)
        rows = np.arange(s, s + g.shape[0])
        ok = (g >= 0) & (g < n)
        g = np.where(ok, g, rows[:, None])
        srt = np.sort(g, axis=1)
        wrong = ~ok.all(axis=1) | (g == rows[:, None]).any(axis=1) | (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        bad.append(rows[wrong])
        sims = np.einsum("md,mkd->mk", unit[s : s + g.shape[0]], unit[g])
        order = _by_similarity(g, sims)[:, :k]
        idx[s : s + g.shape[0]] = np.take_along_axis(g, order, axis=1)
        sim[s : s + g.shape[0]] = np.take_along_axis(sims, order, axis=1)
    bad = np.concatenate(bad)
    if bad.size:
        ids = _true_ids(faiss, unit, bad, k)
        idx[bad], sim[bad] = ids, np.einsum("md,mkd->mk", unit[bad], unit[ids])
    return idx, sim


def _by_similarity(ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Per row, the column order by descending similarity, ties to the smaller index."""
    order = np.argsort(ids, axis=1, kind="stable")
    by_sim = np.argsort(-np.take_along_axis(sims, order, axis=1), axis=1, kind="stable")
    return np.take_along_axis(order, by_sim, axis=1)


_CELL = 128  # points per inverted-file cell (BENCHMARKS.md: kNN graphs at millions of points)
_NPROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_RANKED = 8  # cells each point ranks for the recall ladder (its nearest centroids)
_BEAM = 3  # top-level groups whose cells a point ranks
_CELL_ROWS = 1 << 17  # rows ranking their cells together (one thread's share at a time)
_RECALL_SAMPLE = 512


def load_faiss(needed_for: str = "knn method 'faiss'", instead: str = ""):
    """The faiss module (the one loader of the package); an ImportError naming what needs it, how
    to install it and, where given, what to pass ``instead``."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            f"{needed_for} needs the optional dependency faiss: pip install faiss-cpu "
            f"(or, in the alscale checkout, pip install \".[faiss]\"){instead}"
        ) from err
    return faiss



def _nearest(points: np.ndarray, centroids: np.ndarray, k: int = 1) -> np.ndarray:
    """(len(points), k) indices of the most similar centroids, most similar first, ties to the
    smaller index (alscale's exact tiled ranking, on the threads faiss was given)."""
    threads = load_faiss().omp_get_max_threads()
    return _core.knn_rank_lists(points, centroids, k, num_threads=threads).astype(np.int64)


_KMEANS_ONE_THREAD = 2e9  # multiply-adds of a k-means below which it runs on one faiss thread


def _kmeans(faiss, points: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """Unit centroids of spherical k-means (faiss, 10 iterations on at most 32 points a cell).
    Small ones run on one faiss thread: its OpenMP threads spin-wait between the iterations'
    parallel regions, which on a busy machine made a 0.02 s k-means take 0.27 s (BENCHMARKS.md)."""
    if cells <= 1:
        c = points.sum(axis=0, dtype=np.float64)
        return (c / max(np.linalg.norm(c), 1e-30)).astype(np.float32)[None, :]
    km = faiss.Kmeans(points.shape[1], cells, niter=10, seed=seed, spherical=True,
                      max_points_per_centroid=32, min_points_per_centroid=1)
    threads = faiss.omp_get_max_threads()
    if 10.0 * min(points.shape[0], 32 * cells) * cells * points.shape[1] < _KMEANS_ONE_THREAD:
        faiss.omp_set_num_threads(1)
    try:
        km.train(points)
    finally:
        faiss.omp_set_num_threads(threads)
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
    group = _nearest(unit, top, beam)  # (n, beam)
    order = np.argsort(group[:, 0], kind="stable")
    bounds = np.searchsorted(group[order, 0], np.arange(groups + 1))
    # Small faiss calls from here, side by side on the threads: one faiss thread each (its OpenMP
    # threads spin-wait for the next region, which costs 10-40x on a busy machine; BENCHMARKS.md).
    threads = max(1, faiss.omp_get_max_threads())

    def split(g: int):
        faiss.omp_set_num_threads(1)  # this thread's OpenMP setting
        rows = order[bounds[g] : bounds[g + 1]]
        c = _kmeans(faiss, unit[rows], min(max(1, rows.size), max(1, int(round(rows.size / _CELL)))), 2 + g)
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(c)
        return index

    with ThreadPoolExecutor(max_workers=threads) as pool:
        indexes = list(pool.map(split, range(groups)))
    first = np.zeros(groups + 1, dtype=np.int64)
    np.cumsum([index.ntotal for index in indexes], out=first[1:])
    cells = int(first[-1])
    ranked = min(ranked, cells)

    def near_cells(s: int):
        """Rows s .. s + _CELL_ROWS: their most similar cell and their (cell, cell', rank) codes."""
        faiss.omp_set_num_threads(1)
        u, grp = unit[s : s + _CELL_ROWS], group[s : s + _CELL_ROWS]
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
        rank = np.broadcast_to(np.arange(ranked), near.shape)
        ok = near >= 0
        return s, near[:, 0], _distinct(((near[:, :1] * cells + near) * ranked + rank)[ok])

    cell = np.empty(n, dtype=np.int64)
    pairs = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for s, c0, part in pool.map(near_cells, range(0, n, _CELL_ROWS)):
            cell[s : s + c0.size] = c0
            pairs.append(part)
    code = _distinct(np.concatenate(pairs))  # sorted by (cell, cell', rank)
    keys = code // ranked
    firsts = np.ones(code.size, dtype=bool)
    firsts[1:] = keys[1:] != keys[:-1]
    return cell, keys[firsts], (code % ranked)[firsts], cells


def _grouped(labels: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows grouped by their label (0 <= label < groups), as the kernels take them: group g
    holds rows[start[g] .. start[g + 1]) — int64 offsets and rows, in row order within a group."""
    start = np.zeros(groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=groups), out=start[1:])
    return start, np.argsort(labels, kind="stable").astype(np.int64)


def _distinct(a: np.ndarray) -> np.ndarray:
    """The distinct values of a, sorted."""
    a = np.sort(a)
    keep = np.ones(a.size, dtype=bool)
    keep[1:] = a[1:] != a[:-1]
    return a[keep]


def _knn_cells(unit: np.ndarray, k: int, threads: int, nprobe: int | None, recall: float,
               info: dict | None = None, skip_below: float | None = None):
    """The cell-scan kNN graph; ``info`` (benchmarks) receives the cells, probes and stage
    times. With ``skip_below``, None (no scan) when the recall estimate at the widest probe
    count is below it: the scan could not keep the promise."""
    faiss = load_faiss()
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
        if skip_below is not None and info["recall_estimate"] < skip_below:
            info.update(nprobe=p, probes_s=time.perf_counter() - t)
            return None
    else:
        p = min(nprobe, ranked)
    scan = best < p  # cell c scans cell c' when one of its points ranks c' among its p nearest
    probes = np.ascontiguousarray(keys[scan] % cells, dtype=np.int64)
    probe_start = np.zeros(cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys[scan] // cells, minlength=cells), out=probe_start[1:])
    cell_start, cell_rows = _grouped(cell, cells)
    counts = np.diff(cell_start)
    info.update(nprobe=p, cells_scanned=round(probes.size / cells, 2),
                candidates_per_point=round(float((counts[keys[scan] // cells] * counts[probes]).sum()) / unit.shape[0], 1),
                probes_s=time.perf_counter() - t)
    t = time.perf_counter()
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
    truth = _true_ids(faiss, unit, q, k)
    # needed: the probe count from which the true neighbour's cell is scanned for its query
    key = cell[q][:, None] * cells + cell[truth]
    at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    needed = np.where(keys[at] == key, best[at] + 1, np.iinfo(np.int64).max)
    p = next((p for p in ladder if np.mean(needed <= p) >= recall), ladder[-1])
    return p, float(np.mean(needed <= p))


_LIST_PROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# "lists": the list sizes tried, largest (fewest lists: the cheapest ranking) first: every other
# one first (a factor 2 apart), then the two between the best of those and its neighbours
# (BENCHMARKS.md: at 2M overlapping 64 wins, at 9M 256: lists about the size of the data's clusters)
_LIST_SIZES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32)
# a scanned point's multiply-add costs about this many of the ranking's (its inverted pairs and
# partial tiles; measured at 9M overlapping: 27.6 against 11.8 GMAC/s a core)
_SCAN_COST = 2.0


def _lists_work(n: int, d: int, nlist: int, p: int) -> float:
    """Multiply-adds of "lists" with nlist lists probed p deep: the ranking N·nlist·D and the scan
    c·N·p·(N/nlist)·D."""
    return float(n) * d * (nlist + _SCAN_COST * p * n / nlist)


def _tuned_lists(faiss, unit: np.ndarray, k: int, threads: int, recall: float,
                 info: dict) -> tuple[np.ndarray, list, float]:
    """The lists of "lists" and its ladder of p from the first to try: for a list size S the lists
    are trained and the smallest p found whose first p lists hold ``recall`` of sample A's exact
    neighbours (exact for those points: a neighbour is found iff its list is among its query's p)
    with two standard errors to spare, at most a quarter of the lists; the pair of least work
    (_lists_work) wins. The sizes of _LIST_SIZES a factor 2 apart are tried largest first,
    stopping once the ranking alone costs more than the best pair; then the sizes beside the two
    best of those (the work is not always unimodal in S), where their least possible work (p = 2)
    is below the best pair's. A size's p stops where its work passes the best pair's. None
    reaching ``recall``: the size of the best estimate, at its widest p. Also returns that
    estimate."""
    n, d = unit.shape
    qa = _sample(n, 1)
    ids = _true_ids(faiss, unit, qa, k)
    tried: dict = {}
    best = None  # (work, -estimate, size, centroids, ladder, estimate)

    def bound() -> float:
        return best[0] if best is not None else math.inf

    def work_of(size: int) -> float:
        v = tried[size]
        return _lists_work(n, d, v["nlist"], v["nprobe"]) if v["met"] else math.inf

    def attempt(size: int) -> None:
        nonlocal best
        lists = max(1, n // size)
        if any(v["nlist"] == lists for v in tried.values()) or _lists_work(n, d, lists, min(2, lists)) >= bound():
            return
        centroids = _trained_lists(faiss, unit, size)
        nlist = centroids.shape[0]
        top = max(min(2, nlist), int(_MAX_SCAN * nlist))
        ladder = [p for p in _LIST_PROBES if min(2, nlist) <= p < top] + [top]
        short = [p for p in ladder if _lists_work(n, d, nlist, p) < bound()] or ladder[:1]
        ranked = _core.knn_rank_lists(unit[qa], centroids, short[-1], num_threads=threads)
        home = _core.knn_rank_lists(unit[ids.ravel()], centroids, 1, num_threads=threads)[:, 0].reshape(ids.shape)
        # the rank (from 1) of each true neighbour's list among its query's; beyond the ladder: never
        rank = np.full(ids.shape, nlist + 1, dtype=np.int64)
        for j in range(ids.shape[1]):
            hit = ranked == home[:, j : j + 1]
            rank[:, j] = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, nlist + 1)
        start, estimate, work = len(ladder) - 1, 0.0, math.inf
        for j, p in enumerate(short):
            row = (rank <= p).mean(axis=1)
            estimate = max(estimate, float(row.mean()))
            if row.mean() - 2 * row.std() / math.sqrt(row.size) >= recall:
                start, work = j, _lists_work(n, d, nlist, p)
                break
        tried[size] = {"nlist": nlist, "nprobe": ladder[start] if work < math.inf else short[-1],
                       "estimate": round(estimate, 4), "met": work < math.inf}
        key = (work, -estimate, size, centroids, ladder[start:], estimate)
        if best is None or key[:2] < best[:2]:
            best = key

    for size in _LIST_SIZES[::2]:
        if float(n) * max(1, n // size) * d >= bound():
            break
        attempt(size)
    # the sizes beside the two best so far (the work over sizes is not always unimodal)
    first = sorted(tried, key=lambda s: (work_of(s), -tried[s]["estimate"]))[:2]
    for at in sorted({_LIST_SIZES.index(s) + j for s in first for j in (-1, 1)}):
        if 0 <= at < len(_LIST_SIZES):
            attempt(_LIST_SIZES[at])
    _, _, size, centroids, ladder, estimate = best
    info.update(nlist=centroids.shape[0], list_size=size, sizes=tried, estimate=round(estimate, 4))
    return centroids, ladder, estimate


_RANKS_BYTES = 1 << 28  # "lists": the ranks held at once, at least (256 MiB; else the graph's size)
_SPILL_READ = 1 << 15  # spilled ranks gathered from their file this many rows at a time


def _ranks_budget(n: int, k: int) -> int:
    """Bytes of the lists' ranks "lists" holds at once: the (N, k) graph's own size (12 bytes an
    entry), at least _RANKS_BYTES — so its memory stays O(N·k + index) at any nprobe."""
    return max(_RANKS_BYTES, 12 * n * k)


def _mount_type(path: str) -> str | None:
    """The file system type of the mount holding path (from /proc/mounts; None where unknown)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return None
    path = os.path.realpath(path)
    best = None
    for point, kind in mounts:
        point = point.replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[0])):
            best = (point, kind)
    return best[1] if best else None


def _size_text(b: float) -> str:
    return f"{b / 1e9:.1f} GB" if b >= 1e9 else f"{b / 1e6:.1f} MB"


def _spill_folder(need: int) -> str | None:
    """TMPDIR's folder where ``need`` bytes of ranks can be spilled to disk; None, with a
    ResourceWarning naming what is missing, where it is in memory (tmpfs) or lacks the room: the
    ranks are then held in memory, past the bound."""
    import tempfile

    folder = tempfile.gettempdir()
    kind = _mount_type(folder)
    free = None
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except (OSError, AttributeError):
        pass
    why = (f"{folder} is a {kind} (in memory)" if kind in ("tmpfs", "ramfs") else
           f"{folder} has {_size_text(free)} free" if free is not None and free < need * 1.05 else None)
    if why is None:
        return folder
    warnings.warn(f"knn_graph: the lists' ranks ({_size_text(need)}) are held in memory, past the graph's size: "
                  f"they would be spilled to TMPDIR, but {why}; set TMPDIR to a disk with room",
                  ResourceWarning, stacklevel=4)
    return None


def _searched_lists(unit: np.ndarray, k: int, centroids: np.ndarray, p: int, threads: int,
                    info: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """The graph of "lists" at p probes, and the seconds spent ranking. Every row ranks the
    centroids (its first: its home list, whose points it joins); then every row scans its p lists.
    Where the (N, p) int32 ranks exceed _ranks_budget (overlapping data needs many probes: 6.9 GB
    at 9M rows and p = 192), the rows are ranked a chunk at a time and their ranks spilled to
    files in TMPDIR, one per range of home lists, then searched one file at a time (in list order,
    the order of one call, so the same graph): memory O(N·k + index) whatever the overlap, and
    N·p·4 bytes of temporary disk. A TMPDIR in memory (tmpfs) or without the room: the ranks are
    held in memory, with a ResourceWarning (_spill_folder)."""
    n = unit.shape[0]
    nlist = centroids.shape[0]
    budget = _ranks_budget(n, k)
    t = time.perf_counter()
    folder = None if 4 * n * p <= budget else _spill_folder(4 * n * p)
    if folder is None:
        ranks = _core.knn_rank_lists(unit, centroids, p, num_threads=threads)
        ranking = time.perf_counter() - t
        start, rows = _grouped(ranks[:, 0].astype(np.int64), nlist)  # the lists: each row's first
        idx, sim = _core.knn_lists(unit, k, centroids, start, rows, p, ranks=ranks, num_threads=threads)
        info.pop("ranks_spilled", None)
        return idx, sim, ranking
    import tempfile

    from ._backend.arrays import release_pages

    parts = int(min(nlist, math.ceil(4 * n * p / budget)))  # files: ranges of home lists
    files = []
    try:
        # nameless files (gone when closed, or when the process ends, even killed)
        files = [tempfile.TemporaryFile(prefix="alscale-knn-ranks-", dir=folder) for _ in range(parts)]
        home = _ranks_to_files(unit, centroids, p, threads, int(max(1024, budget // (16 * p))), files)
        ranking = time.perf_counter() - t
        start, rows = _grouped(home, nlist)
        del home
        idx = np.empty((n, k), dtype=np.int64)
        sim = np.empty((n, k), dtype=np.float32)
        for b, f in enumerate(files):
            # file b: the rows of lists [first, last) (home · parts // lists = b), rows ascending;
            # searched in the lists' order (rows[...]: the order of one call)
            first, last = -(-b * nlist // parts), -(-(b + 1) * nlist // parts)
            queries = rows[start[first] : start[last]]
            at = np.empty(queries.size, dtype=np.int64)  # each query's record in the file
            at[np.argsort(queries, kind="stable")] = np.arange(queries.size)
            ranks = np.empty((queries.size, p), dtype=np.int32)
            if queries.size:
                mapped = np.memmap(f, dtype=np.int32, mode="r", shape=(queries.size, p))
                for s in range(0, queries.size, _SPILL_READ):  # the file's pages let go as read
                    ranks[s : s + _SPILL_READ] = mapped[at[s : s + _SPILL_READ]]
                    release_pages(mapped)
                del mapped
            f.close()
            idx[queries], sim[queries] = _core.knn_lists(unit, k, centroids, start, rows, p, ranks=ranks,
                                                         queries=queries, num_threads=threads)
            del ranks
    except OSError as e:
        raise OSError(f"knn_graph: spilling the lists' ranks ({_size_text(4 * n * p)}) to a temporary "
                      f"file in {folder} failed ({e}); set TMPDIR to a disk with room") from e
    finally:
        for f in files:
            f.close()
    info["ranks_spilled"] = {"bytes": 4 * n * p, "files": parts}
    return idx, sim, ranking


def _ranks_to_files(unit: np.ndarray, centroids: np.ndarray, p: int, threads: int, step: int,
                    files: list) -> np.ndarray:
    """Every row's home list (its first ranked), the rows ranked ``step`` at a time and each
    row's p ranks appended to the file of its home's range of lists (file b: homes with
    home · files // lists = b), rows ascending in every file; the files flushed."""
    n, nlist, parts = unit.shape[0], centroids.shape[0], len(files)
    home = np.empty(n, dtype=np.int64)
    for s in range(0, n, step):
        ranks = _core.knn_rank_lists(unit[s : s + step], centroids, p, num_threads=threads)
        home[s : s + ranks.shape[0]] = ranks[:, 0]
        part = ranks[:, 0].astype(np.int64) * parts // nlist
        order = np.argsort(part, kind="stable")
        cut = np.searchsorted(part[order], np.arange(parts + 1))
        for b in np.flatnonzero(np.diff(cut)):
            ranks[order[cut[b] : cut[b + 1]]].tofile(files[b])
    for f in files:
        f.flush()
    return home


def _knn_lists(faiss, unit: np.ndarray, k: int, threads: int, fixed: int | None, recall: float,
               info: dict) -> KnnGraph:
    """alscale's inverted file searched GEMM-shaped (csrc/knn_lists.hpp): lists of about S points
    (spherical k-means as "ivf"), every point ranks every centroid exactly and scans the points of
    its first p lists. S and p are tuned together on sample A (seed 1; _tuned_lists): the
    cheapest (S, p) whose scanned lists hold ``recall`` of its exact neighbours with two standard
    errors to spare. The graph is measured on sample B; missed: the next p, then exact or a
    RecallWarning. A ``fixed`` p keeps S = _IVF_LIST."""
    n, d = unit.shape
    t = time.perf_counter()
    if fixed is not None:
        centroids = _trained_lists(faiss, unit)  # the lists of "ivf"
        nlist = centroids.shape[0]
        info.update(method="lists", nlist=nlist, list_size=_IVF_LIST, build_s=time.perf_counter() - t)
        if fixed >= nlist:  # every list: exhaustive, i.e. exact
            return _exact(unit, k, threads, info)
        ladder = [fixed]
    else:
        info["method"] = "lists"
        centroids, ladder, best = _tuned_lists(faiss, unit, k, threads, recall, info)
        nlist = centroids.shape[0]
        info["tune_s"] = time.perf_counter() - t
        if best < recall and float(n) * n * d <= _EXACT_WORK:  # out of reach within the bound: exact now
            return _exact(unit, k, threads, {**info, "approx_recall": round(best, 4)})
    best = None
    search_s = rank_s = 0.0
    for p in ladder:
        t = time.perf_counter()
        idx, sim, ranking = _searched_lists(unit, k, centroids, p, threads, info)
        rank_s += ranking
        search_s += time.perf_counter() - t
        info.update(nprobe=p, search_s=search_s, rank_s=rank_s)  # search_s: the ranking and the scan
        got, best = _better(faiss, unit, k, idx, sim, info, best)
        if got >= recall or fixed is not None:
            return KnnGraph(idx, sim, got, info)
        del idx, sim
        if n <= _RECALL_QUERIES:
            break
    return _missed(unit, k, threads, recall, best, info,
                   f"lists at nprobe {best[3]['nprobe']} is its time bound (a quarter of the lists)")
