"""The multi-label active-learning loop: the Fashion-MNIST mosaic generator (label set = the
classes present, deterministic), the sigmoid (BCE) linear probe (converges; stationary point of
the documented objective; scikit-learn's per-class fit), average precision and mAP (hand cases,
ties, scikit-learn), the loop's multi-label records and their exact resume, refusals, and
``alscale run --dataset fashion-mnist-mosaic``."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

import alscale
from alscale.al import metrics
from alscale.al.datasets import DEFAULT_FASHION_MNIST_DIR, Dataset, load_dataset, make_fashion_mosaics, make_synthetic
from alscale.al.loop import ActiveLearningLoop, _digest
from alscale.al.report import MULTILABEL_CSV_COLUMNS
from alscale.al.train import linear_probe, sigmoid_probe
from alscale.cli import main
from alscale.strategies import get


def _kernel_has_multilabel() -> bool:
    try:
        alscale.select_margin(np.zeros((3, 2), np.float32), 1, multilabel=True)
    except TypeError:
        return False
    return True


#: The multi-label margin kernels (issue 20 item 1) are in the library.
needs_kernel = pytest.mark.skipif(not _kernel_has_multilabel(), reason="select_margin has no multilabel= yet")
HAVE_FASHION = (Path(DEFAULT_FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST is not installed (dataset-fashion-mnist)")


def _indexed_source(n=60, n_test=30, classes=5, side=3, seed=0) -> Dataset:
    """Images whose first pixel is their own index (pool 0..n-1, test 100..): a tile of a mosaic
    names the image it came from."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, side, side), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n)
    x_test[:, 0, 0] = 100 + np.arange(n_test)
    return Dataset("indexed", x, rng.integers(0, classes, n), x_test, rng.integers(0, classes, n_test), classes)


# ---------------------------------------------------------------------------------- the data set
@pytest.mark.parametrize("grid", [1, 2, 3])
def test_mosaic_labels_are_the_classes_present(grid):
    src = _indexed_source()
    d = make_fashion_mosaics(src, n=200, n_test=50, grid=grid, downscale=1, seed=3)
    assert d.multilabel and d.num_classes == 5 and d.is_image
    assert d.x.shape == (200, 3 * grid, 3 * grid) and d.y.shape == (200, 5) and d.y.dtype == np.uint8
    assert d.x_test.shape == (50, 3 * grid, 3 * grid) and d.y_test.shape == (50, 5)
    for x, y, images, labels, offset in ((d.x, d.y, src.x, src.y, 0), (d.x_test, d.y_test, src.x_test, src.y_test, 100)):
        for i in range(x.shape[0]):
            present = np.zeros(5, dtype=np.uint8)
            for r in range(grid):
                for c in range(grid):
                    tile = x[i, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3]
                    k = int(tile[0, 0]) - offset
                    assert 0 <= k < images.shape[0]  # test mosaics only from the test split
                    np.testing.assert_array_equal(tile, images[k])
                    present[labels[k]] = 1
            np.testing.assert_array_equal(y[i], present)
    assert set(np.unique(d.y.sum(axis=1))) <= set(range(1, grid * grid + 1))


def test_mosaics_are_deterministic_and_seeded():
    src = _indexed_source()
    a, b = make_fashion_mosaics(src, n=50, n_test=20, seed=7), make_fashion_mosaics(src, n=50, n_test=20, seed=7)
    for k in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.name == b.name and "seed=7" in a.name and "grid=2" in a.name
    c = make_fashion_mosaics(src, n=50, n_test=20, seed=8)
    assert not np.array_equal(a.x, c.x) and a.name != c.name


