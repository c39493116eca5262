"""margin, confidence, entropy: uncertainty sampling on the softmax of the logits."""

from __future__ import annotations

import numpy as np

from ...selection import select_confidence, select_entropy, select_margin
from . import PoolView, Strategy


class Margin(Strategy):
    name = "margin"
    needs = frozenset({"logits"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_margin(pool.logits, budget, num_threads=self.num_threads, **pool.selection_kwargs())


class Confidence(Strategy):
    name = "confidence"
    needs = frozenset({"logits"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_confidence(pool.logits, budget, num_threads=self.num_threads, **pool.selection_kwargs())


class Entropy(Strategy):
    name = "entropy"
    needs = frozenset({"logits"})
    shardable = True

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return select_entropy(pool.logits, budget, num_threads=self.num_threads, **pool.selection_kwargs())
