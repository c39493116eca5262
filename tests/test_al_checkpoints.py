"""Loop checkpoints are validated on load: corrupt or edited JSON gives a ValueError naming the
file and the field (never a RecursionError, OverflowError or a KeyError at the end, never a
silently accepted edit), and a refused resume names the settings that differ."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from alscale.al.datasets import make_synthetic
from alscale.al.loop import ActiveLearningLoop, _digest, config_differences
from alscale.al.train import linear_probe

KW = dict(initial=10, budget=5, rounds=2)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(120, 4, 3, seed=0)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A finished run's checkpoint for each strategy (JSON text; cluster-margin's with the bytes
    of its labels' array file)."""
    out = {}
    for strategy in ("random", "cluster-margin"):
        path = tmp_path_factory.mktemp("ckpt") / "c.json"
        ActiveLearningLoop(data, strategy, linear_probe(epochs=3), checkpoint=path, **KW).run()
        out[strategy] = path.read_text()
        if strategy == "cluster-margin":
            ref = json.loads(out[strategy])["strategy_state"]["labels"]
            out[strategy] = (out[strategy], (path.parent / ref["npy"]).read_bytes())
    return out


def _resume(path, data, strategy="random", **change):
    return ActiveLearningLoop.resume(path, data, strategy, linear_probe(epochs=change.pop("epochs", 3)),
                                     **{**KW, **change})


def _write(tmp_path, state, rehash=False):
    """The edited checkpoint; ``rehash``: with digests recomputed, as a careful forger would
    (so that the field checks themselves are tested)."""
    if rehash:
        state["sha256"] = {k: _digest(state[k]) for k in ("config", "labeled", "records", "strategy_state")}
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(state))
    return path


def test_a_checkpoint_resumes(tmp_path, data, saved):
    path = tmp_path / "c.json"
    path.write_text(saved["random"])
    loop = _resume(path, data)
    assert loop.finished and len(loop.records) == 3
    state = json.loads(saved["random"])
    assert set(state["sha256"]) == {"config", "labeled", "records", "strategy_state"}


def test_deeply_nested_json(tmp_path, data):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=f"checkpoint {path} is nested too deeply"):
        _resume(path, data)
    state = json.loads("[" * 500 + "]" * 500)  # parses, then fails as not an object
    with pytest.raises(ValueError, match="must be a JSON object"):
        _resume(_write(tmp_path, state), data)


def test_huge_numbers(tmp_path, data, saved):
    state = json.loads(saved["random"])
    state["labeled"][3] = 10**30  # was an OverflowError
    with pytest.raises(ValueError, match=r"edited.json: labeled row 10{30} is out of range"):
        _resume(_write(tmp_path, state, rehash=True), data)
    path = tmp_path / "digits.json"
    path.write_text(saved["random"].replace('"seed": 0', '"seed": ' + "9" * 5000, 1))
    with pytest.raises(ValueError, match="digits.json is not valid JSON"):
        _resume(path, data)


def test_edited_accuracy_is_detected(tmp_path, data, saved):
    state = json.loads(saved["random"])
    state["records"][1]["test_accuracy"] = 0.99  # was accepted silently
    with pytest.raises(ValueError, match="edited.json: 'records' does not match its SHA-256 digest"):
        _resume(_write(tmp_path, state), data)


def test_swapped_labeled_rows_are_detected(tmp_path, data, saved):
    state = json.loads(saved["random"])
    labeled = state["labeled"]
    # a row of round 0 swapped with a row of another class added later
    j = next(j for j in range(10, 20) if data.y[labeled[j]] != data.y[labeled[0]])
    labeled[0], labeled[j] = labeled[j], labeled[0]
    with pytest.raises(ValueError, match="'labeled' does not match its SHA-256 digest"):
        _resume(_write(tmp_path, state), data)
    with pytest.raises(ValueError, match="record 0's 'class_counts' do not match the labels of its 10 labeled rows"):
        _resume(_write(tmp_path, state, rehash=True), data)


