"""probcover: greedy maximum coverage of δ-balls (Yehuda, Dekel, Hacohen & Weinshall, "Active
Learning Through a Covering Lens", NeurIPS 2022)."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from ...coldstart import probcover_delta, select_probcover
from ...hac import knn_graph
from . import PoolView, Strategy


class ProbCover(Strategy):
    """ProbCover on the pool's embeddings (:func:`alscale.select_probcover`) over the
    ``neighbors``-NN graph (``knn_method``: "exact" or "faiss"). δ is chosen once, at the first
    selection, by the purity rule (α = ``purity``, k-means into the number of classes, seeded
    from the loop's generator), as the paper fixes δ per data set; it is part of the loop's
    checkpoints. The kNN graph is kept while the embeddings stay the same (a linear probe's
    inputs), so later rounds only run the greedy coverage."""

    name = "probcover"
    needs = frozenset({"embeddings"})

    def __init__(self, neighbors: int = 20, purity: float = 0.95, knn_method: str = "faiss",
                 num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self.neighbors = neighbors
        self.purity = purity
        self.knn_method = knn_method
        self._delta: float | None = None
        self._graph: tuple | None = None
        self._digest = b""

    def options(self) -> dict:
        return {"neighbors": self.neighbors, "purity": self.purity, "knn_method": self.knn_method}

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        if pool.num_classes is None:
            raise ValueError("probcover needs the number of classes (PoolView.num_classes) for its purity rule")
        z = pool.embeddings
        z = np.ascontiguousarray(z.detach().cpu().float() if hasattr(z, "detach") else z)
        digest = hashlib.blake2b(z.data, digest_size=16).digest() + repr((z.shape, z.dtype.str)).encode()
        if self._graph is None or digest != self._digest:
            self._graph = knn_graph(z, min(self.neighbors, max(1, z.shape[0] - 1)), method=self.knn_method,
                                    num_threads=self.num_threads)
            self._digest = digest
        if self._delta is None:
            self._delta = probcover_delta(z, num_classes=pool.num_classes, purity=self.purity, graph=self._graph,
                                          seed=rng, num_threads=self.num_threads)
        return select_probcover(z, budget, labeled=pool.labeled, delta=self._delta, graph=self._graph, seed=rng,
                                num_threads=self.num_threads)

    def state(self) -> dict:
        return {} if self._delta is None else {"delta": self._delta}

    def load_state(self, state: dict) -> None:
        """Restores δ: a positive finite number."""
        unknown = set(state) - {"delta"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown, key=str)}")
        delta = state.get("delta")
        if delta is not None and (isinstance(delta, bool) or not isinstance(delta, (int, float))
                                  or not math.isfinite(delta) or delta <= 0):
            raise ValueError(f"'delta' must be a positive finite number, got {delta!r}")
        self._delta = None if delta is None else float(delta)
