"""coreset and partitioned-coreset: greedy k-center on the embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..diversity import select_coreset
from . import PoolView, Strategy


class Coreset(Strategy):
    """Coreset: greedy k-center on the pool's embeddings (Sener & Savarese 2018)."""

    name = "coreset"
    needs = frozenset({"embeddings"})
    partitions = 1

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return select_coreset(pool.embeddings, budget, labeled=pool.labeled, partitions=min(self.partitions, max(1, budget)),
                              seed=rng, num_threads=self.num_threads)


class PartitionedCoreset(Coreset):
    """Partitioned Coreset: the pool split at random into ``partitions`` parts, budget B/P each (default P = 10)."""

    name = "partitioned-coreset"

    def __init__(self, partitions: int = 10, num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self.partitions = partitions