def _labels_file(tmp_path, saved):
    """The cluster-margin checkpoint copied into tmp_path with its labels' array file; returns
    (state, path of the array file)."""
    state = json.loads(saved["cluster-margin"][0])
    ref = state["strategy_state"]["labels"]
    (tmp_path / ref["npy"]).write_bytes(saved["cluster-margin"][1])
    return state, tmp_path / ref["npy"]


def _edited_labels(tmp_path, state, labels, *, rehash):
    """The checkpoint ``edited.json`` whose labels' array file holds ``labels``; ``rehash``:
    with the file's and the parts' digests recomputed (a careful forger)."""
    import io


    buf = io.BytesIO()
    np.save(buf, np.asarray(labels))
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    name = f"edited.json.labels.{digest[:16]}.npy"
    (tmp_path / name).write_bytes(data)
    state["strategy_state"]["labels"] = {"npy": name, "sha256": digest if rehash else "0" * 64}
    return _write(tmp_path, state, rehash=True)


def test_cluster_labels_live_beside_the_checkpoint(tmp_path, data, saved):
    state = json.loads(saved["cluster-margin"][0])
    ref = state["strategy_state"]["labels"]
    assert set(ref) == {"npy", "sha256"} and ref["npy"].startswith("c.json.labels.")

    labels = np.load(io.BytesIO(saved["cluster-margin"][1]))
    assert labels.dtype == np.int64 and labels.shape == (len(data),)
    path = tmp_path / "c.json"
    path.write_text(saved["cluster-margin"][0])
    (tmp_path / ref["npy"]).write_bytes(saved["cluster-margin"][1])
    loop = _resume(path, data, "cluster-margin")
    np.testing.assert_array_equal(loop.strategy.state()["labels"], labels)
    assert loop.strategy.needs == {"logits"}  # clustered: no embeddings asked for any more


def test_bad_cluster_label_files_are_refused(tmp_path, data, saved):
    state, file = _labels_file(tmp_path, saved)
    good = state["strategy_state"]["labels"]["npy"]
    edited = bytearray(file.read_bytes())
    edited[-8] ^= 1  # one label changed
    file.write_bytes(bytes(edited))
    with pytest.raises(ValueError, match=f"the array file {file} does not match its SHA-256 digest"):
        _resume(_write(tmp_path, state), data, "cluster-margin")
    file.unlink()
    with pytest.raises(ValueError, match=f"the array file {file} of 'strategy_state' field 'labels' cannot be read"):
        _resume(_write(tmp_path, state), data, "cluster-margin")
    for name in ("../c.json.labels.0123456789abcdef.npy", "/etc/passwd", ".c.json.labels.0123456789abcdef.npy",
                 good.replace(".npy", ".txt"), good.replace(".labels.", ".other."), 5):
        state["strategy_state"]["labels"] = {"npy": name, "sha256": "0" * 64}
        with pytest.raises(ValueError, match="names .*, not an array file of this checkpoint"):
            _resume(_write(tmp_path, state, rehash=True), data, "cluster-margin")
    state, _ = _labels_file(tmp_path, saved)
    with pytest.raises(ValueError, match="does not match its SHA-256 digest"):
        _resume(_edited_labels(tmp_path, state, np.zeros(len(data), np.int64), rehash=False), data, "cluster-margin")

    for bad, message in ((np.full(len(data), 1.5), "must be a 1-D array of integer cluster ids, got float64"),
                         (np.zeros((len(data), 1), np.int64), r"1-D array .* shape \(120, 1\)"),
                         (np.zeros(7, np.int64), "has 7 cluster ids, but the pool has 120 rows"),
                         (np.r_[np.zeros(len(data) - 1, np.int64), 120], "holds cluster id 120"),
                         (np.r_[np.zeros(len(data) - 1, np.int64), -1], "integer cluster ids >= 0, got -1"),
                         (np.r_[np.zeros(len(data) - 1, np.uint64), 2**63], "more than any pool has rows")):
        with pytest.raises(ValueError, match=r"bad 'strategy_state' for 'cluster-margin': .*" + message):
            _resume(_edited_labels(tmp_path, state, bad, rehash=True), data, "cluster-margin")
    (tmp_path / "edited.json.labels.0123456789abcdef.npy").write_bytes(b"not an npy file")

    state["strategy_state"]["labels"] = {"npy": "edited.json.labels.0123456789abcdef.npy",
                                         "sha256": hashlib.sha256(b"not an npy file").hexdigest()}
    with pytest.raises(ValueError, match="is not a .npy array"):
        _resume(_write(tmp_path, state, rehash=True), data, "cluster-margin")


