"""The active-learning loop end to end: records, checkpoints, resume equality, metrics, data
loading and the errors of bad configurations."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from alscale.al import metrics
from alscale.al.datasets import Dataset, load_dataset, load_fashion_mnist, load_npz, make_synthetic
from alscale.al.loop import ActiveLearningLoop
from alscale.al.train import cnn_trainer, light_augment, linear_probe

TIMING = ("train_seconds", "select_seconds")


def _strip(records):
    """Records without their timings, NaN written as "nan" (NaN != NaN would fail any
    comparison; the convex linear probe has no validation split, so its val_accuracy is NaN)."""
    def same(v):
        return "nan" if isinstance(v, float) and v != v else v
    return [{k: same(v) for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(600, 16, 5, imbalance=8.0, n_test=200, seed=1)


@pytest.fixture(scope="module")
def tiny_images():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 160)
    x = (rng.integers(0, 60, (160, 28, 28)) + 120 * (y[:, None, None] == np.arange(28)[None, :, None] % 3))
    yt = rng.integers(0, 3, 60)
    xt = (rng.integers(0, 60, (60, 28, 28)) + 120 * (yt[:, None, None] == np.arange(28)[None, :, None] % 3))
    return Dataset("tiny-images", x.astype(np.uint8), y, xt.astype(np.uint8), yt, 3)


def test_loop_end_to_end(synthetic):
    loop = ActiveLearningLoop(synthetic, "base", linear_probe(), initial=30, budget=20, rounds=3, seed=4)
    records = loop.run()
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert [r["n_labeled"] for r in records] == [30, 50, 70, 90]
    assert loop.labeled_order.size == 90 and np.unique(loop.labeled_order).size == 90
    for r in records:
        assert 0.0 <= r["test_accuracy"] <= 1.0
        counts = np.array(r["class_counts"])
        assert counts.sum() == r["n_labeled"]
        assert r["empty_classes"] == int((counts == 0).sum())
        present = counts[counts > 0]
        assert r["imbalance_ratio"] == pytest.approx(present.max() / present.min())
        assert len(r["per_class_accuracy"]) == 5
    # The batch metrics describe the rows added in that round.
    batch = loop.labeled_order[50:70]
    assert records[2]["batch_imbalance_ratio"] == pytest.approx(
        metrics.balance(np.bincount(synthetic.y[batch], minlength=5))["imbalance_ratio"])
    # A trained linear probe beats chance on the test split.
    assert records[-1]["test_accuracy"] > 0.5


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("strategy,model", [("badge", "linear"), ("base", "linear"), ("margin", "cnn"),
                                            ("cluster-margin", "cnn")])
def test_resume_gives_the_uninterrupted_result(tmp_path, synthetic, tiny_images, strategy, model):
    data = tiny_images if model == "cnn" else synthetic
    make = (lambda: cnn_trainer(epochs=2, batch_size=32)) if model == "cnn" else (lambda: linear_probe(epochs=10))
    kw = dict(initial=20, budget=10, rounds=3, seed=7)
    whole = ActiveLearningLoop(data, strategy, make(), checkpoint=tmp_path / "whole.json", **kw)
    expected = whole.run()

    def kill_after_round_1(record):
        if record["round"] == 1:
            raise Interrupt

    path = tmp_path / "killed.json"
    killed = ActiveLearningLoop(data, strategy, make(), checkpoint=path, progress=kill_after_round_1, **kw)
    with pytest.raises(Interrupt):
        killed.run()
    saved = json.loads(path.read_text())
    assert len(saved["records"]) == 2 and len(saved["labeled"]) == 40
    # Resumed in a fresh loop with a fresh trainer (as a new process would).
    resumed = ActiveLearningLoop.resume(path, data, strategy, make(), **kw)
    assert len(resumed.records) == 2
    got = resumed.run()
    assert _strip(got) == _strip(expected)
    assert np.array_equal(resumed.labeled_order, whole.labeled_order)
    assert json.loads(path.read_text())["labeled"] == whole.labeled_order.tolist()


def test_resume_refuses_another_runs_checkpoint(tmp_path, synthetic):
    path = tmp_path / "c.json"
    ActiveLearningLoop(synthetic, "random", linear_probe(epochs=2), initial=10, budget=5, rounds=1,
                       checkpoint=path).run()
    with pytest.raises(ValueError, match="checkpoint .* is of another run"):
        ActiveLearningLoop.resume(path, synthetic, "margin", linear_probe(epochs=2), initial=10, budget=5, rounds=1)
    with pytest.raises(ValueError, match="checkpoint .* is of another run"):  # other training settings
        ActiveLearningLoop.resume(path, synthetic, "random", linear_probe(epochs=3), initial=10, budget=5, rounds=1)
    with pytest.raises(ValueError, match="checkpoint .* is of another run"):
        ActiveLearningLoop.resume(path, synthetic, "random", linear_probe(epochs=2), initial=10, budget=5, rounds=1,
                                  seed=1)


def test_checkpoint_is_replaced_atomically(tmp_path, synthetic):
    path = tmp_path / "c.json"
    ActiveLearningLoop(synthetic, "random", linear_probe(epochs=2), initial=10, budget=5, rounds=2,
                       checkpoint=path).run()
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left behind


def test_loop_bad_configs(synthetic):
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        ActiveLearningLoop(synthetic, "nope", linear_probe(), initial=10, budget=5, rounds=1)
    with pytest.raises(ValueError, match=r"10 \+ 300 x 2 = 610 labels, more than the pool's 600 rows"):
        ActiveLearningLoop(synthetic, "random", linear_probe(), initial=10, budget=300, rounds=2)
    with pytest.raises(ValueError, match="budget must be at least 1"):
        ActiveLearningLoop(synthetic, "random", linear_probe(), initial=10, budget=0, rounds=2)


def test_light_augment_is_seeded_and_shape_preserving():
    import torch

    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    a = light_augment(x, torch.Generator().manual_seed(3))
    b = light_augment(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    # each output row is a shifted (maybe flipped) piece of the input, zero padded
    assert set(a[0].unique().tolist()) <= set(x[0].unique().tolist()) | {0.0}


# --------------------------------------------------------------------------- metrics


def test_metrics_against_hand_values():
    assert metrics.balance([5, 5, 5, 5]) == {"empty_classes": 0, "imbalance_ratio": 1.0, "label_entropy": 1.0}
    b = metrics.balance([9, 3, 0])
    p = np.array([0.75, 0.25])
    assert b["empty_classes"] == 1 and b["imbalance_ratio"] == 3.0
    assert b["label_entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(3))
    assert np.isnan(metrics.balance([0, 0])["imbalance_ratio"])
    assert metrics.balance([7])["label_entropy"] == 1.0
    acc = metrics.per_class_accuracy([0, 0, 1, 2], [0, 1, 1, 1], 3)
    assert acc[0] == 1.0 and acc[1] == pytest.approx(1 / 3) and np.isnan(acc[2])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        metrics.class_counts([0, 2], 2)


# --------------------------------------------------------------------------- data


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_and_missing_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (7, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 7),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3)}
    for name, a in arrays.items():
        _write_idx(tmp_path / name, a)
    d = load_fashion_mnist(str(tmp_path))
    assert np.array_equal(d.x, arrays["train-images-idx3-ubyte.gz"]) and d.y.dtype == np.int64
    assert np.array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte.gz"]) and d.num_classes == 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte.gz.*--data-dir"):
        load_fashion_mnist(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found in /nonexistent/x"):
        load_dataset("fashion-mnist", data_dir="/nonexistent/x")


def test_installed_fashion_mnist():
    try:
        d = load_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("dataset-fashion-mnist is not installed")
    assert d.x.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    assert np.bincount(d.y).tolist() == [6000] * 10


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)), np.arange(50) % 3
    np.savez(tmp_path / "a.npz", X=x, y=y)
    a, b = load_npz(str(tmp_path / "a.npz"), seed=1), load_npz(str(tmp_path / "a.npz"), seed=1)
    assert len(a) == 40 and a.x_test.shape == (10, 4) and np.array_equal(a.x, b.x)
    assert sorted(np.concatenate([a.y, a.y_test]).tolist()) == sorted(y.tolist())
    np.savez(tmp_path / "b.npz", X=x, y=y, X_test=x[:5], y_test=y[:5])
    d = load_dataset(f"npz:{tmp_path / 'b.npz'}")
    assert len(d) == 50 and d.x_test.shape == (5, 4) and d.num_classes == 3


@pytest.mark.parametrize("content,message", [
    ("not a zip", "is not a readable .npz file"),
    ({"X": np.zeros((4, 2))}, "has no array 'y' .found: X.; it needs X"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(3, int)}, "X has 4 rows but y has 3"),
    ({"X": np.zeros(4), "y": np.zeros(4, int)}, "X must be 2-D"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(4)}, "y must hold integer class labels"),
    ({"X": np.full((4, 2), np.nan), "y": np.zeros(4, int)}, "X contains NaN or inf"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(4, int), "X_test": np.zeros((2, 2))}, "only one of X_test / y_test"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(4, int), "X_test": np.zeros((2, 3)), "y_test": np.zeros(2, int)},
     "do not match X"),
])
def test_bad_npz(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.savez(path, **content)
    with pytest.raises(ValueError, match=message):
        load_npz(str(path))


def test_missing_npz_and_unknown_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_synthetic_long_tail():
    d = make_synthetic(5000, 3, 10, imbalance=20.0, seed=0)
    counts = np.bincount(d.y, minlength=10)
    assert counts.sum() == 5000 and counts[0] / counts[-1] == pytest.approx(20.0, rel=0.1)
    assert (np.diff(counts[1:]) <= 0).all() and np.bincount(d.y_test).min() == np.bincount(d.y_test).max()
    assert d.x.dtype == np.float32 and d.x.shape == (5000, 3)
    again = make_synthetic(5000, 3, 10, imbalance=20.0, seed=0)
    assert np.array_equal(d.x, again.x)
