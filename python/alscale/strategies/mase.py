"""mase: the rows closest to a decision boundary of the linear head (no balancing)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..selection import boundary_scores, select_boundary
from . import PoolView, Strategy, picked_scores


class Mase(Strategy):
    """MASE: the rows closest to any decision boundary, without class balancing."""

    name = "mase"
    needs = frozenset({"logits", "weight"})
    shardable = True
    score_column = "boundary"
    select_rows = staticmethod(select_boundary)

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return self.select_rows(pool.logits, budget, weight=pool.weight, num_threads=self.num_threads,
                                **pool.selection_kwargs())

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        return picked_scores(boundary_scores, pool.logits, ids, weight=pool.weight)