def test_list_cluster_labels_of_earlier_checkpoints(tmp_path, data, saved):
    """Checkpoints written before the array files held the labels as a JSON list: still read,
    with the same checks (floats, booleans or negative ids refused, not truncated)."""


    state = json.loads(saved["cluster-margin"][0])
    labels = np.load(io.BytesIO(saved["cluster-margin"][1])).tolist()
    state["strategy_state"]["labels"] = labels
    loop = _resume(_write(tmp_path, state, rehash=True), data, "cluster-margin")
    assert loop.strategy.state()["labels"].tolist() == labels
    labels[5] = 1.5  # was truncated to 1 silently
    with pytest.raises(ValueError, match="'strategy_state' does not match its SHA-256 digest"):
        _resume(_write(tmp_path, state), data, "cluster-margin")
    with pytest.raises(ValueError, match=r"bad 'strategy_state' for 'cluster-margin': 'labels' must hold integer "
                                         r"cluster ids >= 0, got 1.5"):
        _resume(_write(tmp_path, state, rehash=True), data, "cluster-margin")
    for bad, message in (([0] * 7, "has 7 cluster ids, but the pool has 120 rows"),
                         ([0] * 119 + [120], "holds cluster id 120"),
                         ([0] * 119 + [-1], "integer cluster ids >= 0"),
                         ([0] * 119 + [10**30], "more than any pool has rows"),
                         ([0] * 119 + [True], "integer cluster ids")):
        state["strategy_state"]["labels"] = bad
        with pytest.raises(ValueError, match=message):
            _resume(_write(tmp_path, state, rehash=True), data, "cluster-margin")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("stop_after", [0, 1, 2])
def test_cluster_margin_resumes_without_clustering_again(tmp_path, data, monkeypatch, stop_after):
    """Stopped after round r and resumed in a fresh loop: the clustering is read from its file
    (never computed again), the pool's embeddings are not computed again, and the records and
    picks equal the uninterrupted run's."""

    from alscale.strategies import cluster_margin as module

    kw = dict(initial=10, budget=5, rounds=3, seed=2)
    whole = ActiveLearningLoop(data, "cluster-margin", linear_probe(epochs=3), checkpoint=tmp_path / "w.json", **kw)
    expected = whole.run()

    def stop(record):
        if record["round"] == stop_after:
            raise _Stop

    path = tmp_path / "c.json"
    with pytest.raises(_Stop):
        ActiveLearningLoop(data, "cluster-margin", linear_probe(epochs=3), checkpoint=path, progress=stop, **kw).run()
    clustered = True  # round r's checkpoint is written after its selection: round 0's clusters
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("c.json")) == (
        ["c.json"] + [f for f in sorted(p.name for p in tmp_path.iterdir()) if f.startswith("c.json.labels.")])
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("c.json.labels.")]) == int(clustered)

    class Counting:  # a trainer that counts the pool's embedding passes
        def __init__(self, inner):
            self.inner, self.embedding_passes = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def predict(self, split, *a, **k):
            self.embedding_passes += bool(k.get("embeddings")) and split == "pool"
            return self.inner.predict(split, *a, **k)

    if clustered:
        monkeypatch.setattr(module, "cluster_embeddings", lambda *a, **k: pytest.fail("clustered again"))
    trainer = Counting(linear_probe(epochs=3))
    resumed = ActiveLearningLoop.resume(path, data, "cluster-margin", trainer, **kw)
    got = resumed.run()
    strip = lambda rs: json.dumps([{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rs])  # NaN too
    assert strip(got) == strip(expected)
    np.testing.assert_array_equal(resumed.labeled_order, whole.labeled_order)
    assert trainer.embedding_passes == (0 if clustered else 1)
    digest = lambda p: json.loads(p.read_text())["strategy_state"]["labels"]["sha256"]
    assert digest(path) == digest(tmp_path / "w.json")  # the same clustering, bit for bit
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("c.json.labels.")]) == 1