def test_mosaic_downscale_is_the_rounded_block_mean():
    src = _indexed_source(side=4)
    full = make_fashion_mosaics(src, n=40, n_test=10, downscale=1, seed=1)
    half = make_fashion_mosaics(src, n=40, n_test=10, downscale=2, seed=1)
    blocks = full.x.reshape(40, 4, 2, 4, 2).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(half.x, np.floor(blocks + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(half.y, full.y)


def test_mosaic_refusals():
    with pytest.raises(ValueError, match="feature vectors"):
        make_fashion_mosaics(make_synthetic(50, 4, 3, seed=0), n=5, n_test=5)
    with pytest.raises(ValueError, match="downscale 7 is larger"):
        make_fashion_mosaics(_indexed_source(), n=5, n_test=5, grid=2, downscale=7)
    with pytest.raises(ValueError, match="n must be"):
        make_fashion_mosaics(_indexed_source(), n=0)


@needs_fashion
def test_fashion_mnist_mosaics_by_default():
    d = load_dataset("fashion-mnist-mosaic", n=4000, n_test=1000)
    assert d.name == "fashion-mnist-mosaic(grid=2,n=4000,n_test=1000,downscale=2,seed=0)"
    assert d.x.shape == (4000, 28, 28) and d.y.shape == (4000, 10)
    per_row = d.y.sum(axis=1)
    assert per_row.min() >= 1 and per_row.max() <= 4
    assert abs(per_row.mean() - 10 * (1 - 0.9**4)) < 0.05  # 3.44 distinct classes on average
    assert np.all(np.abs(d.y.mean(axis=0) - (1 - 0.9**4)) < 0.04)  # each class in ~34% of the mosaics


# ---------------------------------------------------------------------------------- the probe
def _toy(n=300, d=5, classes=3, separable=False, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, classes))
    logits = x @ w + (0 if separable else rng.logistic(size=(n, classes)))
    y = (logits > 0).astype(np.uint8)
    return Dataset("toy", x, y, x, y, classes)


def _objective_gradient(t, data, rows):
    """The documented objective's gradient (float64 numpy) at the probe's weights."""
    w = t.model.weight.detach().double().numpy()
    b = t.model.bias.detach().double().numpy()
    x = data.x[rows].astype(np.float64)
    y = data.y[rows].astype(np.float64)
    n = rows.size
    residual = 1.0 / (1.0 + np.exp(-(x @ w.T + b))) - y
    penalty = 1.0 / (t.C * n)
    return residual.T @ x / n + penalty * w, residual.sum(axis=0) / n + penalty * b


def test_sigmoid_probe_converges_on_separable_data():
    data = _toy(separable=True)
    t = sigmoid_probe()
    t.setup(data, seed=0)
    info = t.fit(np.arange(300), seed=0)
    assert 0 < info["epochs"] < 1000  # stopped by itself, not by the cap
    logits = t.predict("pool")[0]
    assert logits.shape == (300, 3) and logits.dtype == np.float32
    assert ((logits > 0) == data.y.astype(bool)).mean() > 0.98
    assert t.describe() == {"model": "SigmoidProbe", "C": 1.0, "epochs": 1000, "tolerance": 1e-5}


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_sigmoid_probe_reaches_the_objectives_minimum(C):
    """At the fit the documented objective's gradient is zero (up to float32): the probe fits one
    L2 logistic regression per class, bias penalized, to convergence; same rows, same model."""
    data = _toy()
    rows = np.arange(40, 260)
    t = sigmoid_probe(C=C)
    t.setup(data, seed=0)
    t.fit(rows, seed=0)
    gw, gb = _objective_gradient(t, data, rows)
    assert max(np.abs(gw).max(), np.abs(gb).max()) < 2e-4
    first = t.predict("test")[0]
    t.fit(rows, seed=123)  # from zero weights whatever the seed
    np.testing.assert_array_equal(t.predict("test")[0], first)


def test_sigmoid_probe_gradient_matches_finite_differences():
    """The objective's numpy gradient used above is the objective's: a central finite-difference
    check in float64 at random weights."""
    data = _toy(n=50, d=3, classes=2)
    rows = np.arange(50)
    t = sigmoid_probe(C=0.5)
    t.setup(data, seed=0)
    import torch

    rng = np.random.default_rng(1)
    with torch.no_grad():
        t.model.weight.copy_(torch.from_numpy(rng.normal(size=(2, 3)).astype(np.float32)))
        t.model.bias.copy_(torch.from_numpy(rng.normal(size=2).astype(np.float32)))
    w0 = t.model.weight.detach().double().numpy().copy()
    b0 = t.model.bias.detach().double().numpy().copy()
    x, y = data.x.astype(np.float64), data.y.astype(np.float64)

    def objective(w, b):
        z = x @ w.T + b
        bce = np.logaddexp(0, z) - y * z
        return bce.sum() / 50 + (np.square(w).sum() + np.square(b).sum()) / (2 * 0.5 * 50)

    gw, gb = _objective_gradient(t, data, rows)
    eps = 1e-6
    for i in range(2):
        for j in range(3):
            d = np.zeros_like(w0)
            d[i, j] = eps
            assert abs((objective(w0 + d, b0) - objective(w0 - d, b0)) / (2 * eps) - gw[i, j]) < 1e-6
        d = np.zeros_like(b0)
        d[i] = eps
        assert abs((objective(w0, b0 + d) - objective(w0, b0 - d)) / (2 * eps) - gb[i]) < 1e-6


def test_sigmoid_probe_is_scikit_learns_logistic_regression_per_class():
    linear_model = pytest.importorskip("sklearn.linear_model")
    data = _toy()
    rows = np.arange(200)
    t = sigmoid_probe(tolerance=1e-6)
    t.setup(data, seed=0)
    t.fit(rows, seed=0)
    x1 = np.hstack([data.x[rows].astype(np.float64), np.ones((rows.size, 1))])  # the bias as a penalized feature
    for c in range(3):
        lr = linear_model.LogisticRegression(C=1.0, fit_intercept=False, tol=1e-10, max_iter=10_000)
        lr.fit(x1, data.y[rows, c])
        ours = np.append(t.model.weight.detach().double().numpy()[c], t.model.bias.detach().double().numpy()[c])
        np.testing.assert_allclose(ours, lr.coef_[0], atol=2e-3)


def test_probes_refuse_the_other_kind_of_labels():
    multi, single = _toy(), make_synthetic(60, 4, 3, seed=0)
    with pytest.raises(ValueError, match="LinearProbe trains on single-label data.*multi-label: use .*sigmoid_probe"):
        linear_probe().setup(multi, seed=0)
    with pytest.raises(ValueError, match="SigmoidProbe trains on multi-label data.*single-label"):
        sigmoid_probe().setup(single, seed=0)


# ---------------------------------------------------------------------------------- the metric
def test_average_precision_hand_cases():
    # positives at ranks 1 and 3 of 4: (1/1 + 2/3) / 2
    assert metrics.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])[0] == pytest.approx((1 + 2 / 3) / 2)
    # a perfect ranking is 1, whatever the scores' scale
    s = np.array([[5.0, -1.0], [4.0, 2.0], [-3.0, 3.0], [-4.0, 0.0]])
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(metrics.average_precision(s, y), [1.0, 1.0])
    assert metrics.mean_average_precision(s, y) == 1.0
    # the worst ranking: one positive, last of 4
    assert metrics.average_precision([4, 3, 2, 1], [0, 0, 0, 1])[0] == 0.25
    # ties enter together: a positive tied with three negatives at the top is precision 1/4
    assert metrics.average_precision([1, 1, 1, 1], [0, 1, 0, 0])[0] == 0.25
    # two positives, one tied with a negative at the top (P = 1/2, R = 1/2), then one alone (P = 2/3)
    assert metrics.average_precision([2, 2, 1, 0], [1, 0, 1, 0])[0] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    # the order of tied rows does not matter
    a = metrics.average_precision([3, 2, 2, 2, 1], [0, 1, 0, 0, 1])
    b = metrics.average_precision([3, 2, 2, 2, 1], [0, 0, 0, 1, 1])
    assert a[0] == b[0] == pytest.approx(0.5 * 1 / 4 + 0.5 * 2 / 5)  # P = 1/4 at R = 1/2, 2/5 at R = 1


