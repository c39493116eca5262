"""margin, confidence, entropy: uncertainty sampling on the softmax of the logits."""

from __future__ import annotations

import numpy as np

from ...selection import select_confidence, select_entropy, select_margin
from . import PoolView, Strategy


class Margin(Strategy):
    """The rows with the smallest softmax margin p(1) - p(2)."""

    name = "margin"
    needs = frozenset({"logits"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_margin(pool.logits, budget, num_threads=self.num_threads, **pool.selection_kwargs())


class Confidence(Strategy):
    """The rows with the smallest maximum softmax probability."""

    name = "confidence"
    needs = frozenset({"logits"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_confidence(pool.logits, budget, num_threads=self.num_threads, **pool.selection_kwargs())


class Entropy(Strategy):
    """The rows with the largest softmax entropy."""

    name = "entropy"
    needs = frozenset({"logits"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_entropy(pool.logits, budget, num_threads=self.num_threads, **pool.selection_kwargs())
