"""random: uniform over the unlabeled pool."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..selection import select_random
from . import PoolView, Strategy


class Random(Strategy):
    """Uniformly random rows of the pool."""

    name = "random"
    needs = frozenset()

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return select_random(pool.size, budget, exclude=pool.labeled, seed=rng)