def test_stale_label_files_are_removed(tmp_path, data):
    """Array files of this checkpoint that it no longer names (an earlier run's) are deleted
    after the checkpoint is written; other files are left alone."""
    (tmp_path / "c.json.labels.0123456789abcdef.npy").write_bytes(b"old")
    (tmp_path / "other.json.labels.0123456789abcdef.npy").write_bytes(b"keep")
    (tmp_path / "c.json.notes.npy").write_bytes(b"keep")
    ActiveLearningLoop(data, "cluster-margin", linear_probe(epochs=3), checkpoint=tmp_path / "c.json", **KW).run()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "c.json.labels.0123456789abcdef.npy" not in names
    assert "other.json.labels.0123456789abcdef.npy" in names and "c.json.notes.npy" in names
    assert len([n for n in names if n.startswith("c.json.labels.")]) == 1


@pytest.mark.parametrize("field,value,message", [
    ("test_accuracy", None, "record 1: 'test_accuracy' must be a number, got null"),
    ("test_accuracy", 1.5, r"'test_accuracy' must lie in \[0, 1\]"),
    ("imbalance_ratio", 0.5, "'imbalance_ratio' must be a finite number >= 1"),
    ("train_seconds", -1, "'train_seconds' must be a finite number of seconds"),
    ("epochs", 2.5, "'epochs' must be an integer >= 0"),
    ("per_class_accuracy", [0.5], "'per_class_accuracy' must be a list of 3 values"),
    ("class_counts", [5, 5, "x"], "'class_counts' entry 2 must be an integer >= 0"),
    ("seed", True, "record 1 has {'seed': True}"),
])
def test_record_fields_are_checked(tmp_path, data, saved, field, value, message):
    state = json.loads(saved["random"])
    state["records"][1][field] = value
    with pytest.raises(ValueError, match=message):
        _resume(_write(tmp_path, state, rehash=True), data)


def test_missing_record_field_is_refused_on_load(tmp_path, data, saved):
    state = json.loads(saved["random"])
    del state["records"][2]["test_accuracy"]  # was a KeyError when the CLI wrote its report
    with pytest.raises(ValueError, match=r"record 2 lacks \['test_accuracy'\]"):
        _resume(_write(tmp_path, state, rehash=True), data)
    state = json.loads(saved["random"])
    state["records"][2]["note"] = 1
    with pytest.raises(ValueError, match=r"record 2 has unknown fields \['note'\]"):
        _resume(_write(tmp_path, state, rehash=True), data)


def test_digests_and_version_are_required(tmp_path, data, saved):
    state = json.loads(saved["random"])
    del state["sha256"]
    with pytest.raises(ValueError, match="has no 'sha256' digests"):
        _resume(_write(tmp_path, state), data)
    state = json.loads(saved["random"])
    del state["sha256"]["records"]
    with pytest.raises(ValueError, match="'sha256' has no digest of 'records'"):
        _resume(_write(tmp_path, state), data)
    state = json.loads(saved["random"])
    state["version"] = 1
    with pytest.raises(ValueError, match="'version' is 1, not 2: it was written by another alscale version"):
        _resume(_write(tmp_path, state), data)
    state = json.loads(saved["random"])
    state["extra"] = {}
    with pytest.raises(ValueError, match=r"unexpected fields \['extra'\]"):
        _resume(_write(tmp_path, state), data)


