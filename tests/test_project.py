"""alscale.ActiveLearner (alscale.project): a query equals the library call with the labeled ids
excluded (and the numpy references); teaching is all-or-nothing with refusals that name the
line; files are replaced whole (a failing os.replace or a killed process leaves the project as
it was); a project resumes from its folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale.project import STRATEGIES, ActiveLearner, format_status, read_label_studio, register
from hypotheses import examples

LIBRARY = {  # the library call each strategy must equal, given the labeled mask
    "random": lambda x, z, w, cl, b, lab, seed: alscale.select_random(len(x), b, exclude=lab, seed=seed),
    "margin": lambda x, z, w, cl, b, lab, seed: alscale.select_margin(x, b, exclude=lab),
    "confidence": lambda x, z, w, cl, b, lab, seed: alscale.select_confidence(x, b, exclude=lab),
    "entropy": lambda x, z, w, cl, b, lab, seed: alscale.select_entropy(x, b, exclude=lab),
    "mase": lambda x, z, w, cl, b, lab, seed: alscale.select_boundary(x, b, weight=w, exclude=lab),
    "base": lambda x, z, w, cl, b, lab, seed: alscale.select_balanced(x, b, weight=w, exclude=lab),
    "coreset": lambda x, z, w, cl, b, lab, seed: alscale.select_coreset(z, b, labeled=lab),
    "badge": lambda x, z, w, cl, b, lab, seed: alscale.select_badge(x, z, b, exclude=lab, seed=seed),
    "cluster-margin": lambda x, z, w, cl, b, lab, seed: alscale.select_cluster_margin(
        x, cl, b, candidates=10 * b, exclude=lab, seed=seed),
}
REFERENCE = {  # the numpy references (tests/reference.py) of the deterministic rules
    "margin": lambda x, w, b, lab: ref.select_margin(x, b, exclude=lab),
    "confidence": lambda x, w, b, lab: ref.select_confidence(x, b, exclude=lab),
    "entropy": lambda x, w, b, lab: ref.select_entropy(x, b, exclude=lab),
    "mase": lambda x, w, b, lab: ref.select_boundary(x, b, weight=w, exclude=lab),
    "base": lambda x, w, b, lab: ref.select_balanced(x, b, weight=w, exclude=lab),
}


def test_every_strategy_of_the_issue_is_registered():
    assert set(LIBRARY) <= set(STRATEGIES)


@examples(0.5)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), c=st.integers(1, 5),
       name=st.sampled_from(sorted(LIBRARY)), ties=st.booleans(), rounds=st.integers(1, 3),
       with_weight=st.booleans())
def test_query_equals_the_library_call_with_the_labeled_excluded(seed, n, c, name, ties, rounds, with_weight):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (n, c)).astype(np.float32) if ties else rng.standard_normal((n, c)).astype(np.float32)
    z = rng.standard_normal((n, 3))
    w = rng.standard_normal((c, 4)) if with_weight else None
    clusters = rng.integers(0, 4, n)
    with tempfile.TemporaryDirectory() as tmp:
        learner = ActiveLearner(tmp, strategy=name, pool_size=n, num_classes=c)
        initial = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)
        learner.teach(initial, rng.integers(0, c, initial.size))
        for r in range(rounds):
            budget = int(rng.integers(1, n + 2))
            lab = np.zeros(n, dtype=bool)
            lab[learner.labels.ids] = True
            if lab.all():  # every strategy says so the same way (issue 22), none records an empty round
                with pytest.raises(ValueError, match="every id of the pool is labeled"):
                    learner.query(x, budget, embeddings=z, weight=w, clusters=clusters, seed=r)
                break
            got = learner.query(x, budget, embeddings=z, weight=w, clusters=clusters, seed=r)
            want = LIBRARY[name](x, z, w, clusters, budget, lab, r)
            assert got.dtype == np.int64 and got.tolist() == np.asarray(want).tolist()
            if name in REFERENCE and not (ties and name in ("margin", "confidence", "entropy")):
                # (with integer ties, rows that are permutations of each other tie exactly; the float64
                # reference's row sums depend on the column order and split them at the last ulp)
                assert got.tolist() == REFERENCE[name](x.astype(np.float64), w, budget, lab).tolist()
            assert not lab[got].any() and got.size == min(budget, int((~lab).sum()))
            batch = learner.rounds[-1]
            assert batch.round == r + 1 and batch.strategy == name and batch.ids.tolist() == got.tolist()
            learner.teach(got[: got.size // 2 + 1] if got.size else got, np.zeros(min(got.size, got.size // 2 + 1), int))
        # resumed from the folder: the same labels and history
        again = ActiveLearner(tmp)
        assert again.strategy == name
        assert again.labels.ids.tolist() == learner.labels.ids.tolist()
        assert [b.ids.tolist() for b in again.rounds] == [b.ids.tolist() for b in learner.rounds]


def test_query_scores_are_the_library_scores_of_the_picked_rows(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    w = rng.standard_normal((4, 6))
    learner = ActiveLearner(tmp_path)
    for name, column, full in [("margin", "margin", alscale.margin_scores(x)),
                               ("entropy", "entropy", alscale.entropy_scores(x)),
                               ("mase", "boundary", alscale.boundary_scores(x, weight=w))]:
        ids = learner.query(x, 7, strategy=name, weight=w)
        col, scores = learner.scores(x, ids, strategy=name, weight=w)
        assert col == column and np.array_equal(scores, full[ids])
    assert learner.scores(x, ids, strategy="random") is None
    # BASE: the distance each pick was ranked by (its score for its class), then that class, the
    # class whose quota it fills, q_c = B // C + (c < B % C), classes in order (before: one column
    # named `class` and no score)
    for budget in (1, 7, 50):
        ids = learner.query(x, budget, strategy="base", weight=w)
        columns = learner.score_columns(x, ids, strategy="base", weight=w)
        assert list(columns) == ["distance", "class"]
        served = columns["class"]
        assert served.tolist() == [c for c, q in enumerate(ref.quotas(ids.size, 4)) for _ in range(q)]
        scores = ref.balanced_scores(x.astype(np.float64), w)
        np.testing.assert_allclose(columns["distance"], scores[ids, served], rtol=1e-12)
        col, distance = learner.scores(x, ids, strategy="base", weight=w)
        assert col == "distance" and distance.tobytes() == columns["distance"].tobytes()
        for c in range(4):  # each class's block holds that class's smallest scores among the rows left
            block = ids[served == c]
            assert np.all(np.diff(scores[block, c]) >= 0)
    ids = learner.query(x, 9, strategy="base", pending="new")  # no head: the plain logit gap
    columns = learner.score_columns(x, ids, strategy="base")
    np.testing.assert_allclose(columns["distance"], ref.balanced_scores(x.astype(np.float64))[ids, columns["class"]],
                               rtol=1e-12)


class _RowSpy:
    """An (N, C) logits array that records how many rows each read of picked rows asked for."""

    def __init__(self, x):
        self.x, self.shape, self.reads = x, x.shape, []

    def __getitem__(self, rows):
        self.reads.append(len(rows))
        return self.x[rows]


def test_score_columns_read_the_picked_rows_a_chunk_at_a_time(tmp_path, monkeypatch):
    """A batch's score columns read its rows' logits in bounded chunks (a 1M batch at C = 20,000
    would be 80 GB at once), with the same values as reading them all at once."""
    from alscale._backend import chunks

    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3))
    learner = ActiveLearner(tmp_path)
    for name, weight in (("margin", None), ("mase", w), ("base", w), ("base", None)):
        ids = learner.query(x, 60, strategy=name, weight=weight)
        whole = learner.score_columns(x, ids[::-1], strategy=name, weight=weight)  # not the last picks: recomputed
        monkeypatch.setattr(chunks, "CHUNK_BYTES", 8 * 5 * 7)  # 7 rows of float64 a chunk
        spy = _RowSpy(x)
        chunked = learner.score_columns(spy, ids[::-1], strategy=name, weight=weight)
        monkeypatch.undo()
        assert max(spy.reads) == 7 and sum(spy.reads) == 60
        assert list(chunked) == list(whole)
        for key in whole:
            assert chunked[key].tobytes() == whole[key].tobytes(), (name, key)


def test_query_on_a_memmap_equals_the_in_memory_call(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    m = np.load(tmp_path / "x.npy", mmap_mode="r")
    learner = ActiveLearner(tmp_path / "p", pool_size=3000, num_classes=20)
    learner.teach(np.arange(0, 3000, 7), np.arange(0, 3000, 7) % 20)
    lab = np.zeros(3000, bool)
    lab[::7] = True
    for name in ("base", "margin", "mase"):
        assert learner.query(m, 100, strategy=name).tolist() == LIBRARY[name](x, None, None, None, 100, lab, 0).tolist()


def _spy_clustering(monkeypatch):
    """The calls of cluster_embeddings (the project's clustering) as their keyword arguments."""
    import alscale.strategies.cluster_margin as module

    calls = []
    real = module.cluster_embeddings
    monkeypatch.setattr(module, "cluster_embeddings", lambda *a, **k: calls.append(k) or real(*a, **k))
    return calls


def test_cluster_margin_clusters_are_cached_in_the_project(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    z = rng.standard_normal((200, 8)).astype(np.float32)
    calls = _spy_clustering(monkeypatch)
    learner = ActiveLearner(tmp_path, strategy="cluster-margin")
    first = learner.query(x, 10, embeddings=z, seed=0)
    expect = alscale.hac_average(z, n_clusters=10, neighbors=10).labels  # the same graph HAC, in one call
    lab = np.zeros(200, bool)
    assert first.tolist() == alscale.select_cluster_margin(x, expect, 10, candidates=100, exclude=lab, seed=0).tolist()
    learner.teach(first, np.zeros(10, int))
    ActiveLearner(tmp_path).query(x, 20, embeddings=z, seed=1)  # a new session: the cache is reused
    assert len(calls) == 1 and calls[0]["neighbors"] == 10  # the first budget stays the cluster count
    with np.load(tmp_path / "clusters.npz") as f:
        assert json.loads(str(f["settings"]))["n_clusters"] == 10
        np.testing.assert_array_equal(f["labels"], expect)
    z2 = z.copy()
    z2[0, 0] += 1.0
    learner.query(x, 5, embeddings=z2, seed=1)  # other embeddings: clustered again
    assert len(calls) == 2


@pytest.mark.parametrize("change", [{"neighbors": 5}, {"n_clusters": 7}, {"knn_recall": 0.9}, {"pca": 6}])
def test_changed_cluster_settings_cluster_again(tmp_path, monkeypatch, change):
    """Each setting is in the cache's key: a change clusters again (never the old clusters
    reused silently), the same settings again reuse the cache; the settings are stored in the
    project's options and the batch equals the library's on those settings."""
    from alscale.cluster_margin import cluster_embeddings

    rng = np.random.default_rng(4)
    x = rng.standard_normal((150, 4)).astype(np.float32)
    z = rng.standard_normal((150, 8)).astype(np.float32)
    calls = _spy_clustering(monkeypatch)
    learner = ActiveLearner(tmp_path, strategy="cluster-margin")
    learner.query(x, 10, embeddings=z, seed=0)
    got = learner.query(x, 10, embeddings=z, seed=1, options=change)
    assert len(calls) == 2
    assert ActiveLearner(tmp_path).config["options"] == {"n_clusters": 10, **change}
    settings = {"n_clusters": 10, "neighbors": 10, "knn_recall": 0.95, "pca": None, **change}
    labels = cluster_embeddings(z, settings["n_clusters"], neighbors=settings["neighbors"],
                                recall=settings["knn_recall"], pca=settings["pca"])
    lab = np.zeros(150, bool)
    lab[learner.rounds[0].ids] = False  # nothing taught: nothing excluded
    want = alscale.select_cluster_margin(x, labels, 10, candidates=100, exclude=lab, seed=1)
    assert got.tolist() == want.tolist()
    learner.query(x, 10, embeddings=z, seed=2)  # the stored settings: the cache
    assert len(calls) == 2


def test_clusters_cache_that_does_not_fit_is_recomputed(tmp_path, monkeypatch):
    """A damaged, foreign or edited clusters.npz is never used: computed again and replaced."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 3)).astype(np.float32)
    z = rng.standard_normal((60, 4)).astype(np.float32)
    calls = _spy_clustering(monkeypatch)
    learner = ActiveLearner(tmp_path, strategy="cluster-margin")
    first = learner.query(x, 5, embeddings=z, seed=0)
    path = tmp_path / "clusters.npz"
    good = path.read_bytes()
    with np.load(path) as f:
        key, labels = str(f["key"]), f["labels"]
    for damage in (b"garbage", good[: len(good) // 2]):
        path.write_bytes(damage)
        assert learner.query(x, 5, embeddings=z, seed=0).tolist() == first.tolist()
    for bad in (labels[:-1], labels.astype(np.float64), labels - 1 - labels.max()):  # right key, wrong labels
        np.savez(path, labels=bad, key=np.array(key))
        assert learner.query(x, 5, embeddings=z, seed=0).tolist() == first.tolist()
    np.savez(path, labels=np.zeros(60, np.int64), key=np.array("another key"))
    assert learner.query(x, 5, embeddings=z, seed=0).tolist() == first.tolist()
    assert len(calls) == 7
    assert not list(tmp_path.glob(".*.tmp"))  # replaced atomically


def test_cluster_progress_lines(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((80, 3)).astype(np.float32)
    z = rng.standard_normal((80, 4)).astype(np.float32)
    lines = []
    learner = ActiveLearner(tmp_path, strategy="cluster-margin", progress=lines.append)
    learner.query(x, 5, embeddings=z, seed=0)
    text = "\n".join(lines)
    assert "kNN graph of 80 embeddings (exact, k = 10) ..." in text
    assert re.search(r"kNN graph: \d+\.\d s", text) and re.search(r"graph HAC: \d+\.\d s", text)
    assert "graph HAC into 5 clusters" in text
    lines.clear()
    learner.query(x, 5, embeddings=z, seed=0)
    assert any("clusters reused" in line for line in lines) and not any("kNN" in line for line in lines)


def test_cluster_margin_inputs_are_checked(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((50, 3)).astype(np.float32)
    z = rng.standard_normal((50, 4)).astype(np.float32)
    learner = ActiveLearner(tmp_path, strategy="cluster-margin")
    with pytest.raises(ValueError, match="embeddings has 49 rows but logits has 50"):
        learner.query(x, 5, embeddings=z[:-1])
    with pytest.raises(ValueError, match="clusters has 49 cluster ids but the pool has 50 rows"):
        learner.query(x, 5, clusters=np.zeros(49, np.int64))
    with pytest.raises(ValueError, match="cluster-margin needs embeddings"):
        learner.query(x, 5)
    for options, error, message in (({"n_clusters": 0}, ValueError, "n_clusters must be at least 1"),
                                    ({"neighbors": -1}, ValueError, "neighbors must be at least 1"),
                                    ({"knn_recall": 1.5}, ValueError, r"recall must be in \(0, 1\]"),
                                    ({"knn_recall": "high"}, TypeError, "recall must be a number"),
                                    ({"pca": 2.5}, TypeError, "pca must be an integer"),
                                    ({"pca": 9}, ValueError, "pca must be at most the number of features")):
        with pytest.raises(error, match=message):
            learner.query(x, 5, embeddings=z, options=options)
    assert learner.rounds == [] and "pca" not in ActiveLearner(tmp_path).config["options"]  # nothing recorded
    z[3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf at row 3"):
        learner.query(x, 5, embeddings=z)


def test_cluster_margin_zero_embedding_rows_in_a_project(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    z = rng.standard_normal((40, 4)).astype(np.float32)
    z[[2, 9]] = 0
    learner = ActiveLearner(tmp_path, strategy="cluster-margin")
    learner.query(x, 4, embeddings=z, seed=0)
    with np.load(tmp_path / "clusters.npz") as f:
        labels = f["labels"]
    assert labels[2] == labels[9] == labels.max() and (labels == labels.max()).sum() == 2


def test_query_needs_and_shapes_are_checked(tmp_path):
    learner = ActiveLearner(tmp_path)
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="coreset.*needs embeddings"):
        learner.query(x, 2, strategy="coreset")
    with pytest.raises(ValueError, match="unknown strategy 'no-such-rule'"):
        learner.query(x, 2, strategy="no-such-rule")
    with pytest.raises(ValueError, match="logits must be an array"):
        learner.query([1, 2, 3], 2)
    learner.query(x, 2, strategy="margin")
    with pytest.raises(ValueError, match="logits has 11 rows but the project's pool has 10"):
        learner.query(np.zeros((11, 3)), 2)
    with pytest.raises(ValueError, match="logits has 4 classes but the project has 3"):
        learner.query(np.zeros((10, 4)), 2)
    with pytest.raises(ValueError, match="budget"):
        learner.query(x, -1)
    with pytest.raises(ValueError, match="embeddings has 9 rows"):
        learner.query(x, 2, strategy="coreset", embeddings=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="strategy 'margin' needs logits"):
        learner.query(None, 2, strategy="margin")
    with pytest.raises(ValueError, match="embeddings must be an array of shape"):
        learner.query(x, 2, strategy="coreset", embeddings=np.zeros(10))
    assert len(learner.rounds) == 1  # refused queries record nothing


def test_strategies_without_logits_take_the_pool_size_from_what_they_have(tmp_path):
    z = np.random.default_rng(0).standard_normal((30, 4))
    learner = ActiveLearner(tmp_path / "a", num_classes=2)
    with pytest.raises(ValueError, match="'random' needs the pool size"):
        learner.query(None, 3, strategy="random", seed=0)
    lab = np.zeros(30, bool)
    assert learner.query(None, 4, strategy="coreset", embeddings=z).tolist() == alscale.select_coreset(z, 4, labeled=lab).tolist()
    assert learner.config["pool_size"] == 30 and learner.config["num_classes"] == 2
    learner.teach([0, 5], [1, 0])
    lab[[0, 5]] = True
    assert learner.query(None, 4, strategy="random", seed=1).tolist() == \
        alscale.select_random(30, 4, exclude=lab, seed=1).tolist()  # the pool size is the project's now
    cold = ActiveLearner(tmp_path / "b", pool_size=1000)
    assert cold.query(None, 5, strategy="random", seed=2).tolist() == alscale.select_random(1000, 5, seed=2).tolist()


def test_teaching_needs_the_pool_size_and_the_classes(tmp_path):
    """(Was: ids taught before the first query must fit its pool.) Issue 22: an id of 20 digits
    taught while the pool size was unknown made every later command fail, and label 100000000
    made status take 3 GB; now ids must be in the pool and labels must be classes, so teaching
    waits until both are known."""
    learner = ActiveLearner(tmp_path)
    with pytest.raises(ValueError, match="does not know its pool size yet"):
        learner.teach([12], [0])
    with pytest.raises(ValueError, match="does not know its pool size yet"):
        learner.teach([10**19], [0])
    learner.query(np.zeros((10, 3)), 2, strategy="margin")  # the pool: 10 ids, 3 classes
    with pytest.raises(ValueError, match=r"id 12345678901234567890 is out of range \(the pool has ids 0..9\)"):
        learner.teach([12345678901234567890], [0])
    with pytest.raises(ValueError, match=r"label 100000000 is out of range \(classes 0..2\)"):
        learner.teach([3], [100000000])
    assert learner.labels.ids.size == 0
    sized = ActiveLearner(tmp_path / "b", pool_size=10)
    with pytest.raises(ValueError, match="does not know its classes yet"):
        sized.teach([3], [4])
    assert ActiveLearner(tmp_path / "b").status()["labels"] == 0


def test_the_registry_takes_one_entry_per_new_strategy(tmp_path):
    """A user strategy is one subclass of alscale.strategies.Strategy: the project (and the loop)
    see it at once."""
    from alscale.strategies import Strategy, unregister

    class LastRows(Strategy):
        """test only"""

        name = "last-rows"
        needs = frozenset({"logits"})

        def select(self, pool, budget, rng):
            return np.flatnonzero(~pool.labeled)[::-1][:budget]

    try:
        assert "last-rows" in STRATEGIES
        learner = ActiveLearner(tmp_path, pool_size=10, num_classes=2)
        learner.teach([9], [0])
        assert learner.query(np.zeros((10, 2)), 3, strategy="last-rows").tolist() == [8, 7, 6]
    finally:
        unregister("last-rows")
    assert "last-rows" not in STRATEGIES


def test_the_old_register_call_still_works_with_a_deprecation_warning(tmp_path):
    from alscale.strategies import unregister

    with pytest.warns(DeprecationWarning, match="subclass alscale.strategies.Strategy"):
        register("last-rows", lambda ctx: np.flatnonzero(~ctx.labeled)[::-1][: ctx.budget], summary="test only")
    try:
        learner = ActiveLearner(tmp_path, pool_size=10, num_classes=2)
        learner.teach([9], [0])
        assert learner.query(np.zeros((10, 2)), 3, strategy="last-rows").tolist() == [8, 7, 6]
    finally:
        unregister("last-rows")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="needs: unknown inputs"):
        register("x", lambda ctx: None, needs=("mc_samples",))


# --------------------------------------------------------------------------- teaching
def _project(tmp_path, n=10, classes=None):
    learner = ActiveLearner(tmp_path / "p", classes=classes, num_classes=None if classes else n, pool_size=n)
    learner.teach([0, 1], [1, 0])
    return learner


@pytest.mark.parametrize("body, line, message", [
    ("id,label\n2,1\n3,x\n", 3, "unknown label 'x'"),
    ("id,label\n2,1\n10,1\n", 3, "id 10 is out of range"),
    ("id,label\n-1,1\n", 2, "id -1 is out of range"),
    ("id,label\n2,1\nabc,1\n", 3, "id must be an integer"),
    ("id,label\n2,1\n0,0\n", 3, "id 0 is labeled 'a', but was taught 'b' before"),
    ("id,label\n2,1\n4,0\n2,0\n", 4, "id 2 is labeled 'a', but .* line 2 labels it 'b'"),
    ("id,label\n2,1\n3,1,7\n", 3, "3 fields, the header has 2"),
    ("id,label\n2,1\n3,\n", 3, "empty label"),
    ("id,label\n2,1\n3,5\n", 3, "label 5 is out of range"),
    ("ident,label\n2,1\n", 1, "header must name the columns id and label"),
    ("id,label\n2,1\n3,\"1\n", 3, "unexpected end of data|fields"),
])
def test_teach_refuses_a_bad_file_naming_the_line_and_records_nothing_of_it(tmp_path, body, line, message):
    learner = _project(tmp_path, classes=["a", "b", "c"])
    before = _files(learner.path)
    path = tmp_path / "new.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message) as info:
        learner.teach_file(path)
    assert f"{path} line {line}" in str(info.value)
    assert _files(learner.path) == before


BAD_LINES = {  # a bad line (given the project: pool 0..19, classes a/b/c, id 0 taught 'b') -> the message
    "999,a": "id 999 is out of range", "x1,a": "id must be an integer", "3,zebra": "unknown label 'zebra'",
    "0,c": "id 0 is labeled 'c', but was taught 'b' before", "4,7": "label 7 is out of range",
    "5,a,extra": "3 fields, the header has 2", "6,": "empty label", "1.5,a": "id must be an integer",
}


@examples(0.3)
@given(seed=st.integers(0, 2**32 - 1), good=st.integers(0, 15), bad=st.sampled_from(sorted(BAD_LINES)),
       where=st.integers(0, 15))
def test_teach_refuses_any_file_with_a_bad_line_naming_it(seed, good, bad, where):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(7, 20), size=min(good, 13), replace=False)
    lines = [f"{i},{'abc'[int(rng.integers(3))]}" for i in ids]
    k = min(where, len(lines))
    lines.insert(k, bad)
    with tempfile.TemporaryDirectory() as tmp:
        learner = ActiveLearner(Path(tmp) / "p", classes=["a", "b", "c"], pool_size=20)
        learner.teach([0], ["b"])
        before = _files(learner.path)
        path = Path(tmp) / "labels.csv"
        path.write_text("id,label\n" + "\n".join(lines) + "\n")
        with pytest.raises(ValueError) as info:
            learner.teach_file(path)
        assert f"{path} line {k + 2}: " in str(info.value) and BAD_LINES[bad] in str(info.value)
        assert _files(learner.path) == before
        path.write_text("id,label\n" + "\n".join(lines[:k] + lines[k + 1:]) + "\n")
        assert learner.teach_file(path) == len(ids)  # without it, the file is taught whole


def test_teach_names_the_pair_from_python_and_reads_class_names(tmp_path):
    learner = _project(tmp_path, classes=["cat", "dog"])
    with pytest.raises(ValueError, match=r"ids\[1\]: unknown label 'cow' \(classes: cat, dog\)"):
        learner.teach([3, 4], ["dog", "cow"])
    with pytest.raises(ValueError, match="differ in length"):
        learner.teach([3, 4], ["dog"])
    with pytest.raises(ValueError, match=r"ids\[0\]: id must be an integer"):
        learner.teach([True], [0])
    assert learner.teach([3, 4], ["dog", 0]) == 2
    assert learner.labels.labels.tolist() == [1, 0, 1, 0]


def test_the_same_label_is_never_recorded_twice(tmp_path):
    learner = _project(tmp_path)
    assert learner.teach([0, 1, 5, 5], [1, 0, 2, 2]) == 1
    path = tmp_path / "again.csv"
    path.write_text("id,label,score\n5,2,0.3\n0,1,0.1\n")
    assert learner.teach_file(path) == 0
    labels = learner.labels
    assert labels.ids.tolist() == [0, 1, 5] and labels.labels.tolist() == [1, 0, 2]
    assert labels.rounds.tolist() == [0, 0, 0]
    assert json.loads((learner.path / "project.json").read_text())["labels"] == {
        "ids": [0, 1, 5], "labels": [1, 0, 2], "rounds": [0, 0, 0]}


def test_labels_carry_the_round_they_were_taught_in(tmp_path):
    learner = ActiveLearner(tmp_path, pool_size=30, num_classes=3)
    x = np.random.default_rng(0).standard_normal((30, 3))
    learner.teach([0], [0])
    learner.teach(learner.query(x, 4, strategy="margin"), [1, 1, 1, 1])
    learner.teach(learner.query(x, 2, strategy="margin"), [2, 2])
    assert learner.labels.rounds.tolist() == [0, 1, 1, 1, 1, 2, 2]


def test_status_counts_labels_per_class_and_rounds(tmp_path):
    learner = ActiveLearner(tmp_path, classes=["a", "b", "c"])
    x = np.random.default_rng(0).standard_normal((30, 3))
    ids = learner.query(x, 6, strategy="margin")
    learner.teach(ids[:5], ["a", "a", "a", "b", "c"])
    s = learner.status()
    assert s["per_class"] == [3, 1, 1] and s["imbalance"] == 3.0 and s["labels"] == 5
    assert s["rounds"] == [{"round": 1, "strategy": "margin", "size": 6, "labeled": 5}]
    table = format_status(s)
    assert "5 labels of a pool of 30, 1 round queried" in table and "imbalance (largest / smallest class): 3.00" in table
    assert ActiveLearner(tmp_path / "empty", classes=["a", "b"]).status()["imbalance"] is None
    two = ActiveLearner(tmp_path / "two", classes=["a", "b"], pool_size=1)
    two.teach([0], ["b"])
    assert two.status()["imbalance"] == float("inf") and "inf (a class has no label)" in format_status(two.status())


def test_configuration_conflicts_are_refused(tmp_path):
    ActiveLearner(tmp_path, classes=["a", "b"])
    with pytest.raises(ValueError, match="classes are"):
        ActiveLearner(tmp_path, classes=["b", "a"])
    with pytest.raises(ValueError, match="distinct"):
        ActiveLearner(tmp_path / "q", classes=["a", "a"])
    with pytest.raises(ValueError, match=f"no alscale project at {tmp_path / 'none'}"):
        ActiveLearner(tmp_path / "none", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ActiveLearner(tmp_path / "file")
    (tmp_path / "project.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        ActiveLearner(tmp_path)


def test_a_second_command_on_the_same_project_is_refused_while_one_runs(tmp_path):
    learner = ActiveLearner(tmp_path, pool_size=1, num_classes=1)
    with learner._locked():
        with pytest.raises(ValueError, match="another alscale command is using"):
            ActiveLearner(tmp_path).teach([0], [0])
    assert ActiveLearner(tmp_path).teach([0], [0]) == 1


# --------------------------------------------------------------------------- atomicity
def test_files_get_the_usual_permissions(tmp_path):
    learner = _project(tmp_path)
    umask = os.umask(0o022)
    try:
        os.umask(0o022)
        fresh = ActiveLearner(tmp_path / "q", pool_size=3)
        assert (fresh.path / "project.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        os.chmod(learner.path / "project.json", 0o664)
        learner.teach([7], [0])
        assert (learner.path / "project.json").stat().st_mode & 0o777 == 0o664  # kept when replaced
    finally:
        os.umask(umask)


def _files(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != ".lock"}


@pytest.mark.parametrize("step", ["teach", "query"])
def test_a_failing_replace_leaves_the_project_as_it_was(tmp_path, monkeypatch, step):
    learner = _project(tmp_path)
    learner.query(np.eye(10), 2, strategy="margin")
    before = _files(learner.path)

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        if step == "teach":
            learner.teach([5, 6], [0, 0])
        else:
            learner.query(np.eye(10), 2, strategy="margin")
    assert _files(learner.path) == before  # no temporary file left either
    monkeypatch.undo()
    assert ActiveLearner(learner.path).teach([5, 6], [0, 0]) == 2


KILLED = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from alscale.project import ActiveLearner
    real = os.replace
    def slow(src, dst):
        Path(sys.argv[2]).write_text("writing")  # the temporary file is complete: kill me now
        time.sleep(60)
        real(src, dst)
    os.replace = slow
    learner = ActiveLearner(sys.argv[1])
    if sys.argv[3] == "teach":
        learner.teach(np.arange(2, 9), np.ones(7, int))
    else:
        learner.query(np.eye(10), 3, strategy="margin")
""")


@pytest.mark.parametrize("step", ["teach", "query"])
def test_a_killed_command_leaves_the_project_as_it_was(tmp_path, step):
    learner = _project(tmp_path)
    before = _files(learner.path)
    flag = tmp_path / "flag"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(learner.path), str(flag), step], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never got to its write"
            time.sleep(0.05)
        assert any(p.suffix == ".tmp" for p in learner.path.iterdir())  # killed mid-write
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    assert {k: v for k, v in _files(learner.path).items() if not k.endswith(".tmp")} == before
    again = ActiveLearner(learner.path)  # the next command works and clears the leftover
    assert again.teach(np.arange(2, 9), np.ones(7, int)) == 7
    assert not any(p.suffix == ".tmp" for p in learner.path.iterdir())
    assert again.labels.ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]


