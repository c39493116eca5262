"""The Bayesian strategies in the active-learning loop: MC-dropout samples streamed from the
model (alscale.al.train.MCLogits), the strategies' picks equal the library calls on the same
samples, runs are reproducible and resume exactly, and the CLI's --model mlp-dropout
--mc-samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

import alscale
from alscale import strategies
from alscale.cli import main
from alscale.al.datasets import make_synthetic
from alscale.al.loop import ActiveLearningLoop
from alscale.strategies import PoolView
from alscale.al.train import MCLogits, linear_probe, mlp_dropout_trainer

BAYES = ("bald", "batchbald", "powerbald", "power-margin", "power-entropy")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(500, 12, 4, imbalance=4.0, n_test=150, seed=2)


@pytest.fixture(scope="module")
def trained(data):
    t = mlp_dropout_trainer(mc_samples=6, epochs=5, num_threads=1, chunk_rows=128, eval_batch_size=64)
    t.setup(data, seed=0)
    t.fit(np.arange(40), seed=0)
    return t


def test_registered_with_their_needs():
    for name in BAYES:
        assert name in strategies.available()
        assert strategies.get(name).needs == frozenset({"mc_samples"})


def test_mc_logits_stream_dropout_samples(trained, data):
    source = trained.mc_logits("pool", 6, seed=3)
    assert isinstance(source, MCLogits) and source.stochastic and len(source) == 6
    samples = list(source)
    assert len(samples) == 6 and all(s.shape == (len(data), 4) and s.dtype == np.float32 for s in samples)
    assert not np.array_equal(samples[0], samples[1])  # dropout is on: the samples differ
    again = list(source)  # every walk draws the same samples (seeded per sample)
    assert all(np.array_equal(a, b) for a, b in zip(samples, again))
    assert not np.array_equal(list(trained.mc_logits("pool", 1, seed=4))[0], samples[0])
    # dropout off again afterwards: plain predictions are deterministic
    assert np.array_equal(trained.predict("pool")[0], trained.predict("pool")[0])
    assert not any(m.training for m in trained.model.modules())


def test_a_model_without_dropout_gives_one_deterministic_sample(data):
    t = linear_probe(epochs=5)
    t.setup(data, seed=0)
    t.fit(np.arange(40), seed=0)
    source = t.mc_logits("pool", 10, seed=0)
    assert not source.stochastic and len(source) == 1
    assert np.array_equal(list(source)[0], t.predict("pool")[0])
    view = PoolView(labeled=np.zeros(len(data), dtype=bool), mc_samples=source)
    with pytest.raises(ValueError, match="stochastic model"):
        strategies.get("bald").select(view, 5, np.random.default_rng(0))
    # power margin / entropy work on the deterministic logits (T = 1)
    picks = strategies.get("power-margin").select(view, 5, np.random.default_rng(0))
    assert picks.size == 5


@pytest.mark.parametrize("name", BAYES)
def test_strategy_equals_the_library_call(trained, data, name):
    labeled = np.zeros(len(data), dtype=bool)
    labeled[:40] = True
    source = trained.mc_logits("pool", 6, seed=1)
    view = PoolView(labeled=labeled, mc_samples=source)
    got = strategies.get(name).select(view, 15, np.random.default_rng(7))
    samples = np.stack(list(source))
    rng = np.random.default_rng(7)
    expected = {
        "bald": lambda: alscale.select_bald(samples, 15, exclude=labeled),
        "batchbald": lambda: alscale.select_batchbald(samples, 15, exclude=labeled, candidates=150, seed=rng),
        "powerbald": lambda: alscale.select_powerbald(samples, 15, seed=rng, exclude=labeled),
        "power-margin": lambda: alscale.select_power_margin(samples, 15, seed=rng, exclude=labeled),
        "power-entropy": lambda: alscale.select_power_entropy(samples, 15, seed=rng, exclude=labeled),
    }[name]()
    assert got.tolist() == expected.tolist()
    assert not labeled[got].any() and np.unique(got).size == 15


def _strip(records):
    return [{k: ("nan" if isinstance(v, float) and v != v else v) for k, v in r.items()
             if k not in ("train_seconds", "select_seconds")} for r in records]


@pytest.mark.parametrize("name", ["bald", "powerbald", "batchbald"])
def test_loop_runs_reproducibly_and_resumes_exactly(data, tmp_path, name):
    def trainer():
        return mlp_dropout_trainer(mc_samples=4, epochs=3, num_threads=1)

    kw = dict(initial=20, budget=10, rounds=3, seed=5)
    full = ActiveLearningLoop(data, name, trainer(), **kw)
    records = full.run()
    assert [r["n_labeled"] for r in records] == [20, 30, 40, 50]
    again = ActiveLearningLoop(data, name, trainer(), **kw)
    again.run()
    assert np.array_equal(again.labeled_order, full.labeled_order)
    # killed after two rounds, resumed in a fresh loop from the checkpoint: the same run

    class Interrupt(Exception):
        pass

    def kill_after_round_1(record):
        if record["round"] == 1:
            raise Interrupt

    ckpt = tmp_path / "run.json"
    killed = ActiveLearningLoop(data, name, trainer(), checkpoint=ckpt, progress=kill_after_round_1, **kw)
    with pytest.raises(Interrupt):
        killed.run()
    state = json.loads(ckpt.read_text())
    assert state["config"]["trainer"]["mc_samples"] == 4
    resumed = ActiveLearningLoop.resume(ckpt, data, name, trainer(), **kw)
    assert len(resumed.records) == 2
    resumed.run()
    assert np.array_equal(resumed.labeled_order, full.labeled_order)
    assert _strip(resumed.records) == _strip(records)


def test_bald_in_a_loop_without_mc_logits_is_refused(data):
    class Plain:
        def setup(self, dataset, seed):
            pass

        def fit(self, rows, seed):
            return {}

        def predict(self, split, **kw):
            n = 150 if split == "test" else len(data)
            return np.zeros((n, 4), dtype=np.float32), None

    loop = ActiveLearningLoop(data, "bald", Plain(), initial=20, budget=10, rounds=1)
    with pytest.raises(ValueError, match="needs MC samples"):
        loop.run()


def test_cli_runs_the_bayesian_strategies(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["run", "--dataset", "synthetic", "--n", "400", "--dim", "8", "--classes", "3",
                   "--model", "mlp-dropout", "--mc-samples", "3", "--epochs", "2", "--torch-threads", "1",
                   "--strategies", "random,bald,powerbald", "--initial", "20", "--budget", "10", "--rounds", "1",
                   "--seeds", "1", "--out", str(out), "--no-progress"])
    assert status == 0
    text = capsys.readouterr().out
    assert "bald" in text and "powerbald" in text and "mlp-dropout" in text
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["mc_samples"] == 3 and config["model"] == "mlp-dropout"
    # --resume with another --mc-samples is refused, naming the flag
    status = main(["run", "--dataset", "synthetic", "--n", "400", "--dim", "8", "--classes", "3",
                   "--model", "mlp-dropout", "--mc-samples", "4", "--epochs", "2", "--torch-threads", "1",
                   "--strategies", "random,bald,powerbald", "--initial", "20", "--budget", "10", "--rounds", "1",
                   "--seeds", "1", "--out", str(out), "--no-progress", "--resume"])
    assert status == 2 and "--mc-samples 3 (now 4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--mc-samples", "0"])
