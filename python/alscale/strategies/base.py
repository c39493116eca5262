"""base: BASE, balanced selection by distance to the head's decision boundaries."""

from __future__ import annotations

import numpy as np

from ..selection import select_balanced
from . import PoolView
from .mase import Mase


class Base(Mase):
    """BASE: class by class, the rows closest to that class's decision boundary (Emam et al. 2021)."""

    name = "base"
    score_column = "class"
    select_rows = staticmethod(select_balanced)

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        """The class whose quota each pick fills (class c: B // C + (c < B % C) picks, classes in
        order), without reading the pool."""
        c = int(pool.logits.shape[-1])
        b = int(np.asarray(ids).size)
        return np.repeat(np.arange(c, dtype=np.int64), [b // c + (k < b % c) for k in range(c)])
