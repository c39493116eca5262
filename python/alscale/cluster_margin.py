"""Cluster-Margin selection (Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np

from . import _backend
from ._backend.arrays import as_budget, as_fraction, as_int, as_seed, host_numpy, real_matrix, release_pages

__all__ = ["cluster_embeddings", "select_cluster_margin"]

def select_cluster_margin(logits: Any, clusters: Any, budget: Any, *, candidates: Any = None, exclude: Any = None,
                          seed: Any = None, num_threads: int = 0, group: Any = None, row_ids: Any = None,
                          multilabel: bool = False, reduction: str = _backend.DEFAULT_REDUCTION):
    """Cluster-Margin: low-margin candidates, spread over the HAC clusters by round-robin.

    1. Candidates: the ``candidates`` (k_m) non-excluded rows with the smallest softmax margin
       (as :func:`alscale.select_margin`; default min(10·budget, available)) — with
       ``multilabel=True`` the smallest multi-label margin (the paper's Open Images setting).
    2. They are grouped by ``clusters[row]``; clusters are ordered by their number of
       candidates ascending (ties: smaller cluster id).
    3. Round-robin over that order, one random candidate of each cluster per turn, until
       ``budget`` rows are taken; exhausted clusters are skipped.

    The random order inside a cluster is candidates by ascending
    (splitmix64(seed + (row + 1)·0x9E3779B97F4A7C15), row): reproducible for a seed, and
    independent of the thread count and of the candidates' order.

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (N, C)
    clusters : array_like of int, shape (N,), or a :class:`alscale.Clustering`
        The cluster of every pool row (e.g. ``hac_average(embeddings, ...).labels``).
    budget : int
        Rows to select (k_t); clipped to the rows available.
    candidates : int, optional
        k_m >= budget; clipped to the rows available.
    exclude : index array or boolean mask of shape (N,), optional
        Rows that may not be selected (already labeled).
    seed : int or numpy.random.Generator, optional
        None draws fresh entropy.
    num_threads : int, optional
    group, row_ids : optional
        A sharded pool (see :func:`alscale.select_margin`): ``logits``, ``clusters`` and
        ``exclude`` cover the local rows, ``row_ids`` names them; the candidates are the global
        k_m, and every rank gets the identical selection in global row ids. With
        ``seed=None`` (or a Generator) rank 0's draw is used on every rank.
    multilabel : bool, optional
        True: ``logits`` are C independent sigmoids; a row's margin is its per-class binary
        margins |2p_c - 1| reduced over the classes (:func:`alscale.margin_scores`).
    reduction : {"mean", "min"}, optional
        With ``multilabel=True`` only: "mean" (default) or "min" (the most uncertain class).
        CUDA tensors with ``multilabel=True`` raise NotImplementedError (pass ``logits.cpu()``).

    Returns
    -------
    indices : int64 numpy array or torch tensor, shape (min(budget, available),)
        In the order the round-robin takes them. ``logits`` may also be a memmap or an iterable
        of chunks (see :func:`alscale.select_margin`).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> logits = np.array([[1.0, 0.9], [1.0, 0.95], [0.0, 0.05], [3.0, 0.0], [1.0, 1.0]])
    >>> clusters = np.array([0, 0, 0, 1, 1])
    >>> sel = alscale.select_cluster_margin(logits, clusters, 2, candidates=4, seed=0)
    >>> int(sel[0]), sorted(sel.tolist())[0] in (0, 1, 2)
    (4, True)
    """
    try:
        k = as_budget(budget)
        km = min(10 * k, 2**63 - 1) if candidates is None else as_int(candidates, "candidates")
        if km < k:
            raise ValueError(f"candidates (k_m = {km}) must be at least budget ({k})")
        labels: Any = _labels(clusters)
        drawn = as_seed(seed)
        rule = _backend.margin(multilabel, reduction)
    except (TypeError, ValueError) as err:
        if group is None:
            raise
        # a sharded call: raised where the ranks agree on failures, so that no rank waits
        k, km, labels, drawn, rule = 0, 0, err, 0, _backend.margin()
    pool = _backend.pool_of(logits, exclude=exclude, row_ids=row_ids, group=group, num_threads=num_threads, rule=rule)
    return pool.cluster_margin(rule, labels, k, km, drawn)


def _labels(clusters: Any) -> np.ndarray:
    labels = host_numpy(getattr(clusters, "labels", clusters), "clusters")
    if labels.ndim != 1:
        raise ValueError(f"clusters must be 1-D (one label per row), got shape {labels.shape}")
    if labels.size and labels.dtype.kind not in "iu":
        raise TypeError(f"clusters must hold integer cluster labels, got {labels.dtype}")
    return np.ascontiguousarray(labels, dtype=np.int64)


def cluster_embeddings(embeddings: Any, n_clusters: Any, *, neighbors: Any = 10, recall: Any = 0.95, pca: Any = None,
                       knn_method: Optional[str] = None, num_threads: int = 0,
                       progress: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Cluster-Margin's clustering of a pool, computed once: graph average linkage
    (:func:`alscale.hac_average_graph`) on the ``neighbors``-NN cosine graph of the embeddings
    (:func:`alscale.knn_graph`), cut into ``n_clusters`` clusters (clipped to the rows).

    Rows that are all zero (e.g. a ReLU layer silent on an input) have no cosine distance to
    anything: they form one cluster of their own (the last id) and the other rows are clustered
    as above. Fewer than two non-zero rows: one cluster each for them and for the zero rows.

    Parameters
    ----------
    embeddings : array_like or torch.Tensor (CPU), shape (N, D)
        Finite; may be a memmap (read in chunks when no row is zero).
    n_clusters : int >= 1
    neighbors : int >= 1
        k of the kNN graph (clipped to the non-zero rows - 1).
    recall, pca
        As in :func:`alscale.knn_graph` (``recall``: the faiss graph's target recall@k; ``pca``:
        reduce the unit rows to this many dimensions first).
    knn_method : {"exact", "faiss", "ivf", "hnsw", "cells", "nndescent"}, optional
        Default :func:`alscale.knn.auto_knn_method` of the rows and their dimensions after the
        PCA (faiss's graph where the exact one's N²·D passes 10¹¹, e.g. beyond 39,000 × 64).
        An approximate graph keeps ``recall`` or warns (:class:`alscale.knn.RecallWarning`).
    progress : callable (str) -> None, optional
        Called with one line as each stage starts and ends (kNN graph, HAC), with its time; the
        kNN graph's line gives its measured recall@k.

    More connected components in the kNN graph than ``n_clusters`` (e.g. well-separated groups
    and a small ``neighbors``): the components themselves are the clusters (see
    :func:`alscale.hac_average_graph`), so there are more than ``n_clusters``, with a
    :class:`alscale.hac.ComponentsWarning` — never one cluster.

    Returns
    -------
    labels : numpy.ndarray of int64, shape (N,)

    Examples
    --------
    >>> import numpy as np
    >>> from alscale.cluster_margin import cluster_embeddings
    >>> z = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.0, 0.0]])
    >>> cluster_embeddings(z, 3, neighbors=1).tolist()
    [0, 0, 1, 1, 2]
    """
    from .hac import hac_average_graph
    from .knn import _pca_unit, auto_knn_method, knn_graph

    z = real_matrix(embeddings, "embeddings", "rows")
    target, k, recall, pca = cluster_settings(n_clusters, neighbors, recall, pca, z.shape[1])
    n = z.shape[0]
    say = progress or (lambda line: None)
    zero = _zero_rows(z)
    labels = np.zeros(n, dtype=np.int64)
    rows = np.flatnonzero(~zero)
    m = rows.size
    if m >= 2:
        method = knn_method or auto_knn_method(m, pca or z.shape[1])
        kk = min(k, m - 1)
        if m == n or pca is None:
            points, reduce = (z if m == n else z[rows]), pca
        else:  # reduced chunk by chunk without the zero rows: no copy of a wide pool on disk
            points, reduce = _pca_unit(z, pca, "embeddings", rows=rows), None
        settings = f"{method}, k = {kk}" + (f", recall {recall}" if method == "faiss" else "") + (
            f", PCA to {pca}" if pca is not None else "")
        say(f"kNN graph of {m:,} embeddings ({settings}) ...")
        t0 = time.perf_counter()
        graph = knn_graph(points, kk, knn_method=method, recall=recall, pca=reduce, num_threads=num_threads)
        say(f"kNN graph: {time.perf_counter() - t0:.1f} s, {_recall_line(graph, kk)}")
        want = max(1, min(m, target - (1 if m < n else 0)))
        say(f"graph HAC into {want:,} clusters ...")
        t0 = time.perf_counter()
        sub = hac_average_graph(graph, n_clusters=want, num_threads=num_threads).labels
        say(f"graph HAC: {time.perf_counter() - t0:.1f} s")
        labels[rows] = sub
    if m < n:
        labels[zero] = int(labels[rows].max()) + 1 if m else 0
    return labels


def _recall_line(graph: Any, k: int) -> str:
    """What a progress line says of a graph's recall: measured, or exact."""
    info = getattr(graph, "info", {})
    if info.get("method") == "exact":
        return f"exact (recall@{k} 1)"
    line = (f"{info.get('method', 'approximate')}, recall@{k} {graph.recall:.4f} measured on "
            f"{info.get('recall_queries', 0):,} sampled points")
    if info.get("method") == "lists" and "nprobe" in info:
        line += f"; {info['nlist']:,} lists of ~{info['list_size']} points, {info['nprobe']} probed"
    spilled = info.get("ranks_spilled")
    if spilled:
        line += f"; ranks spilled to TMPDIR ({spilled['bytes'] / 1e9:.1f} GB, {spilled['files']} files)"
    return line


def cluster_settings(n_clusters: Any, neighbors: Any, recall: Any, pca: Any, features: Optional[int] = None) -> tuple:
    """(n_clusters, neighbors, recall, pca) of :func:`cluster_embeddings`, checked (``pca`` at
    most ``features``, the embeddings' width, when given): ValueError or TypeError naming the
    one that is wrong."""
    target = as_int(n_clusters, "n_clusters", minimum=1)
    k = as_int(neighbors, "neighbors", minimum=1)
    recall = as_fraction(recall, "recall")
    dims = None if pca is None else as_int(pca, "pca", minimum=1)
    if dims is not None and features is not None and dims > features:
        raise ValueError(f"pca must be at most the number of features ({features}), got {dims}")
    return target, k, float(recall), dims


def _zero_rows(z: np.ndarray) -> np.ndarray:
    """Rows all zero (NaN is not zero; -0 is), read in chunks of a memmap whose pages are let go
    after each chunk. Floats are compared as their bits without the sign (numpy's float16
    arithmetic is a scalar loop: 2 minutes over 9M × 2048)."""
    out = np.empty(z.shape[0], dtype=bool)
    step = max(1, (1 << 22) // max(1, z.shape[1]))
    for s in range(0, z.shape[0], step):
        b = np.asarray(z[s : s + step])
        if b.dtype.kind == "f" and b.dtype.itemsize in (2, 4, 8) and b.flags.c_contiguous:
            bits = b.view(f"u{b.dtype.itemsize}")
            nonzero = (bits & bits.dtype.type((1 << (8 * b.dtype.itemsize - 1)) - 1)) != 0
        else:
            nonzero = b != 0
        out[s : s + step] = ~nonzero.any(axis=1)
        release_pages(b)
    return out
