"""cluster-margin: low-margin candidates spread over average-linkage clusters of the pool
(Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021)."""

from __future__ import annotations

import numpy as np

from ...cluster_margin import select_cluster_margin
from ...hac import auto_knn_method, hac_average
from . import PoolView, Strategy


class ClusterMargin(Strategy):
    """Clusters the pool once — graph average linkage on the ``neighbors``-NN cosine graph of the
    embeddings of the first selection round (faiss's graph beyond 200,000 rows), cut into ``clusters`` clusters (default: the
    budget) — then every round takes the ``candidates_factor`` × budget lowest-margin unlabeled
    rows and round-robins over their clusters (:func:`alscale.select_cluster_margin`). The
    cluster labels are part of the loop's checkpoints, so a resumed run reuses them.

    Embedding rows that are all zero (e.g. a ReLU layer silent on an input) have no cosine
    distance to anything: they are identical points without a direction, so they form one
    cluster of their own (the last cluster id) and the other rows are clustered as above."""

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
            target = min(n, self.clusters if self.clusters > 0 else budget)
            self._labels = self._cluster(pool.embeddings, target)
        available = int(pool.size - pool.labeled.sum())
        candidates = min(available, self.candidates_factor * budget)
        return select_cluster_margin(pool.logits, self._labels, budget, candidates=max(candidates, min(budget, available)),
                                     exclude=pool.labeled, seed=rng, num_threads=self.num_threads)

    def _cluster(self, embeddings, target: int) -> np.ndarray:
        z = np.asarray(embeddings.detach().cpu().float() if hasattr(embeddings, "detach") else embeddings)
        if z.ndim != 2 or z.dtype.kind not in "fiu":
            # let hac_average raise its clear error about the shape or dtype
            return hac_average(z, n_clusters=max(1, target), neighbors=1, num_threads=self.num_threads).labels
        zero = ~np.any(z != 0, axis=1)  # all-zero rows (a NaN row is not zero: hac_average refuses it)
        labels = np.zeros(z.shape[0], dtype=np.int64)
        rows = np.flatnonzero(~zero)
        m = rows.size
        if m >= 2:
            want = max(1, min(m, target - (1 if zero.any() else 0)))
            sub = hac_average(z if m == z.shape[0] else z[rows], n_clusters=want,
                              neighbors=min(self.neighbors, m - 1), knn_method=auto_knn_method(m),
                              num_threads=self.num_threads).labels
            labels[rows] = np.asarray(sub, dtype=np.int64)
        if zero.any():
            labels[zero] = int(labels[rows].max()) + 1 if m else 0
        return labels

    def state(self) -> dict:
        return {} if self._labels is None else {"labels": self._labels.tolist()}

    def load_state(self, state: dict) -> None:
        """Restores the cluster labels: a list of integer cluster ids >= 0 (floats, booleans or
        negative ids are refused, not truncated)."""
        unknown = set(state) - {"labels"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown, key=str)}")
        if "labels" not in state:
            self._labels = None
            return
        labels = state["labels"]
        if not isinstance(labels, list):
            raise TypeError(f"'labels' must be a list of cluster ids, got {type(labels).__name__}")
        bad = next((v for v in labels if isinstance(v, bool) or not isinstance(v, int) or v < 0), None)
        if bad is not None:
            raise ValueError(f"'labels' must hold integer cluster ids >= 0, got {bad!r}")
        if labels and max(labels) >= 2**62:
            raise ValueError(f"'labels' holds cluster id {max(labels)}, more than any pool has rows")
        self._labels = np.asarray(labels, dtype=np.int64)

    def check_state(self, pool_size: int) -> None:
        if self._labels is None:
            return
        if self._labels.size != pool_size:
            raise ValueError(f"'labels' has {self._labels.size} cluster ids, but the pool has {pool_size} rows")
        if self._labels.size and int(self._labels.max()) >= pool_size:
            raise ValueError(f"'labels' holds cluster id {int(self._labels.max())}; a pool of {pool_size} rows has "
                             f"ids below {pool_size}")