def test_map_skips_classes_without_a_positive():
    s = np.array([[0.3, 0.1, 0.9], [0.2, 0.8, 0.1]])
    y = np.array([[1, 0, 0], [0, 1, 0]])
    ap = metrics.average_precision(s, y)
    assert ap[0] == 1.0 and ap[1] == 1.0 and np.isnan(ap[2])
    assert metrics.mean_average_precision(s, y) == 1.0
    assert np.isnan(metrics.mean_average_precision(s, np.zeros_like(y)))
    assert metrics.average_precision(np.zeros((0, 3)), np.zeros((0, 3))).shape == (3,)


def test_average_precision_equals_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(100):
        n, c = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        s = rng.integers(0, 4, (n, c)).astype(np.float32) if trial % 2 else rng.normal(size=(n, c))
        y = rng.integers(0, 2, (n, c))
        ours = metrics.average_precision(s, y)
        for j in range(c):
            if y[:, j].any():
                assert ours[j] == pytest.approx(skm.average_precision_score(y[:, j], s[:, j]), abs=1e-12)
            else:
                assert np.isnan(ours[j])


def test_average_precision_refuses_bad_input():
    with pytest.raises(ValueError, match="shape"):
        metrics.average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        metrics.average_precision(np.zeros((2, 2)), [[0, 2], [1, 0]])
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.average_precision([[np.nan]], [[1]])


# ---------------------------------------------------------------------------------- the loop
KW = dict(initial=20, budget=15, rounds=3)


@pytest.fixture(scope="module")
def mosaics():
    return make_fashion_mosaics(_indexed_source(n=150, n_test=60, classes=4, side=4), n=200, n_test=80, seed=0)


