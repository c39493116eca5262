"""Diversity baselines of the papers: Coreset (greedy k-center) and BADGE (k-means++ seeding on
gradient embeddings), plain and partitioned. Validate, convert once, one native call each."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._backend.arrays import (_is_torch, _torch_wrap, as_budget, as_exclude, as_int, as_logits, as_threads, check_finite_rows,
                      real_matrix)

__all__ = ["select_badge", "select_coreset"]


def as_embeddings(embeddings: Any, rows: int | None = None, name: str = "embeddings") -> np.ndarray:
    """A finite (N, D) float32/float64 C-contiguous numpy array (16-bit floats, torch's
    bfloat16 included, become float32)."""
    z = real_matrix(embeddings, name, "rows")
    if rows is not None and z.shape[0] != rows:
        raise ValueError(f"{name} have {z.shape[0]} rows but the pool has {rows}")
    if z.shape[0] == 0:
        raise ValueError(f"{name} have no rows: the pool is empty")
    dtype = np.float64 if z.dtype == np.float64 else np.float32
    z = np.ascontiguousarray(z, dtype=dtype)
    check_finite_rows(z, f"{name} contain NaN or inf")
    return z


def _wrap_like(x: Any, result: np.ndarray):
    return _torch_wrap(result) if _is_torch(x) else result


def _parts(eligible: np.ndarray, budget: int, partitions: int, rng: np.random.Generator):
    """Split the eligible rows at random into P parts; part p gets B // P + (p < B % P)."""
    order = eligible[rng.permutation(eligible.size)]
    for p, rows in enumerate(np.array_split(order, partitions)):
        yield np.sort(rows), budget // partitions + (1 if p < budget % partitions else 0)


def _mask_outside(rows: np.ndarray, n: int) -> np.ndarray:
    mask = np.ones(n, dtype=np.uint8)
    mask[rows] = 0
    return mask


def select_coreset(
    embeddings: Any,
    labeled: Any,
    budget: Any,
    *,
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
    embeddings : array_like or torch.Tensor, shape (N, D)
        The pool's features (float32 used as is, float64 kept; others converted to float32).
    labeled : index array or boolean mask of shape (N,), or None
        The labeled rows: the starting centers, never picked. With none, the first pick is row 0
        (the first row not excluded).
    budget : int
        Rows to pick; clipped to the rows available.
    exclude : index array or boolean mask of shape (N,), optional
        Further rows that may not be picked (they are not centers).
    partitions : int, optional
        P > 1: the partitioned version — the available rows are split at random (``seed``) into
        P parts, part p picks B // P + (p < B % P) rows against the same labeled centers.
    seed : int or numpy.random.Generator, optional
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
    >>> alscale.select_coreset(x, [0], 2)
    array([4, 2])
    """
    z = as_embeddings(embeddings)
    n = z.shape[0]
    k = as_budget(budget)
    threads = as_threads(num_threads)
    lab = as_exclude(labeled, n)
    centers = np.zeros(0, np.int64) if lab is None else np.flatnonzero(lab).astype(np.int64)
    ex = as_exclude(exclude, n)
    P = as_int(partitions, "partitions", minimum=1)
    blocked = np.zeros(n, dtype=bool)
    blocked[centers] = True
    if ex is not None:
        blocked |= ex.astype(bool)
    k = min(k, n - int(np.count_nonzero(blocked)))  # the rows available (a huge budget is all of them)
    if P == 1:
        return _wrap_like(embeddings, _core.select_coreset(z, centers, ex, k, threads))
    rng = np.random.default_rng(seed)
    picks = [
        _core.select_coreset(z, centers, _mask_outside(rows, n), q, threads)
        for rows, q in _parts(np.flatnonzero(~blocked), k, P, rng)
    ]
    return _wrap_like(embeddings, np.concatenate(picks).astype(np.int64))


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
    logits : array_like or torch.Tensor, shape (N, C)
        The head's logits on the pool (float16, bfloat16, float32 or float64).
    embeddings : array_like or torch.Tensor, shape (N, D)
        The penultimate features z the head reads (float32, or float64 kept).
    budget : int
        Rows to pick; clipped to the rows available.
    exclude : index array or boolean mask of shape (N,), optional
        Rows that may not be picked (the labeled set).
    partitions : int, optional
        P > 1: the pool's available rows split at random into P parts of budget B/P each.
    seed : int or numpy.random.Generator, optional
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
    x = as_logits(logits)
    z = as_embeddings(embeddings, x.rows)
    k = as_budget(budget)
    threads = as_threads(num_threads)
    ex = as_exclude(exclude, x.rows)
    P = as_int(partitions, "partitions", minimum=1)
    k = min(k, x.rows - (0 if ex is None else int(np.count_nonzero(ex))))  # before drawing k uniforms
    rng = np.random.default_rng(seed)
    if P == 1:
        return x.wrap(_core.select_badge(x.array, x.bf16, z, ex, k, rng.random(k), threads))
    blocked = np.zeros(x.rows, dtype=bool) if ex is None else ex.astype(bool)
    picks = []
    for rows, q in _parts(np.flatnonzero(~blocked), k, P, rng):
        picks.append(_core.select_badge(x.array, x.bf16, z, _mask_outside(rows, x.rows), q, rng.random(q), threads))
    return x.wrap(np.concatenate(picks).astype(np.int64))
