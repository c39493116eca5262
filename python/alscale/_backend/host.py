"""The host backend: one (N, C) matrix in this process's memory (numpy, or a CPU torch tensor)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .arrays import Exclusion, Logits, as_logits
from .rules import Head, Rule


class HostPool:
    """Logits in host memory with their exclusion, checked once; each method is one kernel call
    (results in the caller's kind: numpy, or a torch tensor for torch input)."""

    def __init__(self, logits: Any, exclude: Any, threads: int):
        self.x: Logits = as_logits(logits)
        self.exclude = Exclusion(exclude, self.x.rows)
        self.threads = threads

    @property
    def rows(self) -> int:
        return self.x.rows

    @property
    def classes(self) -> int:
        return self.x.classes

    def scores(self, rule: Rule):
        return self.x.wrap(rule.true_scores(rule.host_scores(self.x, self.threads), self.classes))

    def top(self, rule: Rule, k: int):
        scores = rule.host_scores(self.x, self.threads)
        mask = self.exclude.mask(0, self.rows)
        return self.x.wrap(_core.select_topk(scores, min(k, self.rows), mask, rule.largest, self.threads))

    def balanced(self, k: int, head: Head):
        mask = self.exclude.mask(0, self.rows)
        inv = head.inv(self.classes)
        return self.x.wrap(_core.select_balanced(self.x.array, self.x.bf16, min(k, self.rows), mask, inv, self.threads))

    def cluster_margin(self, rule: Rule, labels: np.ndarray, k: int, km: int, seed: int):
        if labels.shape[0] != self.rows:
            raise ValueError(f"clusters must have one label per logits row ({self.rows}), got shape {labels.shape}")
        scores = rule.host_scores(self.x, self.threads)
        rows = _core.select_topk(scores, min(km, self.rows), self.exclude.mask(0, self.rows), False, self.threads)
        return self.x.wrap(_core.cluster_round_robin(rows, labels[rows], k, seed))
