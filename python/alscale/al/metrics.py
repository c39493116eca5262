"""Metrics, numpy only: the per-round metrics of an active-learning run (accuracy and the balance
of the labeled set; for multi-label data, average precision per class and its mean, mAP) and
the agreement of two clusterings (adjusted Rand index).

Everything is a bincount over labels (O(N)); no per-sample Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["adjusted_rand_index", "accuracy", "average_precision", "balance", "class_counts", "mean_average_precision",
           "per_class_accuracy"]


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of ``predictions`` equal to ``labels`` (both shape (N,)); NaN when N == 0.

    Examples
    --------
    >>> from alscale.al.metrics import accuracy
    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"predictions have shape {p.shape} but labels have shape {y.shape}")
    return float(np.mean(p == y)) if y.size else float("nan")


def _labels(values: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    """A 1-D int64 array of class labels: integer types (or floats holding whole numbers) only,
    in [0, num_classes) when given."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind == "f":
        if not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise TypeError(f"{name} must be integer class labels, got non-integer values of dtype {a.dtype}")
    elif a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class labels, got dtype {a.dtype}")
    if num_classes is not None and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"{name} out of range: labels must lie in [0, {num_classes}), got {a.min()}..{a.max()}")
    return a.astype(np.int64)


def _num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return int(num_classes)


def per_class_accuracy(predictions: Any, labels: Any, num_classes: int) -> np.ndarray:
    """Accuracy on the test rows of each class, shape (C,); NaN for a class with no test row.
    Labels must lie in [0, C) (ValueError otherwise); predictions are compared as they are.

    Examples
    --------
    >>> from alscale.al.metrics import per_class_accuracy
    >>> per_class_accuracy([0, 1, 0], [0, 1, 1], 3).tolist()
    [1.0, 0.5, nan]
    """
    c = _num_classes(num_classes)
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"predictions have shape {p.shape} but labels have shape {y.shape}")
    p, y = _labels(p, "predictions"), _labels(y, "labels", c)
    total = np.bincount(y, minlength=c).astype(np.float64)
    right = np.bincount(y[p == y], minlength=c).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, right / np.maximum(total, 1.0), np.nan)


def class_counts(labels: Any, num_classes: int) -> np.ndarray:
    """Rows of each class among ``labels``, shape (C,) int64. Labels must be integers
    (TypeError) in [0, C) (ValueError).

    Examples
    --------
    >>> from alscale.al.metrics import class_counts
    >>> class_counts([2, 0, 2], 4).tolist()
    [1, 0, 2, 0]
    """
    c = _num_classes(num_classes)
    y = _labels(np.asarray(labels).reshape(-1), "labels", c)
    return np.bincount(y, minlength=c).astype(np.int64)


def balance(counts: Any) -> dict:
    """Balance of a label distribution given its class counts (C,).

    Returns
    -------
    dict with
        ``empty_classes``: classes with no label;
        ``imbalance_ratio``: max / min count over the classes present (1.0 is balanced; NaN
        with no label);
        ``label_entropy``: entropy of the class distribution divided by log C (1.0 is uniform
        over all C classes, 0.0 a single class; 1.0 when C == 1, NaN with no label).

    Examples
    --------
    >>> from alscale.al.metrics import balance
    >>> {k: round(v, 4) for k, v in balance([4, 2, 0]).items()}
    {'empty_classes': 1, 'imbalance_ratio': 2.0, 'label_entropy': 0.5794}
    """
    c = np.asarray(counts, dtype=np.float64)
    present = c[c > 0]
    if present.size == 0:
        return {"empty_classes": int(c.size), "imbalance_ratio": float("nan"), "label_entropy": float("nan")}
    p = present / present.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(c.size)) if c.size > 1 else 1.0
    return {
        "empty_classes": int((c == 0).sum()),
        "imbalance_ratio": float(present.max() / present.min()),
        "label_entropy": entropy,
    }



def _label_matrix(labels: Any, shape: tuple) -> np.ndarray:
    """An (N, C) 0/1 label matrix as bool: integer or bool (or floats holding 0 and 1) only."""
    y = np.asarray(labels)
    if y.shape != shape:
        raise ValueError(f"labels have shape {y.shape} but scores have shape {shape}")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"labels must be a 0/1 matrix, got dtype {y.dtype}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must hold only 0 and 1 (one column per class)")
    return y.astype(bool)