def _strip(records):  # the timings differ; NaN compares equal through JSON
    return json.dumps([{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records])


def _strategies():
    out = [("random", {})]
    if _kernel_has_multilabel():
        out += [("margin", {"multilabel": True, "reduction": "mean"}), ("margin", {"multilabel": True, "reduction": "min"}),
                ("cluster-margin", {"multilabel": True})]
    return out


def test_multilabel_loop_records(mosaics):
    loop = ActiveLearningLoop(mosaics, "random", sigmoid_probe(), **KW)
    records = loop.run()
    assert [r["n_labeled"] for r in records] == [20, 35, 50, 65]
    for r in records:
        assert set(r) == {"strategy", "seed", "round", "n_labeled", "test_map", "positives", "empty_classes",
                          "imbalance_ratio", "label_entropy", "batch_empty_classes", "batch_imbalance_ratio",
                          "batch_label_entropy", "epochs", "train_seconds", "select_seconds", "per_class_ap",
                          "class_counts"}
        rows = loop.labeled_order[: r["n_labeled"]]
        assert r["class_counts"] == mosaics.y[rows].sum(axis=0).tolist()  # the oracle reveals whole label sets
        assert r["positives"] == int(mosaics.y[rows].sum())
        assert 0 < r["test_map"] <= 1 and len(r["per_class_ap"]) == 4
        assert r["test_map"] == pytest.approx(np.nanmean(r["per_class_ap"]))
    t = sigmoid_probe()
    t.setup(mosaics, seed=0)
    t.fit(loop.labeled_order, seed=0)  # the last record is the model of all labels
    assert records[-1]["test_map"] == metrics.mean_average_precision(t.predict("test")[0], mosaics.y_test)


@pytest.mark.parametrize("strategy,options", _strategies())
def test_multilabel_loop_resumes_exactly(tmp_path, mosaics, strategy, options):
    whole = ActiveLearningLoop(mosaics, get(strategy, **options), sigmoid_probe(), seed=1, **KW)
    expected = whole.run()

    class Stop(Exception):
        pass

    def stop_after_round_1(record):
        if record["round"] == 1:
            raise Stop

    path = tmp_path / "c.json"
    with pytest.raises(Stop):
        ActiveLearningLoop(mosaics, get(strategy, **options), sigmoid_probe(), seed=1, checkpoint=path,
                           progress=stop_after_round_1, **KW).run()
    resumed = ActiveLearningLoop.resume(path, mosaics, get(strategy, **options), sigmoid_probe(), seed=1, **KW)
    assert len(resumed.records) == 2
    assert _strip(resumed.run()) == _strip(expected)
    np.testing.assert_array_equal(resumed.labeled_order, whole.labeled_order)
    if options:  # the multi-label options are part of the run's config: another reduction is another run
        other = {**options, "reduction": "min" if options.get("reduction", "mean") == "mean" else "mean"}
        with pytest.raises(ValueError, match="reduction"):
            ActiveLearningLoop.resume(path, mosaics, get(strategy, **other), sigmoid_probe(), seed=1, **KW)


def test_multilabel_checkpoint_label_counts_are_checked(tmp_path, mosaics):
    path = tmp_path / "c.json"
    ActiveLearningLoop(mosaics, "random", sigmoid_probe(), checkpoint=path, **KW).run()
    state = json.loads(path.read_text())
    state["records"][1]["class_counts"][0] += 1
    state["sha256"] = {k: _digest(state[k]) for k in ("config", "labeled", "records", "strategy_state")}
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="record 1's 'class_counts' do not match"):
        ActiveLearningLoop.resume(path, mosaics, "random", sigmoid_probe(), **KW)


def test_loop_name_labels_the_records(mosaics):
    loop = ActiveLearningLoop(mosaics, "random", sigmoid_probe(), name="random-again", initial=20, budget=10, rounds=1)
    assert {r["strategy"] for r in loop.run()} == {"random-again"}
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        ActiveLearningLoop(mosaics, "random", sigmoid_probe(), name="", initial=20, budget=10, rounds=1)


