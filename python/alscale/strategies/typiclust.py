"""typiclust: the most typical point of the largest clusters without a label (Hacohen, Dekel &
Weinshall, "Active Learning on a Budget", ICML 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend.arrays import as_embeddings, check_random_state, unit_rows
from ..coldstart import kmeans_labels, select_typiclust
from . import PoolView, Strategy


class TypiClust(Strategy):
    """TypiClust on the pool's embeddings (:func:`alscale.select_typiclust`): every round, faiss
    k-means into labeled + budget clusters (seeded from the loop's generator), then the most
    typical point (``neighbors`` = 20 neighbours, within the cluster) of each of the largest clusters
    without a label."""

    name = "typiclust"
    needs = frozenset({"embeddings"})
    score_column = "typicality"

    def __init__(self, neighbors: int = 20, num_threads: int = 0, *, k: int | None = None) -> None:
        super().__init__(num_threads)
        if k is not None:
            import warnings

            warnings.warn("TypiClust(k=...) is renamed neighbors=... (removed in alscale 0.3)", DeprecationWarning,
                          stacklevel=2)
            neighbors = k
        self.neighbors = neighbors
        self._picked: tuple | None = None  # (picks, clusters, unit rows, labeled) of the last select

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        z = pool.embeddings
        z = np.asarray(z.detach().cpu().float() if hasattr(z, "detach") else z)
        # select_typiclust's k-means (|labeled| + B clusters, seeded as it seeds it), kept for scores()
        unit = unit_rows(as_embeddings(z), "embeddings")
        labeled = np.asarray(pool.labeled, dtype=bool)
        b = min(int(budget), int(labeled.size - labeled.sum()))
        clusters = (np.zeros(labeled.size, dtype=np.int64) if b <= 0 else
                    kmeans_labels(unit, int(labeled.sum()) + b, check_random_state(rng).integers(2**31 - 1),
                                  self.num_threads))
        picks = np.asarray(select_typiclust(z, budget, labeled=labeled, neighbors=self.neighbors, clusters=clusters,
                                            num_threads=self.num_threads), dtype=np.int64)
        self._picked = (picks, clusters, unit, labeled)
        return picks

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray | None:
        """The typicality of each pick when it was picked: 1 / the mean squared distance (of the
        unit rows, 2 - 2 cos) to its k' = min(neighbors, m // 2) nearest others among the m points
        of its cluster still without a label or pick; NaN for a cluster's last point. None unless
        ``ids`` are this instance's last picks (the clusters are its k-means')."""
        if self._picked is None or not np.array_equal(self._picked[0], ids):
            return None
        picks, clusters, unit, labeled = self._picked
        free = ~labeled
        by_cluster = np.argsort(clusters, kind="stable")  # each cluster's rows, ascending
        starts = np.searchsorted(clusters[by_cluster], clusters[picks], side="left")
        ends = np.searchsorted(clusters[by_cluster], clusters[picks], side="right")
        out = np.full(picks.size, np.nan)
        for j, i in enumerate(picks.tolist()):
            rows = by_cluster[starts[j]:ends[j]]
            rows = rows[free[rows]]
            kk = min(self.neighbors, rows.size // 2)
            if kk:
                d2 = 2.0 - 2.0 * (unit[rows].astype(np.float64) @ unit[i].astype(np.float64))
                d2 = np.sort(d2[rows != i])[:kk]
                out[j] = 1.0 / max(float(d2.mean()), np.finfo(np.float64).tiny)
            free[i] = False
        return out
