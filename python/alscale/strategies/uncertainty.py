"""margin, confidence, entropy: uncertainty sampling on the model's probabilities — one softmax
over the classes, or (``multilabel=True``) one sigmoid per class reduced over the classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..selection import (confidence_scores, entropy_scores, margin_scores, select_confidence, select_entropy,
                         select_margin)
from . import PoolView, Strategy, multilabel_options, picked_scores


class _Uncertainty(Strategy):
    needs = frozenset({"logits"})
    shardable = True
    select_rows = staticmethod(select_margin)
    score_rows = staticmethod(margin_scores)

    def __init__(self, multilabel: bool = False, reduction: str = "mean", num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self._library_keywords = multilabel_options(multilabel, reduction)
        self.multilabel = bool(multilabel)
        self.reduction = reduction

    def options(self) -> dict:
        """The settings; ``multilabel`` and ``reduction`` only for multi-label logits (so that
        checkpoints of single-label runs still resume)."""
        return dict(self._library_keywords)

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return self.select_rows(pool.logits, budget, num_threads=self.num_threads, **self.options(),
                                **pool.selection_kwargs())

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        return picked_scores(self.score_rows, pool.logits, ids, **self.options())


class Margin(_Uncertainty):
    """The rows with the smallest margin: softmax p(1) - p(2), or (multilabel) the mean or min
    over the classes of |2 sigmoid(z) - 1|."""

    name = "margin"
    score_column = "margin"


class Confidence(_Uncertainty):
    """The rows with the smallest top probability (multilabel: max(p, 1 - p), mean or min)."""

    name = "confidence"
    score_column = "confidence"
    select_rows = staticmethod(select_confidence)
    score_rows = staticmethod(confidence_scores)


class Entropy(_Uncertainty):
    """The rows with the largest entropy (multilabel: binary entropies, mean or max)."""

    name = "entropy"
    score_column = "entropy"
    select_rows = staticmethod(select_entropy)
    score_rows = staticmethod(entropy_scores)
