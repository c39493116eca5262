"""base: BASE, balanced selection by distance to the head's decision boundaries."""

from __future__ import annotations

import numpy as np

from ...selection import select_balanced
from . import PoolView, Strategy


class Base(Strategy):
    """BASE: class by class, the rows closest to that class's decision boundary (Emam et al. 2021)."""

    name = "base"
    needs = frozenset({"logits", "weight"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_balanced(pool.logits, budget, weight=pool.weight, num_threads=self.num_threads,
                               **pool.selection_kwargs())
