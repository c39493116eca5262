"""balanced-random: an oracle (it reads the true labels, as in the BASE paper) that fills the
classes equally — random rows of each class taken round-robin, class 0 first, a class that runs
out skipped."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import PoolView, Strategy


class BalancedRandom(Strategy):
    """An oracle baseline: random rows that fill the classes equally, read from the true labels."""

    name = "balanced-random"
    needs = frozenset({"labels"})

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        rows = np.flatnonzero(~pool.labeled)
        rows = rows[np.random.default_rng(rng).permutation(rows.size)]
        y = pool.labels[rows]
        # rank of each row within its class (in the random order), then round-robin: by rank, class
        by_class = np.argsort(y, kind="stable")
        starts = np.searchsorted(y[by_class], y[by_class], side="left")
        rank = np.empty(rows.size, dtype=np.int64)
        rank[by_class] = np.arange(rows.size) - starts
        order = np.lexsort((y, rank))
        return rows[order[: min(budget, rows.size)]].astype(np.int64)
