"""probcover: greedy maximum coverage of δ-balls (Yehuda, Dekel, Hacohen & Weinshall, "Active
Learning Through a Covering Lens", NeurIPS 2022)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._backend.arrays import fingerprint
from ..coldstart import probcover_delta, select_probcover
from ..knn import knn_graph
from . import PoolView, Strategy


class ProbCover(Strategy):
    """ProbCover on the pool's embeddings (:func:`alscale.select_probcover`): greedy coverage of
    δ-balls. δ is ``delta`` when given; otherwise it is chosen once, at the first selection, by
    the purity rule (α = ``purity``, k-means into ``num_classes`` clusters, default the pool's
    number of classes, seeded from the strategy's randomness), as the paper fixes δ per data set;
    it is the strategy's state (the loop's checkpoints, a project's ``probcover.npz``). The
    δ-balls come from the ``neighbors``-NN graph (``knn_method``: "exact", "faiss", or "auto":
    every pair below 20,000 rows, exact balls, and faiss's graph above). The graph is kept while
    the embeddings stay the same (a linear probe's inputs), so later rounds only run the greedy
    coverage."""

    name = "probcover"
    needs = frozenset({"embeddings"})
    state_options = ("neighbors", "purity", "knn_method", "delta", "num_classes")
    #: "auto" uses every pair (exact δ-balls) up to this many rows.
    all_pairs_rows = 20_000

    def __init__(self, neighbors: int = 20, purity: float = 0.95, knn_method: str = "auto",
                 delta: float | None = None, num_classes: int | None = None, num_threads: int = 0) -> None:
        super().__init__(num_threads)
        if knn_method not in ("auto", "exact", "faiss"):
            raise ValueError(f"knn_method must be 'auto', 'exact' or 'faiss', got {knn_method!r}")
        self.neighbors = neighbors
        self.purity = purity
        self.knn_method = knn_method
        self.delta = delta
        self.num_classes = num_classes
        self._delta: float | None = None
        self._graph: tuple | None = None
        self._digest = b""

    def options(self) -> dict:
        out = {"neighbors": self.neighbors, "purity": self.purity, "knn_method": self.knn_method}
        out.update({k: v for k, v in (("delta", self.delta), ("num_classes", self.num_classes)) if v is not None})
        return out

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        rng = np.random.default_rng(rng)  # read twice (delta, then the selection)
        z = pool.embeddings
        z = np.ascontiguousarray(z.detach().cpu().float() if hasattr(z, "detach") else z)
        delta = self.delta if self.delta is not None else self._delta
        classes = self.num_classes or pool.num_classes
        if delta is None and classes is None:
            raise ValueError("probcover needs delta= or the number of classes (num_classes=, the project's "
                             "classes, or PoolView.num_classes) for its purity rule")
        all_pairs = self.knn_method == "exact" or (self.knn_method == "auto" and z.shape[0] <= self.all_pairs_rows)
        graph = None
        if not all_pairs:
            digest = fingerprint(z, z.shape, z.dtype.str)
            if self._graph is None or digest != self._digest:
                self._graph = knn_graph(z, min(self.neighbors, max(1, z.shape[0] - 1)), knn_method="faiss",
                                        num_threads=self.num_threads)
                self._digest = digest
            graph = self._graph
        if delta is None:
            self._delta = delta = probcover_delta(z, num_classes=classes, purity=self.purity, graph=graph, seed=rng,
                                                  num_threads=self.num_threads)
        return select_probcover(z, budget, labeled=pool.labeled, delta=delta, graph=graph, seed=rng,
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
