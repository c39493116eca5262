"""bald, batchbald, powerbald, power-margin, power-entropy: Bayesian strategies on T MC-dropout
samples of the pool's logits (the loop's ``mc_samples``: a model with dropout, e.g. ``alscale
run --model mlp-dropout --mc-samples 20``), streamed one sample at a time."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bayesian import (select_bald, select_batchbald, select_power_entropy, select_power_margin,
                         select_powerbald)
from . import PoolView, Strategy


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

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        return select_bald(_stochastic(pool, self.name), budget, exclude=pool.labeled, num_threads=self.num_threads)


class BatchBald(Strategy):
    """BatchBALD: greedy joint mutual information over the ``candidates`` rows with the largest BALD."""

    name = "batchbald"
    needs = frozenset({"mc_samples"})

    def __init__(self, candidates_per_pick: int = 10, num_samples: int = 1000, num_threads: int = 0) -> None:
        super().__init__(num_threads)
        self.candidates_per_pick = candidates_per_pick
        self.num_samples = num_samples

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        samples = list(_stochastic(pool, self.name))  # read twice (BALD, then the candidates): T x N x C here
        return select_batchbald(samples, budget, exclude=pool.labeled, num_samples=self.num_samples,
                                candidates=max(1, self.candidates_per_pick * budget), seed=rng,
                                num_threads=self.num_threads)


class _Power(Strategy):
    """Stochastic batch acquisition (Kirsch et al. 2023): rows sampled without replacement with
    probability ∝ score^β (β = 1), the score given by ``select`` (a function of alscale.bayesian)."""

    needs = frozenset({"mc_samples"})
    beta = 1.0
    select_rows = staticmethod(select_powerbald)
    needs_disagreement = False  # BALD is 0 for a deterministic model: refuse it then

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        samples = _stochastic(pool, self.name) if self.needs_disagreement else pool.mc_samples
        return self.select_rows(samples, budget, beta=self.beta, seed=rng, exclude=pool.labeled,
                                num_threads=self.num_threads)


class PowerBald(_Power):
    """PowerBALD: rows sampled with probability ∝ BALD^β."""

    name = "powerbald"
    needs_disagreement = True


class PowerMargin(_Power):
    """Power margin: rows sampled with probability ∝ (1 - MC margin)^β."""

    name = "power-margin"
    select_rows = staticmethod(select_power_margin)


class PowerEntropy(_Power):
    """Power entropy: rows sampled with probability ∝ (entropy of the MC-mean softmax)^β."""

    name = "power-entropy"
    select_rows = staticmethod(select_power_entropy)
