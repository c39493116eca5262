"""Bad input to the active-learning layer (alscale.al: the loop and its checkpoints, datasets —
synthetic, npz, Fashion-MNIST files —, metrics, the trainer, ``alscale run``) raises a clear
ValueError / TypeError (or a clean ``alscale run: error: ...`` with exit status 2): never a
crash, a hang, a raw traceback or a silently wrong answer."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from alscale.al import metrics
from alscale.cli import main
from alscale.al.datasets import class_sizes, load_npz, make_synthetic
from alscale.al.loop import ActiveLearningLoop
from alscale.al.train import linear_probe

SMALL = ["run", "--dataset", "synthetic", "--n", "200", "--dim", "4", "--classes", "3", "--initial", "10",
         "--budget", "5", "--rounds", "1", "--seeds", "1", "--epochs", "2", "--strategies", "random",
         "--no-progress"]


def _cli_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "alscale run: error:" in err and "Traceback" not in err
    assert message in err, err


# ------------------------------------------------------------------ threads, device, imbalance
@pytest.mark.parametrize("threads", ["100000", "-1"])
def test_cli_refuses_absurd_torch_threads(tmp_path, capsys, threads):
    with pytest.raises(SystemExit) as info:
        main(SMALL + ["--out", str(tmp_path), "--torch-threads", threads])
    assert info.value.code == 2
    assert "--torch-threads" in capsys.readouterr().err


def test_trainer_refuses_absurd_threads():
    with pytest.raises(ValueError, match="num_threads"):
        linear_probe(num_threads=100_000)
    with pytest.raises(ValueError, match="num_threads"):
        linear_probe(num_threads=-2)
    with pytest.raises(TypeError, match="num_threads"):
        linear_probe(num_threads=2.5)
    linear_probe(num_threads=2)  # fine


def test_cli_and_trainer_refuse_a_bogus_device(tmp_path, capsys):
    _cli_error(capsys, SMALL + ["--out", str(tmp_path), "--device", "bogus"], "--device")
    with pytest.raises(ValueError, match="device 'bogus'"):
        linear_probe(device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            linear_probe(device="cuda")


@pytest.mark.parametrize("value", ["nan", "inf", "0.5", "-3"])
def test_cli_refuses_bad_imbalance(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        main(SMALL + ["--out", str(tmp_path), "--imbalance", value])
    assert info.value.code == 2
    assert "--imbalance" in capsys.readouterr().err


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.5])
def test_synthetic_refuses_bad_imbalance(value):
    with pytest.raises(ValueError, match="imbalance"):
        class_sizes(100, 4, value)
    with pytest.raises(ValueError, match="imbalance"):
        make_synthetic(100, 4, 4, imbalance=value)


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(120, 4, 3, seed=0)


def _checkpoint(tmp_path, synthetic, **change):
    path = tmp_path / "ckpt.json"
    loop = ActiveLearningLoop(synthetic, "random", linear_probe(epochs=2), initial=10, budget=5, rounds=2,
                              checkpoint=path)
    loop.run()
    state = json.loads(path.read_text())
    for key, value in change.items():
        if callable(value):
            state = value(state) or state
        else:
            state[key] = value
    path.write_text(json.dumps(state))
    return path


def _resume(path, synthetic):
    return ActiveLearningLoop.resume(path, synthetic, "random", linear_probe(epochs=2), initial=10, budget=5,
                                     rounds=2)


def test_checkpoint_with_extra_records_is_refused(tmp_path, synthetic):
    def extra(state):
        state["records"] = state["records"] + state["records"][-1:]
    path = _checkpoint(tmp_path, synthetic, x=extra)
    with pytest.raises(ValueError, match="4 records, more than rounds \\+ 1 = 3"):
        _resume(path, synthetic)


def test_finished_is_robust():
    loop = object.__new__(ActiveLearningLoop)
    loop.rounds, loop.records = 1, [{}, {}, {}]
    assert loop.finished


@pytest.mark.parametrize("change,message", [
    (dict(x=lambda s: [s]), "must be a JSON object"),
    (dict(x=lambda s: s.pop("labeled") and None), "no 'labeled'"),
    (dict(x=lambda s: s.pop("records") and None), "no 'records'"),
    (dict(records="abc"), "'records' must be a list"),
    (dict(labeled="abc"), "'labeled' must be a list of row indices"),
    (dict(x=lambda s: s.__setitem__("labeled", s["labeled"][:-1])), "19 labeled rows"),
    (dict(x=lambda s: s.__setitem__("labeled", s["labeled"][:-1] + [s["labeled"][0]])), "repeats"),
    (dict(x=lambda s: s.__setitem__("labeled", s["labeled"][:-1] + [10**6])), "out of range"),
    (dict(x=lambda s: s.__setitem__("labeled", s["labeled"][:-1] + [-1])), "out of range"),
    (dict(x=lambda s: s.__setitem__("labeled", s["labeled"][:-1] + [1.5])), "row indices"),
    (dict(x=lambda s: s["records"].__setitem__(1, 5)), "record 1 is not"),
    (dict(x=lambda s: s["records"][1].__setitem__("n_labeled", 7)), "record 1"),
    (dict(strategy_state=[1]), "strategy_state"),
])
def test_bad_checkpoints_are_refused(tmp_path, synthetic, change, message):
    path = _checkpoint(tmp_path, synthetic, **change)
    with pytest.raises(ValueError, match=message):
        _resume(path, synthetic)


def test_cli_reports_a_bad_checkpoint(tmp_path, capsys):
    out = tmp_path / "res"
    argv = SMALL + ["--out", str(out)]
    assert main(argv) == 0
    path = out / "checkpoints" / "random-seed0.json"
    state = json.loads(path.read_text())
    state["records"] = state["records"] * 3
    path.write_text(json.dumps(state))
    _cli_error(capsys, argv + ["--resume"], "more than rounds + 1")
    path.write_text("{not json")
    _cli_error(capsys, argv + ["--resume"], "random-seed0.json")
    path.write_text("[]")
    _cli_error(capsys, argv + ["--resume"], "must be a JSON object")


# ------------------------------------------------------------------ npz files
def test_npz_that_is_an_npy(tmp_path):
    path = tmp_path / "x.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x.npz.*not an .npz archive"):
        load_npz(str(path))


def test_npz_with_corrupted_member(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, X=np.arange(400.0).reshape(100, 4), y=np.arange(100) % 3)
    raw = bytearray(path.read_bytes())
    start = raw.find(b"X.npy") + 200  # inside X's data: the CRC check fails on read
    raw[start : start + 50] = b"\xff" * 50
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="c.npz.*'X'"):
        load_npz(str(path))


def test_npz_truncated(tmp_path):
    path = tmp_path / "t.npz"
    np.savez_compressed(path, X=np.random.default_rng(0).standard_normal((200, 4)), y=np.arange(200) % 3)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("X.npy")
    # keep the central directory but garble the compressed stream of X
    raw = bytearray(raw)
    raw[info.header_offset + 60 : info.header_offset + 400] = bytes(340)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="t.npz"):
        load_npz(str(path))


def test_npz_object_array(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, X=np.array([[1, 2], [3, 4]], dtype=object), y=np.zeros(2, int))
    with pytest.raises(ValueError, match="o.npz.*'X'.*object"):
        load_npz(str(path))


@pytest.mark.parametrize("content,message", [
    ({"X": np.full((4, 2), 1e300), "y": np.zeros(4, int)}, "X has values beyond float32's range"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(4, int), "X_test": np.full((2, 2), -1e39), "y_test": np.zeros(2, int)},
     "X_test has values beyond float32's range"),
    ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 2, 2**40])}, "y has a label 1099511627776"),
    ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64)}, "y has a label"),
    ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 2, -1])}, "y has a negative label"),
    ({"X": np.zeros((4, 2)), "y": np.array([0.5, 1, 2, 1])}, "y must hold integer class labels"),
    ({"X": np.zeros((4, 2)), "y": np.array([True, False, True, True])}, "y must hold integer class labels"),
    ({"X": np.zeros((4, 0)), "y": np.zeros(4, int)}, "X has no features"),
    ({"X": np.zeros((0, 3)), "y": np.zeros(0, int)}, "X has no rows"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(4, int), "X_test": np.zeros((0, 2)), "y_test": np.zeros(0, int)},
     "X_test has no rows"),
    ({"X": np.zeros((4, 2), dtype=complex), "y": np.zeros(4, int)}, "X must be real-valued"),
])
def test_bad_npz_values(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    with pytest.raises(ValueError, match=message):
        load_npz(str(path))


def test_npz_split_never_empties_the_pool(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, X=np.zeros((2, 2)), y=np.array([0, 1]))
    d = load_npz(str(path), test_fraction=0.99)
    assert len(d) == 1 and d.x_test.shape == (1, 2)


def test_cli_reports_bad_npz(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.save(path, np.zeros((3, 2)))
    (tmp_path / "x.npz.npy").rename(path)
    _cli_error(capsys, ["run", "--dataset", f"npz:{path}", "--out", str(tmp_path / "o"), "--no-progress"],
               "not an .npz archive")


# ------------------------------------------------------------------ metrics
def test_adjusted_rand_index_edges():
    assert metrics.adjusted_rand_index([0], [0]) == 1.0
    assert metrics.adjusted_rand_index([3], [7]) == 1.0
    assert metrics.adjusted_rand_index([1, 1], [0, 0]) == 1.0
    assert metrics.adjusted_rand_index([0, 1], [5, 6]) == 1.0
    with pytest.raises(ValueError, match="empty"):
        metrics.adjusted_rand_index([], [])
    with pytest.raises(ValueError, match="same length"):
        metrics.adjusted_rand_index([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="1-D"):
        metrics.adjusted_rand_index([[0, 1]], [[0, 1]])


def test_per_class_accuracy_and_class_counts_refuse_bad_labels():
    with pytest.raises(ValueError, match="out of range|lie in"):
        metrics.per_class_accuracy([0, 1, 5], [0, 1, 5], 3)
    with pytest.raises(ValueError, match="negative|lie in"):
        metrics.per_class_accuracy([0, 1, 1], [0, -1, 1], 3)
    with pytest.raises(ValueError, match="shape"):
        metrics.per_class_accuracy([0, 1], [0, 1, 1], 3)
    with pytest.raises(TypeError, match="integer"):
        metrics.per_class_accuracy([0.5, 1], [0.5, 1], 3)
    with pytest.raises(TypeError, match="integer"):
        metrics.class_counts([0.7, 1.2], 3)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.class_counts([0, 1], 0)
    with pytest.raises(ValueError, match="shape"):
        metrics.accuracy([0, 1], [0, 1, 1])
    # integral floats and integer types still work
    assert metrics.class_counts(np.array([2, 0, 2], dtype=np.uint8), 3).tolist() == [1, 0, 2]
    assert metrics.per_class_accuracy([0, 1, 0], [0, 1, 1], 3)[:2].tolist() == [1.0, 0.5]
    assert metrics.class_counts([], 2).tolist() == [0, 0]


# ------------------------------------------------------------------ Fashion-MNIST files
def _idx_bytes(array: np.ndarray, magic=(0, 8)) -> bytes:
    import struct

    return struct.pack(">HBB", magic[0], magic[1], array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape) \
        + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _fashion(folder, **replace):
    """A tiny valid Fashion-MNIST folder (30 pool, 10 test images); ``replace`` maps a key
    (x, y, x_test, y_test) to the raw bytes of that .gz file instead."""
    import gzip

    from alscale.al.datasets import _FASHION_FILES

    rng = np.random.default_rng(0)
    arrays = {"x": rng.integers(0, 256, (30, 28, 28)), "y": np.arange(30) % 10,
              "x_test": rng.integers(0, 256, (10, 28, 28)), "y_test": np.arange(10)}
    folder.mkdir(exist_ok=True)
    for key, name in _FASHION_FILES.items():
        raw = replace.get(key)
        (folder / name).write_bytes(raw if raw is not None else gzip.compress(_idx_bytes(arrays[key])))
    return folder


def test_tiny_fashion_folder_loads(tmp_path):
    from alscale.al.datasets import load_fashion_mnist

    d = load_fashion_mnist(str(_fashion(tmp_path)))
    assert d.x.shape == (30, 28, 28) and d.x_test.shape == (10, 28, 28) and d.num_classes == 10
    assert d.y.tolist() == (np.arange(30) % 10).tolist() and d.x.flags.writeable


def _gz(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


_GOOD_X = _idx_bytes(np.zeros((30, 28, 28)))


@pytest.mark.parametrize("key,raw,message", [
    ("x", _gz(_GOOD_X)[:-12], "train-images-idx3-ubyte.gz is not a readable .gz file"),  # truncated
    ("x", _GOOD_X, "train-images-idx3-ubyte.gz is not a readable .gz file"),  # not gzip
    ("x", b"", "train-images-idx3-ubyte.gz is not an IDX file: 0 bytes, too short"),
    ("x", _gz(b""), "too short for a header"),
    ("x", _gz(_GOOD_X[:9]), "truncated inside its IDX header"),
    ("x", _gz(_idx_bytes(np.zeros((30, 28, 28)), magic=(0, 9))), "not an unsigned-byte IDX file"),
    ("x", _gz(_idx_bytes(np.zeros((30, 28, 28)), magic=(513, 8))), "not an unsigned-byte IDX file"),
    ("x", _gz(_idx_bytes(np.zeros((30, 27, 28)))), r"IDX shape \(30, 27, 28\), expected \(N, 28, 28\)"),
    ("x", _gz(_idx_bytes(np.zeros((30, 784)))), "2 dimensions, expected 3"),
    ("y", _gz(_idx_bytes(np.zeros((30, 1)))), "train-labels-idx1-ubyte.gz: an IDX array of 2 dimensions"),
    ("x", _gz(_GOOD_X[:-100]), r"header says shape \(30, 28, 28\) \(23520 values\) but the file holds 23420"),
    ("x", _gz(_GOOD_X + b"\0"), "data after the 23520 values"),
    ("x", _gz(_GOOD_X[:4] + (4_000_000_000).to_bytes(4, "big") + _GOOD_X[8:]), "more than a"),
    ("y", _gz(_idx_bytes(np.arange(29) % 10)), "holds 30 images but train-labels-idx1-ubyte.gz 29 labels"),
    ("y_test", _gz(_idx_bytes(np.arange(10) + 1)), "t10k-labels-idx1-ubyte.gz: label 10"),
    ("x_test", _gz(_idx_bytes(np.zeros((0, 28, 28)))), "t10k-images-idx3-ubyte.gz holds 0 images but"),
], ids=["truncated", "not-gzip", "empty-file", "empty-idx", "short-header", "bad-type", "bad-magic", "27x28",
        "2-dims", "2-dim-labels", "short-body", "extra-data", "huge-claim", "29-labels", "label-10", "no-test"])
def test_corrupt_fashion_files_are_named(tmp_path, key, raw, message):
    from alscale.al.datasets import load_fashion_mnist

    with pytest.raises(ValueError, match=message):
        load_fashion_mnist(str(_fashion(tmp_path, **{key: raw})))


def test_empty_fashion_split(tmp_path):
    from alscale.al.datasets import load_fashion_mnist

    folder = _fashion(tmp_path, x_test=_gz(_idx_bytes(np.zeros((0, 28, 28)))), y_test=_gz(_idx_bytes(np.zeros(0))))
    with pytest.raises(ValueError, match="at least one image each"):
        load_fashion_mnist(str(folder))


def test_corrupt_fashion_deflate_stream(tmp_path):
    from alscale.al.datasets import load_fashion_mnist

    good = bytearray(_gz(_idx_bytes(np.random.default_rng(1).integers(0, 256, (30, 28, 28)))))
    good[len(good) // 2 : len(good) // 2 + 64] = bytes(64)  # garbled data: zlib error or CRC mismatch
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist(str(_fashion(tmp_path, x=bytes(good))))


def test_cli_reports_a_corrupt_fashion_file(tmp_path, capsys):
    folder = _fashion(tmp_path / "f", x=_gz(_GOOD_X)[:-12])
    _cli_error(capsys, ["run", "--data-dir", str(folder), "--out", str(tmp_path / "o"), "--no-progress"],
               "train-images-idx3-ubyte.gz is not a readable .gz file")


# ------------------------------------------------------------------ npz labels and synthetic sizes
@pytest.mark.parametrize("content,message", [
    ({"X": np.zeros((8, 2)), "y": np.array([0, 1, 2, 10**7 - 1] * 2)},
     "y has a label 9999999 but only 4 distinct labels occur"),
    ({"X": np.zeros((8, 2)), "y": np.array([0, 1] * 4), "X_test": np.zeros((2, 2)), "y_test": np.array([0, 5000])},
     "y_test has a label 5000 but only 3 distinct labels occur"),
    ({"X": np.zeros((4, 2)), "y": np.array([3, 3, 3, 3])}, "y has a label 3 but only 1 distinct labels"),
])
def test_npz_sparse_labels_are_refused_before_any_allocation(tmp_path, content, message):
    path = tmp_path / "sparse.npz"
    np.savez(path, **content)
    with pytest.raises(ValueError, match=message + r".*numpy.unique\(y, return_inverse=True\)"):
        load_npz(str(path))


def test_npz_labels_with_a_few_missing_classes_are_kept(tmp_path):
    path = tmp_path / "gaps.npz"
    np.savez(path, X=np.zeros((6, 2)), y=np.array([0, 1, 3, 0, 1, 3]), X_test=np.zeros((2, 2)), y_test=np.array([5, 0]))
    d = load_npz(str(path))
    assert d.num_classes == 6 and d.y.tolist() == [0, 1, 3, 0, 1, 3]  # 4 of 0..5 occur: labels as given


def test_npz_nan_row_is_named(tmp_path):
    path = tmp_path / "nan.npz"
    x = np.zeros((5, 2))
    x[3, 1] = np.nan
    np.savez(path, X=x, y=np.zeros(5, int))
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first in row 3\)"):
        load_npz(str(path))


def test_npz_spec_without_a_path():
    from alscale.al.datasets import load_dataset

    with pytest.raises(ValueError, match="npz:PATH"):
        load_dataset("npz:")


@pytest.mark.parametrize("change,error,message", [
    (dict(n=-5), ValueError, "n must be at least 1, got -5"),
    (dict(n=0), ValueError, "n must be at least 1"),
    (dict(n=2.5), TypeError, "n must be an integer"),
    (dict(dim=-1), ValueError, "dim must be at least 1"),
    (dict(num_classes=0), ValueError, "num_classes must be at least 1"),
    (dict(num_classes=True), TypeError, "num_classes must be an integer"),
    (dict(n_test=0), ValueError, "n_test must be at least 1"),
    (dict(n_test=-3), ValueError, "n_test must be at least 1"),
    (dict(separation=float("nan")), ValueError, "separation must be a finite number"),
    (dict(separation=float("inf")), ValueError, "separation must be a finite number"),
    (dict(separation=-1.0), ValueError, "separation must be a finite number >= 0"),
    (dict(seed=-1), ValueError, "seed must be non-negative"),
    (dict(n=10**13), ValueError, "needs .* GiB, more than this machine's"),
    (dict(num_classes=2**40), ValueError, "needs .* GiB, more than this machine's"),
])
def test_synthetic_refuses_bad_sizes(change, error, message):
    with pytest.raises(error, match=message):
        make_synthetic(**{"n": 100, "dim": 4, "num_classes": 3, **change})


def test_synthetic_data_is_finite_and_the_cli_refuses_a_huge_one(tmp_path, capsys):
    d = make_synthetic(300, 5, 4, seed=3, separation=0.0)
    assert np.isfinite(d.x).all() and np.isfinite(d.x_test).all()
    _cli_error(capsys, SMALL + ["--out", str(tmp_path), "--n", str(10**12)], "more than this machine's")
