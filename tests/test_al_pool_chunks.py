"""The loop hands the strategies the pool's logits as a chunk source (TorchTrainer.logits), never
as one N x C host array (BADGE alone keeps its in-memory logits), and the picks are exactly those
of the in-memory pool view."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alscale.al.datasets import Dataset, make_synthetic
from alscale.al.loop import ActiveLearningLoop
from alscale.al.train import ModelLogits, TorchTrainer, cnn_trainer, linear_probe

STRATEGIES = ("margin", "confidence", "entropy", "mase", "base", "cluster-margin", "badge", "coreset", "random")


def _strip(records):
    def same(v):
        return "nan" if isinstance(v, float) and v != v else v
    return [{k: same(v) for k, v in r.items() if not k.endswith("_seconds")} for r in records]


class InMemory:
    """A trainer seen through the old interface (setup / fit / predict / head_weight, no
    ``logits``): the loop then computes the pool's logits as one array."""

    def __init__(self, trainer):
        self.trainer = trainer

    def __getattr__(self, name):
        if name == "logits":
            raise AttributeError(name)
        return getattr(self.trainer, name)


class NoWholeLogits:
    """A trainer that fails if anyone asks it for a split's whole N x C logits."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.sources = []

    def predict(self, split="pool", *, embeddings=False, rows=None, logits=True):
        assert not logits, f"the whole {split} logits were asked for"
        return self.trainer.predict(split, embeddings=embeddings, rows=rows, logits=False)

    def logits(self, split="pool", *, rows=None):
        source = self.trainer.logits(split, rows=rows)
        self.sources.append(source)
        return source

    def __getattr__(self, name):
        return getattr(self.trainer, name)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(300, 8, 4, imbalance=4.0, n_test=80, seed=3)


def _probe():
    # small eval batches and chunks: the pool's 300 rows come in 5 chunks of 64 (2 batches each)
    return linear_probe(epochs=30, eval_batch_size=32, chunk_rows=64)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_chunked_and_in_memory_pool_views_pick_the_same_rows(data, strategy):
    kw = dict(initial=12, budget=9, rounds=2, seed=5)
    chunked = ActiveLearningLoop(data, strategy, _probe(), **kw)
    whole = ActiveLearningLoop(data, strategy, InMemory(_probe()), **kw)
    assert _strip(chunked.run()) == _strip(whole.run())
    assert np.array_equal(chunked.labeled_order, whole.labeled_order)


def test_chunked_view_matches_in_memory_with_a_cnn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = (rng.integers(0, 60, (90, 28, 28)) + 120 * (y[:, None, None] == np.arange(28)[None, :, None] % 3))
    images = Dataset("tiny", x.astype(np.uint8), y, x[:30].astype(np.uint8), y[:30], 3)
    kw = dict(initial=10, budget=6, rounds=1, seed=2)

    def make():
        return cnn_trainer(epochs=1, batch_size=16, eval_batch_size=16, chunk_rows=32)

    for strategy in ("base", "cluster-margin"):
        chunked = ActiveLearningLoop(images, strategy, make(), **kw)
        whole = ActiveLearningLoop(images, strategy, InMemory(make()), **kw)
        assert _strip(chunked.run()) == _strip(whole.run())
        assert np.array_equal(chunked.labeled_order, whole.labeled_order)


@pytest.mark.parametrize("strategy", ["base", "mase", "margin", "cluster-margin", "coreset"])
def test_loop_never_asks_for_the_whole_logits(data, strategy):
    trainer = NoWholeLogits(_probe())
    loop = ActiveLearningLoop(data, strategy, trainer, initial=12, budget=9, rounds=2, seed=1)
    loop.run()
    pool_sources = [s for s in trainer.sources if len(s) == len(data)]
    assert all(isinstance(s, ModelLogits) for s in trainer.sources)
    # the test split every round; the pool every selection round, unless the strategy reads no logits
    assert len(trainer.sources) - len(pool_sources) == 3
    assert len(pool_sources) == (0 if strategy == "coreset" else 2)


def test_badge_alone_gets_in_memory_logits(data):
    seen = {}
    loop = ActiveLearningLoop(data, "badge", _probe(), initial=12, budget=9, rounds=1, seed=1)
    select = loop.strategy.select

    def spy(pool, budget, rng):
        seen["logits"] = pool.logits
        return select(pool, budget, rng)

    loop.strategy.select = spy
    loop.run()
    assert isinstance(seen["logits"], np.ndarray) and seen["logits"].shape == (len(data), 4)
    loop = ActiveLearningLoop(data, "base", _probe(), initial=12, budget=9, rounds=1, seed=1)
    select_base = loop.strategy.select

    def spy_base(pool, budget, rng):
        seen["base"] = pool.logits
        return select_base(pool, budget, rng)

    loop.strategy.select = spy_base
    loop.run()
    assert isinstance(seen["base"], ModelLogits)


def test_model_logits_are_predict_chunk_by_chunk(data):
    t = linear_probe(epochs=5, eval_batch_size=32, chunk_rows=50)
    t.setup(data, seed=0)
    t.fit(np.arange(40), seed=0)
    source = t.logits("pool")
    assert source.chunk_rows == 64  # rounded up to whole eval batches
    chunks = list(source)
    assert [c.shape for c in chunks] == [(64, 4)] * 4 + [(44, 4)]
    full, _ = t.predict("pool")
    assert np.array_equal(np.concatenate(chunks), full)  # bit for bit
    assert np.array_equal(np.concatenate(list(source)), full)  # re-iterable
    rows = np.arange(299, 100, -3)
    assert np.array_equal(np.concatenate(list(t.logits("pool", rows=rows))), t.predict("pool", rows=rows)[0])
    assert np.array_equal(np.concatenate(list(t.logits("test"))), t.predict("test")[0])
    with pytest.raises(ValueError, match="split must be 'pool' or 'test'"):
        t.logits("train")
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        TorchTrainer(lambda c, d: None, chunk_rows=0)


_TRAINED = {}


def _trained(data, eval_batch_size, chunk_rows):
    """A probe fitted once on 40 rows, seen with other batch and chunk sizes."""
    if "probe" not in _TRAINED:
        t = linear_probe(epochs=20)
        t.setup(data, seed=0)
        t.fit(np.arange(40), seed=0)
        _TRAINED["probe"] = t
    t = _TRAINED["probe"]
    t.eval_batch_size, t.chunk_rows = eval_batch_size, chunk_rows
    return t


@settings(max_examples=25)
@given(batch=st.integers(1, 70), chunk=st.integers(1, 400), budget=st.integers(0, 320), seed=st.integers(0, 2**32 - 1),
       sub=st.booleans())
def test_model_logits_select_as_the_array_does(data, batch, chunk, budget, seed, sub):
    """Any batch and chunk size, any rows (with repeats: tied logits), any exclusions: the
    chunk source's logits are the array's bit for bit and every selection over it picks the
    same rows in the same order."""
    import alscale

    t = _trained(data, batch, chunk)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data), int(rng.integers(1, 2 * len(data))), replace=True) if sub else None
    source = t.logits("pool", rows=rows)
    whole = t.predict("pool", rows=rows)[0]
    assert np.array_equal(np.concatenate(list(source)), whole)
    exclude = rng.random(whole.shape[0]) < 0.3
    w = t.head_weight()
    for select, kw in ((alscale.select_balanced, {"weight": w}), (alscale.select_boundary, {"weight": w}),
                       (alscale.select_margin, {}), (alscale.select_entropy, {})):
        assert np.array_equal(select(source, budget, exclude=exclude, **kw), select(whole, budget, exclude=exclude, **kw))


def test_small_pools_are_walked_once_large_ones_recomputed(data, monkeypatch):
    from alscale.al import train

    t = linear_probe(epochs=5, eval_batch_size=32, chunk_rows=64)
    t.setup(data, seed=0)
    t.fit(np.arange(40), seed=0)
    calls = []
    t.model.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    full = t.predict("pool")[0]
    calls.clear()
    source = t.logits("pool")  # 300 x 4 float32: within CHUNK_BYTES, kept after the first walk
    for _ in range(3):
        assert np.array_equal(np.concatenate(list(source)), full)
    assert sum(calls) == len(data)
    monkeypatch.setattr(train, "CHUNK_BYTES", 1024)  # now "large": every walk runs the model again
    calls.clear()
    source = t.logits("pool")
    for _ in range(3):
        assert np.array_equal(np.concatenate(list(source)), full)
    assert sum(calls) == 3 * len(data)
    # a walk abandoned half way keeps nothing
    calls.clear()
    monkeypatch.setattr(train, "CHUNK_BYTES", 64 << 20)
    source = t.logits("pool")
    next(iter(source))
    assert np.array_equal(np.concatenate(list(source)), full)
