"""cluster-margin: low-margin candidates spread over average-linkage clusters of the pool
(Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np

import warnings

from ..cluster_margin import cluster_embeddings, select_cluster_margin
from ..selection import margin_scores
from . import PoolView, Strategy, multilabel_options, picked_scores


class ClusterMargin(Strategy):
    """Clusters the pool once per run — graph average linkage on the ``neighbors``-NN cosine
    graph of the embeddings of the first selection round (faiss's graph where the exact one's N²·D passes 10¹¹;
    :func:`alscale.cluster_margin.cluster_embeddings`), cut into ``n_clusters`` clusters
    (default 0: the first round's budget) — then every round takes the ``candidates_factor`` × budget lowest-margin
    unlabeled rows and round-robins over their clusters (:func:`alscale.select_cluster_margin`).
    Once clustered it needs only the logits: the loop stops computing embeddings. The cluster
    labels are part of the loop's checkpoints (an array file beside the checkpoint), so a
    resumed run reuses them and picks exactly what an uninterrupted run picks.

    Sharded (torchrun): each rank scores its shard; for the clustering, rank 0 gathers the
    shards' embeddings, clusters them and sends the labels to every rank; the selection is
    the sharded :func:`alscale.select_cluster_margin`, identical to one process's.

    Given cluster ids (``PoolView.clusters``, e.g. ``alscale query --clusters``) are used as they
    are, with no clustering. ``multilabel=True`` ranks the candidates by the multi-label margin
    (one sigmoid per class, ``reduction`` over the classes: :func:`alscale.select_margin`).

    Embedding rows that are all zero (e.g. a ReLU layer silent on an input) have no cosine
    distance to anything: they are identical points without a direction, so they form one
    cluster of their own (the last cluster id) and the other rows are clustered as above."""

    name = "cluster-margin"
    needs = frozenset({"logits", "embeddings"})
    shardable = True

    score_column = "margin"
    state_options = ("n_clusters", "neighbors", "knn_recall", "pca")

    def __init__(self, n_clusters: int = 0, neighbors: int = 10, candidates_factor: int = 10,
                 knn_recall: float = 0.95, pca: int | None = None, multilabel: bool = False,
                 reduction: str = "mean", num_threads: int = 0, *, clusters: int | None = None) -> None:
        super().__init__(num_threads)
        if clusters is not None:
            warnings.warn("ClusterMargin(clusters=...) is renamed n_clusters=...; clusters= will be removed in "
                          "alscale 0.3", DeprecationWarning, stacklevel=2)
            n_clusters = clusters
        if candidates_factor < 1:
            raise ValueError(f"candidates_factor must be at least 1, got {candidates_factor}")
        self._library_keywords = multilabel_options(multilabel, reduction)
        self.n_clusters = n_clusters
        self.neighbors = neighbors
        self.candidates_factor = candidates_factor
        self.knn_recall = knn_recall  # the faiss graph's target recall@k (where N²·D passes 1e11)
        self.pca = pca  # reduce the embeddings to this many dimensions before the graph
        self.multilabel = bool(multilabel)
        self.reduction = reduction
        self._labels: np.ndarray | None = None

    def options(self) -> dict:
        """The settings (in the checkpoint's config); knn_recall, pca and the multi-label ones
        only when not the defaults, so that earlier checkpoints still resume."""
        out = {"n_clusters": self.n_clusters, "neighbors": self.neighbors, "candidates_factor": self.candidates_factor}
        if self.knn_recall != 0.95:
            out["knn_recall"] = self.knn_recall
        if self.pca is not None:
            out["pca"] = self.pca
        out.update(self._multilabel())
        return out

    def _multilabel(self) -> dict:
        return dict(self._library_keywords)

    def _set_labels(self, labels: np.ndarray | None) -> None:
        self._labels = labels
        # clustered: the loop need not compute the pool's embeddings any more
        self.needs = type(self).needs if labels is None else frozenset({"logits"})

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        if pool.clusters is not None:
            labels = pool.clusters
            shape = getattr(labels, "shape", None)
            if shape is not None and len(shape) == 1 and int(shape[0]) != pool.size:
                raise ValueError(f"clusters has {int(shape[0])} cluster ids but the pool has {pool.size} rows "
                                 "(one per pool row)")
        else:
            if self._labels is None:
                if pool.embeddings is None:
                    raise ValueError("cluster-margin needs the pool's embeddings (to cluster them once) or its "
                                     "cluster ids (clusters=)")
                target = min(pool.size, self.n_clusters if self.n_clusters > 0 else budget)
                self._set_labels(self._cluster(pool, max(1, target)))
            labels = self._labels
        labels = labels if pool.rows is None else labels[pool.rows]
        return select_cluster_margin(pool.logits, labels, budget, candidates=self.candidates_factor * budget,
                                     seed=rng, num_threads=self.num_threads, **self._multilabel(),
                                     **pool.selection_kwargs())

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        return picked_scores(margin_scores, pool.logits, ids, **self._multilabel())

    def _cluster(self, pool: PoolView, target: int) -> np.ndarray:
        z = pool.embeddings
        z = z.detach().cpu().numpy() if hasattr(z, "detach") else np.asarray(z)
        run = lambda x: cluster_embeddings(x, target, neighbors=self.neighbors, recall=self.knn_recall, pca=self.pca,
                                           num_threads=self.num_threads, progress=pool.progress)
        if pool.rows is None:
            return run(z)
        from ..distributed import Comm, broadcast_array, gather_rows

        whole = gather_rows(z, pool.rows, pool.size, group=pool.group)  # rank 0's; None elsewhere
        labels, error = None, None
        if whole is not None:
            try:
                labels = run(whole)
            except Exception as err:  # every rank raises it, none waits for the labels
                error = err
        Comm(pool.group).agree(error, None)
        return broadcast_array(labels, group=pool.group)

    def state(self) -> dict:
        """``{"labels": (N,) int64 array}`` once clustered (the loop saves arrays beside its
        checkpoint)."""
        return {} if self._labels is None else {"labels": self._labels}

    def load_state(self, state: dict) -> None:
        """Restores the cluster labels: an integer array or a list of integer cluster ids >= 0
        (checkpoints before the array files held lists; floats, booleans or negative ids are
        refused, not truncated)."""
        unknown = set(state) - {"labels"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown, key=str)}")
        if "labels" not in state:
            self._set_labels(None)
            return
        labels = state["labels"]
        if isinstance(labels, np.ndarray):
            if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
                raise ValueError(f"'labels' must be a 1-D array of integer cluster ids, got {labels.dtype} of "
                                 f"shape {labels.shape}")
            if labels.size and int(labels.min()) < 0:
                raise ValueError(f"'labels' must hold integer cluster ids >= 0, got {int(labels.min())}")
            if labels.size and labels.dtype.kind == "u" and int(labels.max()) >= 2**62:
                raise ValueError(f"'labels' holds cluster id {int(labels.max())}, more than any pool has rows")
            self._set_labels(labels.astype(np.int64))
            return
        if not isinstance(labels, list):
            raise TypeError(f"'labels' must be a list of cluster ids, got {type(labels).__name__}")
        bad = next((v for v in labels if isinstance(v, bool) or not isinstance(v, int) or v < 0), None)
        if bad is not None:
            raise ValueError(f"'labels' must hold integer cluster ids >= 0, got {bad!r}")
        if labels and max(labels) >= 2**62:
            raise ValueError(f"'labels' holds cluster id {max(labels)}, more than any pool has rows")
        self._set_labels(np.asarray(labels, dtype=np.int64))

    def check_state(self, pool_size: int) -> None:
        if self._labels is None:
            return
        if self._labels.size != pool_size:
            raise ValueError(f"'labels' has {self._labels.size} cluster ids, but the pool has {pool_size} rows")
        if self._labels.size and int(self._labels.max()) >= pool_size:
            raise ValueError(f"'labels' holds cluster id {int(self._labels.max())}; a pool of {pool_size} rows has "
                             f"ids below {pool_size}")
