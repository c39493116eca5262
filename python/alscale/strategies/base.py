"""base: BASE, balanced selection by distance to the head's decision boundaries."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ..selection import boundary_scores, select_balanced
from . import PoolView, picked_values
from .mase import Mase


class Base(Mase):
    """BASE: class by class, the rows closest to that class's decision boundary (Emam et al. 2021)."""

    name = "base"
    score_column = "distance"
    select_rows = staticmethod(select_balanced)

    @staticmethod
    def classes(num_classes: int, budget: int) -> np.ndarray:
        """The class whose quota each pick fills (class c: B // C + (c < B % C) picks, classes in
        order)."""
        c, b = int(num_classes), int(budget)
        return np.repeat(np.arange(c, dtype=np.int64), [b // c + (k < b % c) for k in range(c)])

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        """The distance each pick was ranked by for its class c: its distance r_c to the boundary
        between its predicted class p and c, (l_p - l_c) / ||w_p - w_c|| (the logit gap without a
        head weight), or, for a row predicted c, its distance to its nearest boundary (as
        :func:`alscale.boundary_scores`); float64, from the picked rows only."""
        picks = self.classes(int(pool.logits.shape[-1]), np.size(ids))
        w = None
        if pool.weight is not None:
            w = np.asarray(pool.weight.detach().cpu() if hasattr(pool.weight, "detach") else pool.weight,
                           dtype=np.float64)
        return picked_values(lambda x, at: self._distances(np.asarray(x, dtype=np.float64), picks[at], pool.weight, w),
                             pool.logits, ids)

    @staticmethod
    def _distances(x: np.ndarray, c: np.ndarray, weight: Any, w: Any) -> np.ndarray:
        """scores() of rows x (float64 logits) picked for classes c."""
        p = np.argmax(x, axis=1)
        out = np.empty(x.shape[0], dtype=np.float64)
        own = p == c
        if own.any():
            out[own] = boundary_scores(x[own], weight=weight)
        other = np.flatnonzero(~own)
        gap = x[other, p[other]] - x[other, c[other]]
        if w is None:
            norm = np.ones(other.size)
        else:
            d = w[p[other]] - w[c[other]]
            scale = np.abs(d).max(axis=1, initial=0.0)
            safe = np.where(scale > 0, scale, 1.0)
            norm = safe * np.sqrt(((d / safe[:, None]) ** 2).sum(axis=1))  # no overflow for huge heads
        with np.errstate(divide="ignore", invalid="ignore"):
            out[other] = np.where(norm > 0, gap / np.where(norm > 0, norm, 1.0), np.inf)
        return out

    def columns(self, pool: PoolView, ids: np.ndarray) -> Dict[str, np.ndarray]:
        """``distance`` (:meth:`scores`) and ``class``, the class each pick was taken for."""
        return {"distance": self.scores(pool, ids), "class": self.classes(int(pool.logits.shape[-1]), np.size(ids))}