def average_precision(scores: Any, labels: Any) -> np.ndarray:
    """Average precision of each class (column) over the rows, shape (C,); NaN for a class
    with no positive row.

    The ranking is by score, largest first; AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct
    score values k (the thresholds, largest first), with P_k and R_k the precision and recall
    of the rows scoring at least the k-th value — tied rows enter together, so their order
    does not matter. This is scikit-learn's ``average_precision_score`` (no interpolation).

    Parameters
    ----------
    scores : array_like, shape (N, C) or (N,)
        Real scores (e.g. logits or probabilities: only their order counts), finite.
    labels : array_like, same shape, 0/1

    Examples
    --------
    >>> from alscale.al.metrics import average_precision
    >>> average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]).round(4).tolist()   # (1 + 2/3) / 2
    [0.8333]
    >>> average_precision([[0.5, 1.0], [0.5, 2.0]], [[1, 0], [0, 0]]).tolist()    # a tie; no positive
    [0.5, nan]
    """
    s = np.asarray(scores)
    if s.ndim == 1:
        return average_precision(s[:, None], np.asarray(labels).reshape(-1, 1) if np.ndim(labels) == 1 else labels)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, C) or (N,), got shape {s.shape}")
    if s.dtype.kind not in "biuf":
        raise TypeError(f"scores must be real numbers, got dtype {s.dtype}")
    y = _label_matrix(labels, s.shape)
    if s.size and not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    n, c = s.shape
    out = np.full(c, np.nan)
    step = max(1, (1 << 22) // max(1, n))  # columns per block: ~4M entries of work arrays
    for first in range(0, c, step):
        block = slice(first, min(c, first + step))
        order = np.argsort(-s[:, block].astype(np.float64), axis=0, kind="stable")
        ss = np.take_along_axis(s[:, block], order, axis=0)
        tp = np.cumsum(np.take_along_axis(y[:, block], order, axis=0), axis=0, dtype=np.int64)
        last = np.ones_like(ss, dtype=bool)  # the last row of each run of tied scores: a threshold
        last[:-1] = ss[:-1] != ss[1:]
        at = np.where(last, tp, 0)
        before = np.zeros_like(at)  # true positives at the previous threshold
        before[1:] = np.maximum.accumulate(at, axis=0)[:-1]
        precision = tp / np.arange(1, n + 1, dtype=np.float64)[:, None]
        positives = tp[-1] if n else np.zeros(block.stop - first, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (np.where(last, (tp - before) * precision, 0.0)).sum(axis=0) / positives
        out[block] = np.where(positives > 0, ap, np.nan)
    return out


def mean_average_precision(scores: Any, labels: Any) -> float:
    """mAP: the mean of :func:`average_precision` over the classes with at least one positive
    row (NaN if none has one) — the Cluster-Margin paper's metric on Open Images.

    Examples
    --------
    >>> from alscale.al.metrics import mean_average_precision
    >>> mean_average_precision([[3, 1], [2, 2], [1, 3]], [[1, 0], [0, 0], [1, 1]])   # (1 + 2/3)/2 and 1
    0.9166666666666666
    """
    ap = average_precision(scores, labels)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else float("nan")


def adjusted_rand_index(a: Any, b: Any) -> float:
    """Adjusted Rand index of two labelings of the same points (1: identical partitions).

    Labelings with a single point, or in which both are one cluster, or both all singletons,
    are identical partitions: 1.0 (as scikit-learn). Empty labelings have no partition to
    compare (ValueError).

    Examples
    --------
    >>> from alscale.al.metrics import adjusted_rand_index
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> adjusted_rand_index([0], [5])
    1.0
    """
    a, b = np.asarray(a), np.asarray(b)
    for name, v in (("a", a), ("b", b)):
        if v.ndim != 1:
            raise ValueError(f"labelings must be 1-D, {name} has shape {v.shape}")
    if a.shape != b.shape:
        raise ValueError(f"labelings must have the same length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("labelings are empty: the adjusted Rand index needs at least one point")
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    a, b = a.reshape(-1), b.reshape(-1)
    n = a.size
    if n == 1:
        return 1.0
    # Contingency table as counts of (a, b) pairs, without a dense (Ka, Kb) matrix.
    pairs = np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b, return_counts=True)[1].astype(np.float64)

    def comb2(v: np.ndarray) -> float:
        return float((v * (v - 1.0) / 2.0).sum())

    sum_ij = comb2(pairs)
    sum_a = comb2(np.bincount(a).astype(np.float64))
    sum_b = comb2(np.bincount(b).astype(np.float64))
    expected = sum_a * sum_b / (n * (n - 1.0) / 2.0)
    top = (sum_a + sum_b) / 2.0
    return 1.0 if top == expected else (sum_ij - expected) / (top - expected)
