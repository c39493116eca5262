"""Selection and scoring functions: validate, convert once, one native call, wrap the result."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from ._backend import DEFAULT_REDUCTION, Head, pool_of, refuse_multilabel
from ._backend.arrays import as_budget, as_exclude, as_int

__all__ = [
    "boundary_scores",
    "confidence_scores",
    "entropy_scores",
    "margin_scores",
    "select_balanced",
    "select_boundary",
    "select_confidence",
    "select_entropy",
    "select_margin",
    "select_random",
]


def _scores(logits: Any, rule: _backend.Rule, num_threads: Any):
    return pool_of(logits, num_threads=num_threads, rule=rule).scores(rule)


def margin_scores(logits: Any, *, multilabel: bool = False, reduction: str = DEFAULT_REDUCTION, num_threads: int = 0):
    """Softmax margin p(1) - p(2) of every row (top-1 minus top-2 probability), or with
    ``multilabel=True`` the binary margin |2p_c - 1| = |tanh(z_c / 2)| of each class's sigmoid,
    reduced over the classes.

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (N, C)
        float16, bfloat16 (torch), float32 or float64, any strides; also a memmap or an
        iterable of (n_i, C) chunks (scores concatenated in row order). Computed in float32 for
        16/32-bit input and float64 for float64 input, with a numerically stable softmax.
    multilabel : bool, optional
        False (default): one softmax over the classes. True: C independent sigmoids (a
        multi-label model); per class p = σ(z), and the score is reduced over the classes by
        ``reduction`` (docs/algorithms.md, "Multi-label uncertainty").
    reduction : {"mean", "min"}, optional
        With ``multilabel=True`` only: "mean" (default) over the classes, or "min", the most
        uncertain class (the smallest margin). Any other value, or ``reduction`` without
        ``multilabel=True``, raises ValueError.
    num_threads : int, optional
        OpenMP threads; 0 (default) uses every core.

    Returns
    -------
    scores : numpy.ndarray or torch.Tensor, shape (N,), float64
        With one class the second probability is 0, so the softmax margin is 1. Multi-label
        margins lie in [0, 1]; 0 is a class at p = 0.5.

    Multi-label scores are computed on the CPU, in one fused pass over the logits (no N x C
    array of probabilities), from t = |z| with e = exp(-t) <= 1, so any finite logit is safe
    (±1e4 included); NaN / ±inf are refused as for softmax logits. "mean" is the float64 sum of
    the per-class values in a fixed order (class c in lane c % 8, the lanes combined in a fixed
    order) divided by C: the same bits for every thread count, chunking and CPU. CUDA tensors
    with ``multilabel=True`` raise NotImplementedError (no GPU kernel yet): pass
    ``logits.cpu()``.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.margin_scores(np.array([[2.0, 2.0, -1.0], [5.0, 0.0, 0.0]])).round(2)
    array([0.  , 0.98])
    >>> z = np.array([[0.0, 4.0], [2.0, -2.0]])  # two sigmoids per row
    >>> alscale.margin_scores(z, multilabel=True).round(3)  # mean of |tanh(z/2)|
    array([0.482, 0.762])
    >>> alscale.margin_scores(z, multilabel=True, reduction="min").round(3)
    array([0.   , 0.762])
    """
    return _scores(logits, _backend.margin(multilabel, reduction), num_threads)


def confidence_scores(logits: Any, *, multilabel: bool = False, reduction: str = DEFAULT_REDUCTION,
                      num_threads: int = 0):
    """Maximum softmax probability of every row, shape (N,) float64 (see :func:`margin_scores`);
    with ``multilabel=True`` each class's confidence max(p_c, 1 - p_c) = σ(|z_c|), reduced over
    the classes (``reduction``: "mean" (default) or "min", the least confident class).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.confidence_scores(np.zeros((1, 4)))
    array([0.25])
    >>> alscale.confidence_scores(np.zeros((1, 4)), multilabel=True)
    array([0.5])
    """
    return _scores(logits, _backend.confidence(multilabel, reduction), num_threads)


def entropy_scores(logits: Any, *, multilabel: bool = False, reduction: str = DEFAULT_REDUCTION, num_threads: int = 0):
    """Softmax entropy -Σ p log p (natural log) of every row, shape (N,) float64; with
    ``multilabel=True`` each class's binary entropy H(p_c) = -p_c log p_c - (1 - p_c) log(1 - p_c)
    (nats, at most log 2), reduced over the classes (``reduction``: "mean" (default) or "min",
    the most uncertain class, i.e. the *largest* entropy). See :func:`margin_scores`.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> float(alscale.entropy_scores(np.zeros((1, 4)))[0]) == float(np.log(4))
    True
    >>> alscale.entropy_scores(np.array([[0.0, 30.0]]), multilabel=True, reduction="min").round(6)
    array([0.693147])
    """
    return _scores(logits, _backend.entropy(multilabel, reduction), num_threads)


def boundary_scores(logits: Any, *, weight: Any = None, num_threads: int = 0):
    """Distance of every row to its nearest decision boundary, min over c of r_c (BASE, MASE).

    For a linear head l = W z + b and p = argmax l, r_c = (l_p - l_c) / ||w_p - w_c||, computed
    in float64 as (l_p - l_c) * (1 / ||w_p - w_c||) from the logits and the C x C Gram matrix
    W Wᵀ — never an N x C x D tensor. r_p = +inf, and r_c = +inf where w_p == w_c.

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (N, C)
    weight : array_like or torch.Tensor, shape (C, D), optional
        The head's weight. None takes every ||w_p - w_c|| as 1 (the plain logit gap).
    num_threads : int, optional

    Returns
    -------
    scores : shape (N,), float64; +inf for rows with one class.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.boundary_scores(np.array([[3.0, 1.0, 2.5]]))
    array([0.5])
    """
    return pool_of(logits, num_threads=num_threads).scores(_backend.boundary(weight))


def _select(logits: Any, budget: Any, rule: _backend.Rule, exclude: Any, num_threads: Any, group: Any, row_ids: Any):
    k = as_budget(budget)
    return pool_of(logits, exclude=exclude, row_ids=row_ids, group=group, num_threads=num_threads,
                   rule=rule).top(rule, k)


def select_margin(logits: Any, budget: Any, *, exclude: Any = None, num_threads: int = 0, group: Any = None,
                  row_ids: Any = None, multilabel: bool = False, reduction: str = DEFAULT_REDUCTION):
    """The ``budget`` rows with the smallest softmax margin, smallest first (with
    ``multilabel=True``: the smallest multi-label margin, :func:`margin_scores`).

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (N, C)
    budget : int
        Rows to select; clipped to the rows not excluded.
    exclude : index array or boolean mask of shape (N,), optional
        Rows that may not be selected (e.g. already labeled).
    num_threads : int, optional
    group : torch.distributed ProcessGroup, optional
        A pool sharded over the group's ranks: each rank passes its own rows (and ``exclude``
        over them) with their global ``row_ids``; every rank gets the identical global
        selection, the one a single process would give on the whole pool (docs/scale.md).
    row_ids : int array over the local rows, optional
        The global pool row of each local row (required with ``group``); results are global
        row ids and ties go to the smaller global id. Default: the local position.
    multilabel : bool, optional
        False (default): one softmax over the classes. True: C independent sigmoids (a
        multi-label model); per class p = σ(z), and the score is reduced over the classes by
        ``reduction`` (docs/algorithms.md, "Multi-label uncertainty").
    reduction : {"mean", "min"}, optional
        With ``multilabel=True`` only: "mean" (default) over the classes, or "min", the most
        uncertain class (the smallest margin). Any other value, or ``reduction`` without
        ``multilabel=True``, raises ValueError.

    Returns
    -------
    indices : int64 numpy array or torch tensor, shape (min(budget, available),)
        Ordered by score; ties go to the smaller row index.

    Pools out of memory: ``logits`` may also be a numpy memmap (read in chunks with one chunk
    resident) or an iterable of (n_i, C) chunks, rows in order (a list, a generator,
    :func:`alscale.chunked`, :func:`alscale.logits_from_embeddings`); the same holds for every
    selection function. Memory: one chunk plus O(budget).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> logits = np.array([[4.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    >>> alscale.select_margin(logits, 2)
    array([1, 2])
    >>> tags = np.array([[6.0, -5.0, 4.0], [0.2, -8.0, 7.0], [3.0, -0.1, 9.0]])  # 3 sigmoids
    >>> alscale.select_margin(tags, 2, multilabel=True, reduction="min")
    array([2, 1])
    """
    return _select(logits, budget, _backend.margin(multilabel, reduction), exclude, num_threads, group, row_ids)


def select_confidence(logits: Any, budget: Any, *, exclude: Any = None, num_threads: int = 0, group: Any = None,
                      row_ids: Any = None, multilabel: bool = False, reduction: str = DEFAULT_REDUCTION):
    """The ``budget`` rows with the smallest maximum probability, smallest first (with
    ``multilabel=True``: the smallest per-class confidence max(p_c, 1 - p_c) reduced by
    ``reduction``, :func:`confidence_scores`). Parameters and pool forms as
    :func:`select_margin`."""
    return _select(logits, budget, _backend.confidence(multilabel, reduction), exclude, num_threads, group, row_ids)


def select_entropy(logits: Any, budget: Any, *, exclude: Any = None, num_threads: int = 0, group: Any = None,
                   row_ids: Any = None, multilabel: bool = False, reduction: str = DEFAULT_REDUCTION):
    """The ``budget`` rows with the largest softmax entropy, largest first, ties to the smaller
    row index (with ``multilabel=True``: the largest binary entropy reduced over the classes
    by ``reduction`` — "min" takes each row's most uncertain class, its largest entropy —
    :func:`entropy_scores`). Parameters and pool forms as :func:`select_margin`."""
    return _select(logits, budget, _backend.entropy(multilabel, reduction), exclude, num_threads, group, row_ids)


def select_boundary(logits: Any, budget: Any, *, weight: Any = None, exclude: Any = None, num_threads: int = 0,
                    group: Any = None, row_ids: Any = None, multilabel: bool = False):
    """MASE: the ``budget`` rows closest to a decision boundary (smallest
    :func:`boundary_scores`), without class balancing; ties to the smaller row index.

    ``multilabel=True`` raises ValueError: the boundary distance is defined for one softmax
    (the predicted class against the others), not for independent sigmoids.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.select_boundary(np.array([[3.0, 0.0], [1.0, 0.8], [0.0, 2.0]]), 1)
    array([1])
    """
    refuse_multilabel(multilabel, "select_boundary")
    return _select(logits, budget, _backend.boundary(weight), exclude, num_threads, group, row_ids)


def select_balanced(logits: Any, budget: Any, *, weight: Any = None, exclude: Any = None, num_threads: int = 0,
                    group: Any = None, row_ids: Any = None, multilabel: bool = False):
    """BASE, Balanced Selection (Emam et al., "Active Learning at the ImageNet Scale").

    Classes are served in index order 0…C-1; class c takes q_c = B // C + (c < B % C) rows with
    the smallest score for c among the rows not taken yet, where a row's score for c is its
    distance r_c to the p/c boundary (p its predicted class) — or, for rows predicted c, their
    distance to their nearest boundary. Ties go to the smaller row index. This is the official
    implementation's rule exactly, computed in one pass over the logits with bounded per-class
    candidate sets (another pass only if heavy ties exhaust them).

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (N, C)
        float16, bfloat16 (torch), float32 or float64; any strides; never copied in full.
    budget : int
        Rows to select (B); clipped to the rows not excluded.
    weight : array_like or torch.Tensor, shape (C, D), optional
        The linear head's weight; None takes the plain logit gap (every ||w_p - w_c|| = 1).
    exclude : index array or boolean mask of shape (N,), optional
        Rows that may not be selected (already labeled).
    num_threads : int, optional
        OpenMP threads, 0 (default) for all cores. The result never depends on it.
    group : torch.distributed ProcessGroup, optional
        A pool sharded over the group's ranks: each rank passes its own rows (and ``exclude``
        over them) with their global ``row_ids``; every rank gets the identical global
        selection, the one a single process would give on the whole pool (docs/scale.md).
    row_ids : int array over the local rows, optional
        The global pool row of each local row (required with ``group``); results are global
        row ids and ties go to the smaller global id. Default: the local position.
    multilabel : bool, optional
        True raises ValueError: BASE is defined for one softmax (a predicted class and its
        decision boundaries), not for independent sigmoids; use :func:`select_margin` or
        :func:`alscale.select_cluster_margin` with ``multilabel=True``.

    Returns
    -------
    indices : int64 numpy array, or torch tensor for torch input, shape (min(B, available),)
        The classes' picks concatenated, class 0 first, each in ascending score.

    ``logits`` may be a memmap or an iterable of chunks (see :func:`select_margin`); memory is
    one chunk plus O(C·k) candidates. Heavy ties can need another pass over the chunks: give a
    re-iterable then (a one-shot generator raises in that rare case).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> logits = np.array([[2.0, 0.0], [0.1, 0.0], [0.0, 3.0], [0.0, 0.2]])
    >>> alscale.select_balanced(logits, 2)
    array([1, 3])
    """
    refuse_multilabel(multilabel, "select_balanced")
    k = as_budget(budget)
    return pool_of(logits, exclude=exclude, row_ids=row_ids, group=group, num_threads=num_threads).balanced(k, Head(weight))


def select_random(n: Any, budget: Any, *, exclude: Any = None, seed: Any = None) -> np.ndarray:
    """``min(budget, available)`` distinct rows of a pool of ``n``, uniformly at random.

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
    exclude : index array or boolean mask of shape (n,), optional
    seed : int or numpy.random.Generator, optional
        Same seed, same result.

    Returns
    -------
    indices : numpy.ndarray of int64, in random order.

    Examples
    --------
    >>> import alscale
    >>> sorted(alscale.select_random(10, 3, exclude=[0, 1, 2], seed=0).tolist())[0] >= 3
    True
    """
    rows = as_int(n, "n")
    k = as_budget(budget)
    mask = as_exclude(exclude, rows)
    available = np.arange(rows, dtype=np.int64) if mask is None else np.flatnonzero(mask == 0).astype(np.int64)
    rng = np.random.default_rng(seed)
    return available[rng.choice(available.size, size=min(k, available.size), replace=False)]
