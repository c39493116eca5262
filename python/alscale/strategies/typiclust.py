"""typiclust: the most typical point of the largest clusters without a label (Hacohen, Dekel &
Weinshall, "Active Learning on a Budget", ICML 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..coldstart import select_typiclust
from . import PoolView, Strategy


class TypiClust(Strategy):
    """TypiClust on the pool's embeddings (:func:`alscale.select_typiclust`): every round, faiss
    k-means into labeled + budget clusters (seeded from the loop's generator), then the most
    typical point (``neighbors`` = 20 neighbours, within the cluster) of each of the largest clusters
    without a label."""

    name = "typiclust"
    needs = frozenset({"embeddings"})

    def __init__(self, neighbors: int = 20, num_threads: int = 0, *, k: int | None = None) -> None:
        super().__init__(num_threads)
        if k is not None:
            import warnings

            warnings.warn("TypiClust(k=...) is renamed neighbors=... (removed in alscale 0.3)", DeprecationWarning,
                          stacklevel=2)
            neighbors = k
        self.neighbors = neighbors

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        z = pool.embeddings
        z = np.asarray(z.detach().cpu().float() if hasattr(z, "detach") else z)
        return select_typiclust(z, budget, labeled=pool.labeled, neighbors=self.neighbors, seed=rng, num_threads=self.num_threads)
