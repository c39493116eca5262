"""badge and partitioned-badge: k-means++ seeding on last-layer gradient embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..diversity import select_badge
from . import PoolView, Strategy


class Badge(Strategy):
    """BADGE: k-means++ seeding on last-layer gradient embeddings (Ash et al. 2020)."""

    name = "badge"
    needs = frozenset({"logits", "embeddings"})
    logits_in_memory = True  # gradient embeddings: the kernel reads logits and embeddings row by row together
    partitions = 1

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return select_badge(pool.logits, pool.embeddings, budget, exclude=pool.labeled,
                            partitions=min(self.partitions, max(1, budget)), seed=rng,
                            num_threads=self.num_threads)


class PartitionedBadge(Badge):
    """Partitioned BADGE: the pool split at random into ``partitions`` parts, budget B/P each (default P = 10)."""

    name = "partitioned-badge"

    def __init__(self, partitions: int = 10, num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self.partitions = partitions
