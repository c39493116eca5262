"""mase: the rows closest to a decision boundary of the linear head (no balancing)."""

from __future__ import annotations

import numpy as np

from ...selection import select_boundary
from . import PoolView, Strategy


class Mase(Strategy):
    """MASE: the rows closest to any decision boundary, without class balancing."""

    name = "mase"
    needs = frozenset({"logits", "weight"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_boundary(pool.logits, budget, weight=pool.weight, num_threads=self.num_threads,
                               **pool.selection_kwargs())