# --------------------------------------------------------------------------- Label Studio files
def _export(tasks):
    return [{"id": 100 + k, "data": {"alscale_id": i, "image": f"u{i}"}, "annotations": anns}
            for k, (i, anns) in enumerate(tasks)]


def _choice(name, cancelled=False):
    return {"was_cancelled": cancelled, "result": [{"type": "choices", "from_name": "label", "to_name": "image",
                                                     "value": {"choices": [name] if isinstance(name, str) else name}}]}


def test_label_studio_export_maps_choices_to_classes(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_export([(3, [_choice("dog")]), (4, []), (5, [_choice("cat"), _choice("cat")]),
                                        (6, [_choice("dog", cancelled=True)])])))
    assert [(i, y) for i, y, _ in read_label_studio(path)] == [(3, "dog"), (5, "cat")]
    learner = ActiveLearner(tmp_path / "p", pool_size=10)
    assert learner.teach_file(path, classes=["cat", "dog"]) == 2
    assert learner.labels.labels.tolist() == [1, 0]


@pytest.mark.parametrize("tasks, message", [
    ([(3, [_choice("dog")]), (4, [_choice("cat"), _choice("dog")])], r"task 2 \(id 101\): its annotations disagree"),
    ([(3, [_choice(["cat", "dog"])])], "chooses 2 classes"),
])
def test_label_studio_export_refusals_name_the_task(tmp_path, tasks, message):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_export(tasks)))
    with pytest.raises(ValueError, match=message):
        read_label_studio(path)


