"""cluster-margin: low-margin candidates spread over average-linkage clusters of the pool
(Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021)."""

from __future__ import annotations

import numpy as np

from ..cluster_margin import select_cluster_margin
from ..hac import hac_average
from . import PoolView, Strategy


class ClusterMargin(Strategy):
    """Clusters the pool once — graph average linkage on the ``neighbors``-NN cosine graph of the
    embeddings of the first selection round, cut into ``clusters`` clusters (default: the
    budget) — then every round takes the ``candidates_factor`` × budget lowest-margin unlabeled
    rows and round-robins over their clusters (:func:`alscale.select_cluster_margin`). The
    cluster labels are part of the loop's checkpoints, so a resumed run reuses them."""

    name = "cluster-margin"
    needs = frozenset({"logits", "embeddings"})

    def __init__(self, clusters: int = 0, neighbors: int = 10, candidates_factor: int = 10,
                 num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self.clusters = clusters
        self.neighbors = neighbors
        self.candidates_factor = candidates_factor
        self._labels: np.ndarray | None = None

    def options(self) -> dict:
        return {"clusters": self.clusters, "neighbors": self.neighbors, "candidates_factor": self.candidates_factor}

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        if self._labels is None:
            n = pool.size
            k = min(self.neighbors, n - 1)
            target = min(n, self.clusters if self.clusters > 0 else budget)
            self._labels = hac_average(pool.embeddings, n_clusters=target, neighbors=k,
                                       num_threads=self.num_threads).labels
        available = int(pool.size - pool.labeled.sum())
        candidates = min(available, self.candidates_factor * budget)
        return select_cluster_margin(pool.logits, self._labels, budget, candidates=max(candidates, min(budget, available)),
                                     exclude=pool.labeled, seed=rng, num_threads=self.num_threads)

    def state(self) -> dict:
        return {} if self._labels is None else {"labels": self._labels.tolist()}

    def load_state(self, state: dict) -> None:
        self._labels = np.asarray(state["labels"], dtype=np.int64) if "labels" in state else None
