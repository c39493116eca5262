"""Diversity baselines of the papers: Coreset (greedy k-center) and BADGE (k-means++ seeding on
gradient embeddings), plain and partitioned. Validate, convert once, one native call each."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from . import _core
from ._backend.arrays import (as_budget, as_embeddings, as_exclude, as_int, as_logits, as_threads, check_random_state,
                              wrap_like)
from ._backend import host_only

__all__ = ["select_badge", "select_coreset"]


_NON_FINITE = re.compile(r"logits contain NaN or inf at row (\d+)$")


def _partitioned(available: np.ndarray, budget: int, partitions: int, rng: np.random.Generator, pick):
    """The partitioned version: the available rows split at random into P parts (P capped at
    the rows: a part with no rows would pick nothing, and the split and quotas of P = available
    are those of any larger P), part p picks B // P + (p < B % P) of its rows with
    ``pick(rows, q)`` -> positions in ``rows``. Each part costs its own size."""
    partitions = min(partitions, available.size)
    order = available[rng.permutation(available.size)]
    picks = [np.zeros(0, np.int64)]
    for p, rows in enumerate(np.array_split(order, partitions)):
        rows = np.sort(rows)
        picks.append(rows[pick(rows, budget // partitions + (1 if p < budget % partitions else 0))])
    return np.concatenate(picks).astype(np.int64)


def select_coreset(
    embeddings: Any,
    budget: Any,
    *old_form: Any,
    labeled: Any = None,
    exclude: Any = None,
    partitions: int = 1,
    seed: Any = None,
    num_threads: int = 0,
):
    """Coreset (Sener & Savarese, 2018): greedy k-center over the pool's embeddings.

    Every unlabeled row keeps its squared Euclidean distance (float64) to the nearest center —
    the labeled rows, then each row picked; each step picks the row farthest from its nearest
    center, ties to the smaller row index. O(N·(L + B)·D) time and O(N) memory: never an N x N
    matrix. Exact and independent of the thread count.

    Parameters
    ----------
    embeddings : array_like or torch.Tensor (host memory), shape (N, D)
        The pool's features, D >= 1 (float32 used as is, float64 kept; 16-bit floats and 8/16-bit
        integers become float32, 32/64-bit integers float64, refused beyond 2^53). float64
        values near its limits (≳ 1e140, ≲ 1e-120) are scaled by an exact power of two first,
        which changes no pick.
    budget : int
        Rows to pick; clipped to the rows available.
    labeled : index array or boolean mask of shape (N,), or None
        The labeled rows: the starting centers, never picked. With none, the first pick is row 0
        (the first row not excluded). (The old form ``select_coreset(embeddings, labeled,
        budget)`` still works, with a DeprecationWarning, until alscale 0.3.)
    exclude : index array or boolean mask of shape (N,), optional
        Further rows that may not be picked (they are not centers).
    partitions : int, optional
        P > 1: the partitioned version — the available rows are split at random (``seed``) into
        P parts, part p picks B // P + (p < B % P) rows against the same labeled centers. Each
        part costs its own size (its rows and the labeled ones). P beyond the available rows
        is capped at them (the split and the picks are the same).
    seed : int >= 0 or numpy.random.Generator, optional
        Only used for the partition.
    num_threads : int, optional
        OpenMP threads, 0 (default) for all cores.

    Returns
    -------
    indices : int64 numpy array (torch tensor for torch input), shape (min(B, available),)
        In pick order (partitioned: part by part).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> x = np.array([[0.0], [1.0], [5.0], [9.0], [10.0]])
    >>> alscale.select_coreset(x, 2, labeled=[0])
    array([4, 2])
    """
    if old_form:
        if len(old_form) != 1 or labeled is not None:
            raise TypeError("select_coreset takes (embeddings, budget, *, labeled=..., ...)")
        warnings.warn("select_coreset(embeddings, labeled, budget) is deprecated: call select_coreset(embeddings, "
                      "budget, labeled=labeled) (removed in alscale 0.3)", DeprecationWarning, stacklevel=2)
        labeled, budget = budget, old_form[0]
    host_only(embeddings, "select_coreset", "embeddings")
    z = as_embeddings(embeddings)
    n = z.shape[0]
    k = as_budget(budget)
    threads = as_threads(num_threads)
    lab = as_exclude(labeled, n, "labeled")
    centers = np.zeros(0, np.int64) if lab is None else np.flatnonzero(lab).astype(np.int64)
    ex = as_exclude(exclude, n)
    P = as_int(partitions, "partitions", minimum=1)
    rng = check_random_state(seed)
    blocked = np.zeros(n, dtype=bool)
    blocked[centers] = True
    if ex is not None:
        blocked |= ex.astype(bool)
    available = np.flatnonzero(~blocked)
    k = min(k, available.size)  # a huge budget is all of them
    if P == 1 or available.size == 0:
        return wrap_like(embeddings, _core.select_coreset(z, centers, ex, k, threads))
    zc = z[centers]

    def part(rows: np.ndarray, q: int) -> np.ndarray:  # the part's rows, then the centers
        sub = np.concatenate([z[rows], zc])
        return _core.select_coreset(sub, np.arange(rows.size, sub.shape[0], dtype=np.int64), None, q, threads)

    return wrap_like(embeddings, _partitioned(available, k, P, rng, part))


def select_badge(
    logits: Any,
    embeddings: Any,
    budget: Any,
    *,
    exclude: Any = None,
    partitions: int = 1,
    seed: Any = None,
    num_threads: int = 0,
):
    """BADGE (Ash et al., 2020): k-means++ seeding on last-layer gradient embeddings.

    The gradient embedding of row i is g_i = (softmax(l_i) - onehot(argmax l_i)) ⊗ z_i; the
    distance uses the factorization ||g_i - g_j||² = ||a_i||²||z_i||² + ||a_j||²||z_j||²
    - 2 (a_i·a_j)(z_i·z_j), never the C·D-wide matrix. The first pick is the row with the
    largest ||g||; each next pick is drawn with probability proportional to its squared distance
    to the nearest pick (D² sampling) by inverse CDF over the row order in float64, from
    uniforms drawn with ``numpy.random.default_rng(seed)``. The exact arithmetic is in
    ``csrc/badge.hpp``; same seed, same picks, whatever the thread count.

    Parameters
    ----------
    logits : array_like or torch.Tensor (host memory), shape (N, C)
        The head's logits on the pool (float16, bfloat16, float32 or float64).
    embeddings : array_like or torch.Tensor (host memory), shape (N, D)
        The penultimate features z the head reads, converted as in :func:`select_coreset`.
    budget : int
        Rows to pick; clipped to the rows available.
    exclude : index array or boolean mask of shape (N,), optional
        Rows that may not be picked (the labeled set).
    partitions : int, optional
        P > 1: the pool's available rows split at random into P parts, part p with budget
        B // P + (p < B % P); the uniforms are drawn part by part after the split. Each part
        costs its own size (only its rows' logits are read). P beyond the available rows is
        capped at them (the split and the picks are the same).
    seed : int >= 0 or numpy.random.Generator, optional
    num_threads : int, optional

    Returns
    -------
    indices : int64 numpy array (torch tensor for torch input), shape (min(B, available),)
        In pick order.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> logits = np.array([[3.0, 0.0], [0.1, 0.0], [0.0, 0.2], [0.0, 4.0]])
    >>> z = np.ones((4, 2))
    >>> int(alscale.select_badge(logits, z, 2, seed=0)[0])   # largest gradient norm first
    1
    """
    host_only(logits, "select_badge", "logits")
    host_only(embeddings, "select_badge", "embeddings")
    x = as_logits(logits)
    z = as_embeddings(embeddings, x.rows)
    k = as_budget(budget)
    threads = as_threads(num_threads)
    ex = as_exclude(exclude, x.rows)
    P = as_int(partitions, "partitions", minimum=1)
    rng = check_random_state(seed)
    available = np.flatnonzero(ex == 0) if ex is not None else np.arange(x.rows)
    k = min(k, available.size)  # before drawing k uniforms
    if P == 1 or available.size == 0:
        return x.wrap(_core.select_badge(x.array, x.bf16, z, ex, k, rng.random(k), threads))

    def part(rows: np.ndarray, q: int) -> np.ndarray:  # the part's rows only
        try:
            return _core.select_badge(x.array[rows], x.bf16, z[rows], None, q, rng.random(q), threads)
        except ValueError as err:  # a row of the part: name the pool row
            m = _NON_FINITE.match(str(err))
            if m is None:
                raise
            raise ValueError(f"logits contain NaN or inf at row {int(rows[int(m[1])])}") from None

    return x.wrap(_partitioned(available, k, P, rng, part))
