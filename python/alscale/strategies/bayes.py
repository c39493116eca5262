"""bald, batchbald, powerbald, power-margin, power-entropy: Bayesian strategies on T MC-dropout
samples of the pool's logits (the loop's ``mc_samples``: a model with dropout, e.g. ``alscale
run --model mlp-dropout --mc-samples 20``), streamed one sample at a time."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bayesian import (bald_scores, batchbald_picks, mc_entropy_scores, mc_margin_scores, select_bald,
                         select_power_entropy, select_power_margin, select_powerbald)
from . import PoolView, Strategy


def picked_mc_scores(score: Any, samples: Any, ids: np.ndarray) -> np.ndarray:
    """``score`` (an MC score function) of the picked rows only, read in ascending row order, from a
    (T, N, C) array (a memmap reads T x B rows) or a re-iterable over T; in the order of ``ids``."""
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    rows = ids[order]
    out = np.empty(ids.size, dtype=np.float64)
    if ids.size:
        if getattr(samples, "ndim", None) == 3:
            picked = [np.asarray(samples[t][rows]) for t in range(samples.shape[0])]
        else:
            picked = [np.asarray(sample.detach().cpu() if hasattr(sample, "detach") else sample)[rows]
                      for sample in samples]
        out[order] = np.asarray(score(picked), dtype=np.float64)
    return out


def _stochastic(pool: PoolView, name: str):
    samples = pool.mc_samples
    if not getattr(samples, "stochastic", True):
        raise ValueError(f"strategy {name!r} needs a stochastic model (MC dropout) to disagree with itself: its "
                         "BALD scores would all be 0; use a model with dropout (alscale run --model mlp-dropout)")
    return samples


class Bald(Strategy):
    """BALD: the rows with the largest mutual information between label and model (MC dropout)."""

    name = "bald"
    needs = frozenset({"mc_samples"})
    score_column = "bald"

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        """Each pick's BALD (nats)."""
        return picked_mc_scores(bald_scores, pool.mc_samples, ids)

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return select_bald(_stochastic(pool, self.name), budget, exclude=pool.labeled, num_threads=self.num_threads)


class BatchBald(Strategy):
    """BatchBALD: greedy joint mutual information over the ``candidates`` rows with the largest BALD."""

    name = "batchbald"
    needs = frozenset({"mc_samples"})
    score_column = "gain"

    def __init__(self, candidates_per_pick: int = 10, num_samples: int = 1000, num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self.candidates_per_pick = candidates_per_pick
        self.num_samples = num_samples
        self._gains: tuple | None = None  # (picks, gains) of the last select

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        """Each pick's gain in the batch's joint mutual information when it was picked (nats; the
        first pick's is its BALD); from this instance's last :meth:`select` when ``ids`` are its
        picks, else each row's BALD (the most a gain can be)."""
        if self._gains is not None and np.array_equal(self._gains[0], ids):
            return self._gains[1].copy()
        return picked_mc_scores(bald_scores, pool.mc_samples, ids)

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        samples = list(_stochastic(pool, self.name))  # read twice (BALD, then the candidates): T x N x C here
        if pool.progress is not None:
            n = int(np.size(pool.labeled) - np.count_nonzero(pool.labeled))
            pool.progress(f"batchbald: {budget:,} greedy picks among the {min(n, self.candidates_per_pick * budget):,} "
                          f"unlabeled rows with the largest BALD (candidates_per_pick = {self.candidates_per_pick}), "
                          f"joint entropies over up to {self.num_samples:,} label configurations")
        picks, gains, _ = batchbald_picks(samples, budget, exclude=pool.labeled, num_samples=self.num_samples,
                                          candidates=max(1, self.candidates_per_pick * budget), seed=rng,
                                          num_threads=self.num_threads)
        self._gains = (picks, gains)
        return picks


class _Power(Strategy):
    """Stochastic batch acquisition (Kirsch et al. 2023): rows sampled without replacement with
    probability ∝ score^β (β = 1), the score given by ``select`` (a function of alscale.bayesian)."""

    needs = frozenset({"mc_samples"})
    beta = 1.0
    select_rows = staticmethod(select_powerbald)
    score_rows = staticmethod(bald_scores)  # the score reported for each pick (the CSV's column)
    needs_disagreement = False  # BALD is 0 for a deterministic model: refuse it then

    def scores(self, pool: PoolView, ids: np.ndarray) -> np.ndarray:
        return picked_mc_scores(self.score_rows, pool.mc_samples, ids)

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        samples = _stochastic(pool, self.name) if self.needs_disagreement else pool.mc_samples
        return self.select_rows(samples, budget, beta=self.beta, seed=rng, exclude=pool.labeled,
                                num_threads=self.num_threads)


class PowerBald(_Power):
    """PowerBALD: rows sampled with probability ∝ BALD^β."""

    name = "powerbald"
    score_column = "bald"
    needs_disagreement = True


class PowerMargin(_Power):
    """Power margin: rows sampled with probability ∝ (1 - MC margin)^β."""

    name = "power-margin"
    score_column = "margin"  # the MC margin (the draw is ∝ (1 - margin)^β)
    select_rows = staticmethod(select_power_margin)
    score_rows = staticmethod(mc_margin_scores)


class PowerEntropy(_Power):
    """Power entropy: rows sampled with probability ∝ (entropy of the MC-mean softmax)^β."""

    name = "power-entropy"
    score_column = "entropy"
    select_rows = staticmethod(select_power_entropy)
    score_rows = staticmethod(mc_entropy_scores)
