"""Cluster-Margin selection (Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from ._backend.arrays import _host_numpy, as_budget, as_int, as_seed

__all__ = ["select_cluster_margin"]



def select_cluster_margin(logits: Any, clusters: Any, budget: Any, *, candidates: Any = None, exclude: Any = None,
                          seed: Any = None, num_threads: int = 0, group: Any = None, row_ids: Any = None):
    """Cluster-Margin: low-margin candidates, spread over the HAC clusters by round-robin.

    1. Candidates: the ``candidates`` (k_m) non-excluded rows with the smallest softmax margin
       (as :func:`alscale.select_margin`; default min(10·budget, available)).
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
    k = as_budget(budget)
    km = min(10 * k, 2**63 - 1) if candidates is None else as_int(candidates, "candidates")
    if km < k:
        raise ValueError(f"candidates (k_m = {km}) must be at least budget ({k})")
    labels = _labels(clusters)
    pool = _backend.pool_of(logits, exclude=exclude, row_ids=row_ids, group=group, num_threads=num_threads)
    return pool.cluster_margin(_backend.margin(), labels, k, km, as_seed(seed))


def _labels(clusters: Any) -> np.ndarray:
    labels = _host_numpy(getattr(clusters, "labels", clusters), "clusters")
    if labels.ndim != 1:
        raise ValueError(f"clusters must be 1-D (one label per row), got shape {labels.shape}")
    if labels.size and labels.dtype.kind not in "iu":
        raise TypeError(f"clusters must hold integer cluster labels, got {labels.dtype}")
    return np.ascontiguousarray(labels, dtype=np.int64)