def test_refused_resume_names_the_differences(tmp_path, data, saved):
    path = tmp_path / "c.json"
    path.write_text(saved["random"])
    with pytest.raises(ValueError) as err:
        _resume(path, data, budget=6)
    text = str(err.value)
    assert f"checkpoint {path} is of another run: budget: 5 in the checkpoint, 6 now" == text
    with pytest.raises(ValueError, match=r"of another run: seed: 0 in the checkpoint, 3 now; "
                                         r"trainer.epochs: 3 in the checkpoint, 4 now$"):
        _resume(path, data, seed=3, epochs=4)
    with pytest.raises(ValueError, match=r"strategy: 'random' in the checkpoint, 'margin' now"):
        _resume(path, data, "margin")


def test_config_differences():
    assert config_differences({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 2]}}) == []
    assert config_differences({"a": 1, "b": {"c": 2}}, {"a": 1.0, "b": {"d": 2}}) == [
        "a: 1 in the checkpoint, 1.0 now", "b.c: 2 in the checkpoint, not set now", "b.d: not in the checkpoint, 2 now"]
    assert config_differences([1], {"a": 1}) == ['config: [1] in the checkpoint, {"a": 1} now']
    long = config_differences({"x": list(range(100))}, {"x": []})[0]
    assert len(long) < 120 and long.startswith("x: [0, 1, 2")


def test_cluster_margin_strategy_settings(data):
    """knn_recall and pca reach the clustering, and the checkpoint's config names them only when
    they are not the defaults (earlier checkpoints still match)."""
    from alscale.strategies import PoolView, get
    from alscale.cluster_margin import cluster_embeddings

    assert get("cluster-margin").options() == {"n_clusters": 0, "neighbors": 10, "candidates_factor": 10}
    s = get("cluster-margin", n_clusters=6, neighbors=4, knn_recall=0.9, pca=2)
    assert s.options() == {"n_clusters": 6, "neighbors": 4, "candidates_factor": 10, "knn_recall": 0.9, "pca": 2}
    with pytest.warns(DeprecationWarning, match="n_clusters"):  # the old name, for one minor version
        assert get("cluster-margin", clusters=6).options()["n_clusters"] == 6
    rng = np.random.default_rng(0)
    view = PoolView(labeled=np.zeros(len(data), bool), logits=rng.normal(size=(len(data), 3)), embeddings=data.x)
    s.select(view, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(s.state()["labels"], cluster_embeddings(data.x, 6, neighbors=4, recall=0.9, pca=2))
    with pytest.raises(ValueError, match="pca must be at most the number of features"):
        get("cluster-margin", pca=99).select(view, 5, np.random.default_rng(1))


@pytest.mark.parametrize("strategy, old, new, value", [("cluster-margin", "clusters", "n_clusters", 0),
                                                        ("typiclust", "k", "neighbors", 20)])
def test_checkpoints_written_with_an_old_option_name_still_resume(data, tmp_path, strategy, old, new, value):
    """An option renamed in the one-strategy-layer redesign (cluster-margin's clusters ->
    n_clusters, typiclust's k -> neighbors): a checkpoint that names the old option (its digests
    as that version wrote them) resumes, and gives the uninterrupted run's records."""
    kw = dict(initial=10, budget=5, rounds=2, seed=1)
    path = tmp_path / "c.json"
    whole = ActiveLearningLoop(data, strategy, linear_probe(epochs=3), checkpoint=path, **kw).run()
    state = json.loads(path.read_text())
    options = state["config"]["strategy_options"]
    assert options[new] == value
    state["config"]["strategy_options"] = {(old if k == new else k): v for k, v in options.items()}
    state["sha256"]["config"] = _digest(state["config"])  # as the old version wrote it
    path.write_text(json.dumps(state))
    resumed = ActiveLearningLoop.resume(path, data, strategy, linear_probe(epochs=3), **kw)
    strip = lambda rs: json.dumps([{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rs])  # NaN too
    assert strip(resumed.run()) == strip(whole)
    other = dict(state, config={**state["config"], "strategy_options": {**state["config"]["strategy_options"],
                                                                         old: value + 1}})
    other["sha256"] = {**state["sha256"], "config": _digest(other["config"])}
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="of another run"):  # the old name's value is still compared
        ActiveLearningLoop.resume(path, data, strategy, linear_probe(epochs=3), **kw)
