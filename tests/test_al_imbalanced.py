"""Class-imbalanced pools (issue 22, item 4): the long tail the BASE code makes of CIFAR-10
(exact class sizes), the class-weighted cross-entropy (against a hand computation of its
objective), and both kept by checkpoints and ``alscale run --resume``."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from alscale.al.datasets import Dataset, long_tail_sizes, make_synthetic
from alscale.al.loop import ActiveLearningLoop
from alscale.al.train import TorchTrainer, class_weights, linear_probe, sigmoid_probe
from alscale.cli import main

SMALL = ["run", "--dataset", "synthetic", "--n", "600", "--dim", "8", "--classes", "4", "--imbalance", "1",
         "--initial", "20", "--budget", "10", "--rounds", "2", "--seeds", "1", "--epochs", "20", "--no-progress"]


# ---------------------------------------------------------------------------------- the long tail
def test_long_tail_sizes_are_the_base_codes():
    """int(n_max * ratio ** (c / (C - 1))) for each class c, as IMBALANCECIFAR10 of the BASE code."""
    assert long_tail_sizes([6000] * 10, 0.01).tolist() == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert long_tail_sizes([6000] * 10, 0.1).tolist() == [6000, 4645, 3596, 2784, 2156, 1669, 1292, 1000, 774, 600]
    assert long_tail_sizes([5000] * 10, 0.01).tolist() == [int(5000 * 0.01 ** (c / 9)) for c in range(10)]
    assert long_tail_sizes([5000] * 10, 0.01).sum() == 12406  # CIFAR-10-LT 0.01's well-known size
    assert long_tail_sizes([7, 7, 7], 1.0).tolist() == [7, 7, 7]
    # n_max is the largest class; no class keeps more rows than it has
    assert long_tail_sizes([10, 50, 5], 0.5).tolist() == [10, 35, 5]
    assert long_tail_sizes([9], 0.5).tolist() == [9]


@pytest.mark.parametrize("ratio,error", [(0, ValueError), (0.0, ValueError), (1.5, ValueError), (-0.1, ValueError),
                                         (math.nan, ValueError), (math.inf, ValueError), ("0.1", TypeError),
                                         (True, TypeError), (None, TypeError)])
def test_long_tail_ratio_is_checked(ratio, error):
    with pytest.raises(error, match="long-tail ratio"):
        long_tail_sizes([10, 10], ratio)
    with pytest.raises(error, match="long-tail ratio"):
        make_synthetic(100, 2, 2, imbalance=1, seed=0).long_tailed(ratio)


def test_long_tailed_dataset_keeps_exact_counts_of_its_own_rows():
    data = make_synthetic(1000, 4, 5, imbalance=1, seed=0)
    lt = data.long_tailed(0.01, seed=3)
    assert np.bincount(lt.y, minlength=5).tolist() == [200, 63, 20, 6, 2]
    assert lt.name == "synthetic long-tailed 0.01" and lt.num_classes == 5
    # every kept row is a row of the pool with its own label, none twice, in pool order
    index = {row.tobytes(): i for i, row in enumerate(data.x)}
    rows = np.array([index[row.tobytes()] for row in lt.x])
    assert (np.diff(rows) > 0).all() and (data.y[rows] == lt.y).all()
    # the test split is the pool's, untouched (balanced stays balanced)
    assert lt.x_test is data.x_test and lt.y_test is data.y_test
    # seeded: the same seed the same rows, another seed other rows of the same counts
    assert (data.long_tailed(0.01, seed=3).x == lt.x).all()
    other = data.long_tailed(0.01, seed=4)
    assert np.bincount(other.y).tolist() == [200, 63, 20, 6, 2] and not np.array_equal(other.x, lt.x)


def test_long_tail_refuses_multilabel_data():
    y = np.eye(3, dtype=np.uint8)[np.arange(30) % 3]
    data = Dataset("ml", np.zeros((30, 2), np.float32), y, np.zeros((3, 2), np.float32), y[:3], 3)
    with pytest.raises(ValueError, match="multi-label"):
        data.long_tailed(0.1)


# ---------------------------------------------------------------------------------- the weighted loss
def test_class_weights_by_hand():
    assert class_weights(np.array([0, 0, 0, 1]), 3).tolist() == [4 / 6, 2.0, 0.0]
    assert class_weights(np.array([2, 1, 0, 2, 1, 0]), 3).tolist() == [1.0, 1.0, 1.0]
    w = class_weights(np.array([0] * 90 + [1] * 9 + [2]), 3)
    assert np.allclose(w * np.array([90, 9, 1]), 100 / 3)  # each class weighs n / K in all


def _imbalanced(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((3, 6)) * 1.5
    y = np.repeat(np.arange(3), [60, 15, 5])
    x = (means[y] + rng.standard_normal((y.size, 6))).astype(np.float32)
    return Dataset("imb", x, y, x[:9], y[:9], 3)


def _objective(probe, data, rows, *, weighted: bool) -> torch.Tensor:
    """The probe's objective written out by hand: the mean over the labeled classes of each
    class's mean cross-entropy (weighted) or the mean over the rows (plain), plus the L2
    penalty (‖W‖² + ‖b‖²) / (2 C n)."""
    x = probe.preprocess(data.x[rows])
    y = data.y[rows]
    z = probe.model(x)
    ce = torch.logsumexp(z, 1) - z[torch.arange(len(rows)), torch.from_numpy(y)]
    if weighted:
        loss = sum(ce[torch.from_numpy(y == c)].mean() for c in np.unique(y)) / len(np.unique(y))
    else:
        loss = ce.mean()
    return loss + sum(p.square().sum() for p in probe.model.parameters()) / (2 * probe.C * len(rows))


def test_class_weighted_probe_minimizes_the_hand_objective():
    """The fitted probe is the minimum of the hand-written class-weighted objective (its gradient
    vanishes there), not of the plain one, and the other way round without class_weighted."""
    data = _imbalanced()
    rows = np.arange(80)
    grads = {}
    for weighted in (False, True):
        probe = linear_probe(class_weighted=weighted, tolerance=1e-7, epochs=500)
        probe.setup(data, seed=0)
        probe.fit(rows, seed=0)
        for hand in (False, True):
            probe.model.zero_grad()
            _objective(probe, data, rows, weighted=hand).backward()
            grads[weighted, hand] = max(float(p.grad.abs().max()) for p in probe.model.parameters())
    assert grads[True, True] < 1e-4 and grads[False, False] < 1e-4
    assert grads[True, False] > 1e-2 and grads[False, True] > 1e-2
    assert linear_probe(class_weighted=True).describe()["class_weighted"] is True
    assert "class_weighted" not in linear_probe().describe()  # earlier checkpoints' configs still match


def test_class_weighted_adam_trainer_is_plain_on_balanced_labels():
    """The Adam trainer's cross-entropy takes the weights: on balanced labels (every weight 1) it
    trains exactly as the plain one, on imbalanced labels otherwise."""
    data = _imbalanced()

    def weights_after(rows, weighted):
        t = TorchTrainer(lambda c, d: torch.nn.Linear(d, c), epochs=3, batch_size=16, class_weighted=weighted)
        t.setup(data, seed=0)
        t.fit(rows, seed=1)
        return t.head_weight()

    balanced = np.r_[0:5, 60:65, 75:80]
    assert np.array_equal(weights_after(balanced, True), weights_after(balanced, False))
    assert not np.allclose(weights_after(np.arange(80), True), weights_after(np.arange(80), False))
    assert TorchTrainer(lambda c, d: None, class_weighted=True).describe()["class_weighted"] is True


@pytest.mark.parametrize("value", [1, "yes", None])
def test_class_weighted_must_be_a_bool(value):
    with pytest.raises(TypeError, match="class_weighted must be True or False"):
        linear_probe(class_weighted=value)


def test_sigmoid_probe_refuses_class_weighted():
    with pytest.raises(ValueError, match="class_weighted is for single-label"):
        sigmoid_probe(class_weighted=True)


# ---------------------------------------------------------------------------------- the loop and resume
class _Killed(Exception):
    pass


def _strip(records):
    """Records without their timings, NaN (the probe's val_accuracy) as "nan"."""
    def same(v):
        return "nan" if isinstance(v, float) and v != v else v
    return [{k: same(v) for k, v in r.items() if not k.endswith("_seconds")} for r in records]


def test_loop_checkpoint_keeps_the_settings(tmp_path):
    """A long-tailed, class-weighted run killed after round 1 resumes to the uninterrupted
    result; its checkpoint names both settings and refuses a resume without them."""
    data = make_synthetic(600, 8, 4, imbalance=1, seed=0).long_tailed(0.1)
    ckpt = tmp_path / "c.json"
    kw = dict(initial=20, budget=10, rounds=3, seed=1)
    whole = ActiveLearningLoop(data, "base", linear_probe(class_weighted=True), **kw).run()
    plain = ActiveLearningLoop(data, "base", linear_probe(), **kw).run()
    assert _strip(plain) != _strip(whole)  # the weighting changes the run

    def kill_after_round_1(record):
        if record["round"] == 1:
            raise _Killed

    loop = ActiveLearningLoop(data, "base", linear_probe(class_weighted=True), checkpoint=ckpt,
                              progress=kill_after_round_1, **kw)
    with pytest.raises(_Killed):
        loop.run()
    saved = json.loads(ckpt.read_text())["config"]
    assert saved["trainer"]["class_weighted"] is True and saved["dataset"] == "synthetic long-tailed 0.1"
    resumed = ActiveLearningLoop.resume(ckpt, data, "base", linear_probe(class_weighted=True), **kw)
    assert len(resumed.records) == 2
    assert _strip(resumed.run()) == _strip(whole)  # the uninterrupted run's records
    # the initial labels are drawn at random from the long-tailed pool
    assert whole[0]["class_counts"] == np.bincount(data.y[resumed.labeled_order[:20]], minlength=4).tolist()
    with pytest.raises(ValueError, match=r"trainer\.class_weighted: true in the checkpoint, not set now"):
        ActiveLearningLoop.resume(ckpt, data, "base", linear_probe(), **kw)
    other = make_synthetic(600, 8, 4, imbalance=1, seed=0).long_tailed(0.5)
    with pytest.raises(ValueError, match="dataset: 'synthetic long-tailed 0.1' in the checkpoint, "
                                         "'synthetic long-tailed 0.5' now"):
        ActiveLearningLoop.resume(ckpt, other, "base", linear_probe(class_weighted=True), **kw)


def test_run_long_tail_and_class_weighted(tmp_path, capsys):
    out = tmp_path / "res"
    args = SMALL + ["--strategies", "random,base", "--out", str(out), "--long-tail", "0.1", "--class-weighted"]
    assert main(args) == 0
    saved = json.loads((out / "results.json").read_text())
    config = saved["config"]
    assert config["long_tail"] == 0.1 and config["class_weighted"] is True
    assert config["dataset"] == "synthetic long-tailed 0.1" and config["pool"] == 150 + 69 + 32 + 15
    assert json.loads((out / "checkpoints" / "run.json").read_text())["config"] == config
    ckpt = json.loads((out / "checkpoints" / "base-seed0.json").read_text())["config"]
    assert ckpt["trainer"]["class_weighted"] is True
    # the records' labels are of the long-tailed pool: the rarest class cannot have more than 15
    assert all(r["class_counts"][3] <= 15 for r in saved["records"])
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["records"] == saved["records"]
    capsys.readouterr()
    assert main([a for a in args if a != "--class-weighted"] + ["--resume"]) == 2
    assert "--class-weighted True (now unset)" in capsys.readouterr().err
    assert main(args[:-2] + ["0.2", "--class-weighted", "--resume"]) == 2
    assert "--long-tail 0.1 (now 0.2)" in capsys.readouterr().err


def test_run_without_the_options_records_none_of_them(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(SMALL + ["--strategies", "random", "--out", str(out)]) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert "long_tail" not in config and "class_weighted" not in config  # earlier runs still resume


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "nan", "x"])
def test_run_long_tail_values(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(SMALL + ["--out", str(tmp_path), "--long-tail", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--long-tail" in err and ("must be in (0, 1]" in err or "must be a number" in err)


@pytest.mark.parametrize("flag", [["--long-tail", "0.1"], ["--class-weighted"]])
def test_run_imbalance_options_refuse_multilabel_data(tmp_path, capsys, flag):
    assert main(["run", "--dataset", "fashion-mnist-mosaic", "--out", str(tmp_path), "--no-progress"] + flag) == 2
    assert "is for single-label data" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- the benchmark script
def _fake_fashion(folder, n: int = 400, n_test: int = 100) -> None:
    """A tiny Fashion-MNIST folder: 10 balanced classes, each a bright block in its own place."""
    import gzip
    import struct

    from alscale.al.datasets import _FASHION_FILES

    rng = np.random.default_rng(0)

    def images(y):
        x = rng.integers(0, 60, (y.size, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c : 2 * c + 6, 4:20] += 180
        return x

    y, y_test = np.arange(n) % 10, np.arange(n_test) % 10
    for key, a in {"x": images(y), "y": y, "x_test": images(y_test), "y_test": y_test}.items():
        header = struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape)
        with gzip.open(folder / _FASHION_FILES[key], "wb") as f:
            f.write(header + a.astype(np.uint8).tobytes())


def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "imbalanced.py"
    spec = importlib.util.spec_from_file_location("imbalanced_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_resumes_a_killed_run(tmp_path, capsys, monkeypatch):
    """benchmarks/imbalanced.py: one JSON per finished run; killed inside a run, started again
    it skips the finished runs and resumes the killed one from its checkpoint to the records an
    uninterrupted run gives; report prints the tables and writes the CSV and the plot."""
    bench = _script()
    data = tmp_path / "fm"
    data.mkdir()
    _fake_fashion(data)
    args = ["run", "--data-dir", str(data), "--ratios", "0.1", "--strategies", "random,base", "--seeds", "2",
            "--pool-size", "400", "--initial", "10", "--budget", "5", "--rounds", "2"]
    bench.run(bench.parse(args + ["--out", str(tmp_path / "whole")]))
    whole = {p.name: json.loads(p.read_text()) for p in (tmp_path / "whole" / "runs").glob("*.json")}
    assert len(whole) == 2 * 2 * 2
    one = whole["lt0.1-weighted-base-seed1.json"]
    assert one["pool_class_sizes"] == long_tail_sizes([40] * 10, 0.1).tolist()
    assert one["config"]["trainer"]["class_weighted"] is True and len(one["records"]) == 3
    assert "class_weighted" not in whole["lt0.1-plain-base-seed1.json"]["config"]["trainer"]

    real = bench.ActiveLearningLoop
    calls = []

    class KilledAfterRound1(real):
        def _round(self, r):
            super()._round(r)
            calls.append(self.checkpoint.name)
            if self.checkpoint.name == "lt0.1-weighted-random-seed1.json" and r == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(bench, "ActiveLearningLoop", KilledAfterRound1)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        bench.run(bench.parse(args + ["--out", str(out)]))
    assert not (out / "runs" / "lt0.1-weighted-random-seed1.json").exists()
    assert len(list((out / "runs").glob("*.json"))) == 6
    calls.clear()
    bench.run(bench.parse(args + ["--out", str(out)]))
    # the killed run resumed at round 2; the finished ones did not run again
    assert calls == ["lt0.1-weighted-random-seed1.json"] + ["lt0.1-weighted-base-seed1.json"] * 3
    for name, run in whole.items():
        again = json.loads((out / "runs" / name).read_text())
        assert _strip(again["records"]) == _strip(run["records"]), name
    capsys.readouterr()
    bench.report(bench.parse(["report", "--out", str(out), "--csv", str(tmp_path / "r.csv"),
                              "--plot", str(tmp_path / "r.png")]))
    text = capsys.readouterr().out
    assert "#### Long tail 0.1, plain loss" in text and "#### Long tail 0.1, class-weighted loss" in text
    assert "| random | " in text and "| random (2 seeds) | " in text
    assert re.search(r"\| [+−]\d+\.\d\d ± \d+\.\d\d \([012]/2\) \|", text)
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 8 * 3
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