def test_label_studio_export_must_come_from_alscale_tasks(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 1, "data": {"image": "u"}, "annotations": []}]))
    with pytest.raises(ValueError, match="task 1 .*no 'alscale_id'"):
        read_label_studio(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="list of tasks"):
        read_label_studio(path)
    path.write_text("[")
    with pytest.raises(ValueError, match="not a Label Studio JSON export"):
        read_label_studio(path)


def test_docstring_examples():
    import doctest

    import alscale.project

    result = doctest.testmod(alscale.project, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_cold_start_and_mc_strategies_equal_the_library_call(tmp_path):
    """typiclust / probcover on the embeddings, and the MC-sample strategies on (T, N, C) logits:
    the project's query is the library call with the labeled rows excluded."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((120, 6)).astype(np.float32)
    mc = rng.standard_normal((4, 120, 3)).astype(np.float32)
    lab = np.zeros(120, dtype=bool)
    lab[[3, 50, 77]] = True
    cases = {
        "typiclust": (None, lambda: alscale.select_typiclust(z, 10, labeled=lab, seed=1)),
        "probcover": ({"num_classes": 4}, lambda: alscale.select_probcover(z, 10, labeled=lab, num_classes=4, seed=1)),
        "bald": (None, lambda: alscale.select_bald(mc, 10, exclude=lab)),
        "batchbald": (None, lambda: alscale.select_batchbald(mc, 10, exclude=lab, seed=1)),
        "powerbald": (None, lambda: alscale.select_powerbald(mc, 10, exclude=lab, seed=1)),
        "power-margin": (None, lambda: alscale.select_power_margin(mc, 10, exclude=lab, seed=1)),
        "power-entropy": (None, lambda: alscale.select_power_entropy(mc, 10, exclude=lab, seed=1)),
    }
    for name, (options, library) in cases.items():
        learner = ActiveLearner(tmp_path / name, strategy=name, options=options, pool_size=120, num_classes=3)
        learner.teach([3, 50, 77], [0, 1, 2])
        logits = None if name in ("typiclust", "probcover") else mc
        got = learner.query(logits, 10, embeddings=z, seed=1)
        assert got.tolist() == np.asarray(library()).tolist(), name
        assert not lab[got].any()
