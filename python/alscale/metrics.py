"""Clustering agreement metrics (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["adjusted_rand_index"]


def adjusted_rand_index(a: Any, b: Any) -> float:
    """Adjusted Rand index of two labelings of the same points (1: identical partitions).

    Examples
    --------
    >>> from alscale.metrics import adjusted_rand_index
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    _, a = np.unique(np.asarray(a), return_inverse=True)
    _, b = np.unique(np.asarray(b), return_inverse=True)
    if a.shape != b.shape:
        raise ValueError(f"labelings must have the same length, got {a.shape} and {b.shape}")
    n = a.size
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