def test_loop_refuses_the_other_kind_of_strategy_or_trainer(mosaics):
    with pytest.raises(ValueError, match=r"'margin' reads the model's outputs as one softmax.*multilabel=True"):
        ActiveLearningLoop(mosaics, "margin", sigmoid_probe(), **KW)
    with pytest.raises(ValueError, match="'base' reads the model's outputs as one softmax"):
        ActiveLearningLoop(mosaics, "base", sigmoid_probe(), **KW)
    with pytest.raises(ValueError, match="'balanced-random'"):
        ActiveLearningLoop(mosaics, "balanced-random", sigmoid_probe(), **KW)
    with pytest.raises(ValueError, match="LinearProbe trains on single-label data"):
        ActiveLearningLoop(mosaics, "random", linear_probe(), **KW)
    single = make_synthetic(200, 4, 3, seed=0)
    with pytest.raises(ValueError, match="has multilabel=True, but synthetic is single-label"):
        ActiveLearningLoop(single, get("margin", multilabel=True), linear_probe(), **KW)
    with pytest.raises(ValueError, match="SigmoidProbe trains on multi-label data"):
        ActiveLearningLoop(single, "random", sigmoid_probe(), **KW)
    ActiveLearningLoop(mosaics, "coreset", sigmoid_probe(), **KW)  # embeddings only: fine


# ---------------------------------------------------------------------------------- alscale run
@needs_fashion
def test_run_on_fashion_mnist_mosaics(tmp_path, capsys):
    out = tmp_path / "res"
    names = "random,margin-min,cluster-margin" if _kernel_has_multilabel() else "random,coreset"
    args = ["run", "--dataset", "fashion-mnist-mosaic", "--mosaics", "400", "--test-mosaics", "200",
            "--strategies", names, "--initial", "40", "--budget", "40", "--rounds", "2", "--seeds", "2",
            "--no-progress", "--out", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "test mAP over the classes (%)" in table and str(out / "map.png") in table
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MULTILABEL_CSV_COLUMNS
    assert {r["strategy"] for r in rows} == set(names.split(","))
    assert len(rows) == len(names.split(",")) * 2 * 3
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["dataset"] == "fashion-mnist-mosaic(grid=2,n=400,n_test=200,downscale=2,seed=0)"
    assert saved["config"]["pool"] == 400 and saved["config"]["test"] == 200 and saved["config"]["classes"] == 10
    if _kernel_has_multilabel():
        ckpt = json.loads((out / "checkpoints" / "margin-min-seed0.json").read_text())
        assert ckpt["config"]["strategy"] == "margin"
        assert ckpt["config"]["strategy_options"] == {"multilabel": True, "reduction": "min"}
    assert main(args + ["--resume"]) == 0  # all checkpointed: the same records
    assert json.loads((out / "results.json").read_text())["records"] == saved["records"]


@pytest.mark.parametrize("extra,message", [
    (["--strategies", "base"], "'base' reads the model's outputs as one softmax"),
    (["--strategies", "margin,margin-mean"], "repeats a name"),
    (["--strategies", "random-min"], "unknown strategy 'random-min'.*also margin-min"),
    (["--model", "cnn"], "multi-label data trains the linear probe only"),
])
@needs_fashion
def test_run_multilabel_refusals(tmp_path, capsys, extra, message):
    args = ["run", "--dataset", "fashion-mnist-mosaic", "--mosaics", "100", "--test-mosaics", "50", "--initial",
            "10", "--budget", "10", "--rounds", "1", "--seeds", "1", "--no-progress", "--out", str(tmp_path / "r")]
    assert main(args + extra) == 2
    assert re.search(message, capsys.readouterr().err)


def test_run_reduction_suffix_needs_multilabel_data(tmp_path, capsys):
    args = ["run", "--dataset", "synthetic", "--n", "100", "--dim", "4", "--classes", "3", "--initial", "10",
            "--budget", "5", "--rounds", "1", "--seeds", "1", "--strategies", "margin-min", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "a reduction over the classes is for multi-label data" in capsys.readouterr().err


def test_run_candidates_factor_reaches_cluster_margin(tmp_path, capsys):
    """--candidates-factor sets cluster-margin's k_m = F x budget (its checkpoint's options) and is
    a setting of the run: --resume with another value is refused."""
    out = tmp_path / "res"
    args = ["run", "--dataset", "synthetic", "--n", "300", "--dim", "4", "--classes", "3", "--initial", "20",
            "--budget", "10", "--rounds", "1", "--seeds", "1", "--epochs", "5", "--strategies", "cluster-margin",
            "--no-progress", "--out", str(out), "--candidates-factor", "2"]
    assert main(args) == 0
    ckpt = json.loads((out / "checkpoints" / "cluster-margin-seed0.json").read_text())
    assert ckpt["config"]["strategy_options"]["candidates_factor"] == 2
    assert json.loads((out / "results.json").read_text())["config"]["candidates_factor"] == 2
    capsys.readouterr()
    assert main(args[:-1] + ["3", "--resume"]) == 2
    assert "--candidates-factor 2 (now 3)" in capsys.readouterr().err
