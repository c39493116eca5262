"""The strategy registry: every registered strategy against its numpy reference on small pools."""

from __future__ import annotations

import numpy as np
import pytest

import alscale
import reference as ref
from alscale import strategies
from alscale.strategies import PoolView, Strategy
from hypotheses import assert_same_indices

ALL = ("random", "balanced-random", "margin", "confidence", "entropy", "mase", "base", "coreset", "badge",
       "partitioned-coreset", "partitioned-badge", "cluster-margin")


def _pool(seed: int, n: int = 300, c: int = 6, d: int = 12):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    z = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((c, d))
    logits = (z @ w.T).astype(np.float32) + rng.standard_normal((n, c)).astype(np.float32)
    labeled = rng.random(n) < 0.1
    return PoolView(labeled=labeled, logits=logits, embeddings=z, weight=w, labels=labels, num_classes=c)


def _expected(name: str, pool: PoolView, budget: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = pool.labeled
    if name == "random":
        return alscale.select_random(pool.size, budget, exclude=lab, seed=np.random.default_rng(seed))
    if name == "balanced-random":
        return ref.balanced_random(pool.labels, lab, budget, rng)
    if name in ("margin", "confidence", "entropy"):
        return getattr(ref, f"select_{name}")(pool.logits, budget, exclude=lab)
    if name == "mase":
        return ref.select_boundary(pool.logits, budget, pool.weight, lab)
    if name == "base":
        return ref.select_balanced(pool.logits, budget, pool.weight, lab)
    if name == "coreset":
        return ref.select_coreset(pool.embeddings, lab, budget)
    if name == "badge":
        return ref.select_badge(pool.logits, pool.embeddings, budget, rng.random(budget), lab)
    if name == "cluster-margin":
        # graph HAC (checked against its reference in test_hac.py) cut at `budget` clusters, then
        # the round-robin reference on alscale's own margin scores, seeded as the strategy is
        labels = alscale.hac_average(pool.embeddings, n_clusters=budget, neighbors=10).labels
        km = min(int((~lab).sum()), 10 * budget)
        return ref.select_cluster_margin(alscale.margin_scores(pool.logits), labels, budget,
                                         int(rng.integers(0, 2**63)), candidates=km, exclude=lab)
    # P = 10 parts, clipped to the budget (no part with nothing to pick).
    parts = ref.partitions(np.flatnonzero(~lab), budget, min(10, budget), rng)
    out = []
    for rows, q in parts:
        outside = np.ones(pool.size, dtype=bool)
        outside[rows] = False
        if name == "partitioned-coreset":
            out.append(ref.select_coreset(pool.embeddings, lab, q, outside))
        else:
            out.append(ref.select_badge(pool.logits, pool.embeddings, q, rng.random(q), outside))
    return np.concatenate(out)


def test_registry_lists_every_strategy():
    assert set(ALL) <= set(strategies.available())
    for name in ALL:
        s = strategies.get(name)
        assert s.name == name and s.needs <= strategies.NEEDS


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strategy_matches_reference(name, seed):
    pool = _pool(seed)
    budget = [1, 37, 64][seed]
    needs = strategies.get(name).needs
    # Hand the strategy only what it declares: anything else it touched would fail.
    view = PoolView(labeled=pool.labeled, num_classes=pool.num_classes,
                    **{k: getattr(pool, k) for k in ("logits", "embeddings", "weight", "labels") if k in needs})
    got = strategies.get(name).select(view, budget, np.random.default_rng(seed))
    assert got.dtype == np.int64 and got.size == budget and np.unique(got).size == budget
    assert not pool.labeled[got].any()
    assert_same_indices(got, _expected(name, pool, budget, seed), name)


def test_balanced_random_fills_classes_equally():
    labels = np.repeat(np.arange(4), [100, 50, 8, 30])
    labeled = np.zeros(labels.size, dtype=bool)
    got = strategies.get("balanced-random").select(PoolView(labeled, labels=labels), 40, np.random.default_rng(0))
    counts = np.bincount(labels[got], minlength=4)
    assert counts.tolist() == [11, 11, 8, 10]  # class 2 runs out at 8; the rest share the remainder


def test_unknown_strategy_and_bad_declarations():
    with pytest.raises(ValueError, match="unknown strategy 'nope'; available: .*base"):
        strategies.get("nope")
    with pytest.raises(TypeError, match="needs unknown inputs"):
        type("Bad", (Strategy,), {"name": "bad-needs", "needs": frozenset({"gradients"})})


def test_adding_a_strategy_is_one_class():
    class Last(Strategy):
        name = "test-last-rows"
        needs = frozenset()

        def select(self, pool, budget, rng):
            return np.flatnonzero(~pool.labeled)[::-1][:budget]

    try:
        assert strategies.get("test-last-rows").select(PoolView(np.zeros(5, bool)), 2, None).tolist() == [4, 3]
    finally:
        strategies._REGISTRY.pop("test-last-rows")
