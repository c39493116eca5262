"""``alscale query`` / ``teach`` / ``status`` in subprocesses: they work with numpy alone (torch,
tqdm and matplotlib hidden), read .npy files as memmaps, give the library's result, and refuse bad
input with one ``alscale COMMAND: error: ...`` line naming the problem (exit status 2)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import alscale
from alscale.project import ActiveLearner

# A sitecustomize that makes torch, tqdm and matplotlib unimportable, as in a numpy-only install.
HIDE = textwrap.dedent("""
    import sys
    HIDDEN = ("torch", "tqdm", "matplotlib")
    class _Hide:  # wraps each import finder: the hidden packages are simply not found
        def __init__(self, inner):
            self.inner = inner
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                return None
            return self.inner.find_spec(name, path, target)
        def __getattr__(self, attr):
            return getattr(self.inner, attr)
    sys.meta_path[:] = [_Hide(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
""")


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    where = tmp_path_factory.mktemp("hide")
    (where / "sitecustomize.py").write_text(HIDE)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), *sys.path])}


def alscale_cli(*args, env=None, ok=True):
    proc = subprocess.run([sys.executable, "-m", "alscale", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)).astype(np.float32)
    z = rng.standard_normal((500, 4)).astype(np.float32)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    for name, a in (("logits", x), ("emb", z), ("weight", w)):
        np.save(tmp_path / f"{name}.npy", a)
    return tmp_path, x, z, w


def _rows(text: str) -> list:
    return list(csv.DictReader(io.StringIO(text)))


def test_query_teach_status_without_torch(pool, no_torch):
    tmp, x, z, w = pool
    p = tmp / "project"
    hidden = subprocess.run([sys.executable, "-c", "import torch"], env=no_torch, capture_output=True)
    assert hidden.returncode != 0  # the sitecustomize works: torch cannot be imported
    out = alscale_cli("query", "--project", p, "--new", "--logits", tmp / "logits.npy", "--weight", tmp / "weight.npy",
                      "--strategy", "base", "--budget", 12, env=no_torch).stdout
    rows = _rows(out)
    assert [int(r["id"]) for r in rows] == alscale.select_balanced(x, 12, weight=w).tolist()
    assert [int(r["class"]) for r in rows] == [c for c in range(6) for _ in range(2)]  # the quota each fills
    labels = tmp / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{r['id']},{k % 6}\n" for k, r in enumerate(rows)))
    done = alscale_cli("teach", "--project", p, labels, env=no_torch)
    assert "12 new labels recorded (12 in all)" in done.stderr
    table = alscale_cli("status", "--project", p, env=no_torch).stdout
    assert "12 labels of a pool of 500, 1 round queried" in table and "imbalance (largest / smallest class): 1.00" in table
    summary = json.loads(alscale_cli("status", "--project", p, "--json", env=no_torch).stdout)
    assert summary["per_class"] == [2] * 6 and summary["rounds"][0]["labeled"] == 12
    # run/bench say what to install
    run = alscale_cli("run", "--list", env=no_torch, ok=False)
    assert run.returncode == 2 and 'alscale[al]' in run.stderr and "Traceback" not in run.stderr, run.stderr
    help_text = alscale_cli("--help", env=no_torch).stdout
    assert all(c in help_text for c in ("query", "teach", "status", "run", "bench"))


@pytest.mark.parametrize("strategy, extra", [
    ("margin", []), ("entropy", []), ("confidence", []), ("mase", ["--weight", "weight.npy"]),
    ("random", ["--seed", "3"]), ("coreset", ["--embeddings", "emb.npy"]),
    ("badge", ["--embeddings", "emb.npy", "--seed", "3"]),
    ("cluster-margin", ["--embeddings", "emb.npy", "--seed", "3"]),
])
def test_query_equals_the_library_with_the_labeled_excluded(pool, strategy, extra):
    tmp, x, z, w = pool
    p = tmp / "project"
    ActiveLearner(p, pool_size=500, num_classes=6).teach(np.arange(0, 500, 3), np.arange(0, 500, 3) % 6)
    lab = np.zeros(500, bool)
    lab[::3] = True
    out = alscale_cli("query", "--project", p, "--logits", tmp / "logits.npy", "--strategy", strategy,
                      "--budget", 20, "--out", tmp / "batch.csv", *[tmp / e if e.endswith(".npy") else e for e in extra])
    assert out.stdout == "" and "round 1: 20 ids" in out.stderr
    got = [int(r["id"]) for r in _rows((tmp / "batch.csv").read_text())]
    want = {
        "margin": lambda: alscale.select_margin(x, 20, exclude=lab),
        "entropy": lambda: alscale.select_entropy(x, 20, exclude=lab),
        "confidence": lambda: alscale.select_confidence(x, 20, exclude=lab),
        "mase": lambda: alscale.select_boundary(x, 20, weight=w, exclude=lab),
        "random": lambda: alscale.select_random(500, 20, exclude=lab, seed=3),
        "coreset": lambda: alscale.select_coreset(z, 20, labeled=lab),
        "badge": lambda: alscale.select_badge(x, z, 20, exclude=lab, seed=3),
        "cluster-margin": lambda: alscale.select_cluster_margin(
            x, alscale.hac_average(z, n_clusters=20, neighbors=10).labels, 20, candidates=200, exclude=lab, seed=3),
    }[strategy]()
    assert got == want.tolist()
    assert ActiveLearner(p).rounds[-1].ids.tolist() == got


def test_label_studio_tasks_carry_the_data_field(pool):
    tmp, x, z, w = pool
    (tmp / "data.csv").write_text("id,url\n" + "".join(f"{i},s3://b/{i}.png\n" for i in range(500)))
    out = alscale_cli("query", "--project", tmp / "p", "--new", "--logits", tmp / "logits.npy", "--strategy", "entropy",
                      "--budget", 3, "--format", "label-studio", "--data", tmp / "data.csv", "--data-field", "url").stdout
    tasks = json.loads(out)
    ids = alscale.select_entropy(x, 3).tolist()
    assert [t["data"] for t in tasks] == [{"alscale_id": i, "url": f"s3://b/{i}.png"} for i in ids]
    assert [t["meta"]["round"] for t in tasks] == [1, 1, 1]
    assert np.allclose([t["meta"]["entropy"] for t in tasks], alscale.entropy_scores(x)[ids])


@pytest.mark.parametrize("args, message", [
    (["query", "--logits", "missing.npy", "--budget", "3"], "--logits missing.npy: cannot be read as a .npy array"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "no-such-rule"], "unknown strategy 'no-such-rule'"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "coreset"], "strategy 'coreset' needs embeddings"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--data", "data.csv"], "--data is for --format label-studio"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--format", "label-studio", "--data", "short.csv"],
     "--data short.csv has no row for id"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "base", "--weight", "emb.npy"], "weight"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "cluster-margin", "--embeddings", "short.npy"],
     "embeddings has 499 rows but logits has 500"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "cluster-margin", "--clusters", "short.npy"],
     "clusters must be 1-D"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "cluster-margin", "--clusters", "ids.npy"],
     "clusters has 499 cluster ids but the pool has 500 rows"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "cluster-margin", "--embeddings", "emb.npy",
      "--pca", "9"], "pca must be at most the number of features (4), got 9"),
    (["query", "--logits", "logits.npy", "--budget", "3", "--strategy", "margin", "--pca", "2", "--neighbors", "3"],
     "--neighbors, --pca: not an option of the strategy 'margin'"),
    (["teach", "bad.csv"], "bad.csv line 3: id 999 is out of range"),
    (["teach", "nothing.csv"], "nothing.csv: no such file"),
])
def test_bad_input_is_one_error_line(pool, args, message):
    tmp, x, z, w = pool
    (tmp / "short.csv").write_text("id,image\n0,a\n")
    (tmp / "bad.csv").write_text("id,label\n1,1\n999,1\n")
    np.save(tmp / "short.npy", z[:-1])
    np.save(tmp / "ids.npy", np.zeros(499, np.int64))
    p = tmp / "project"
    learner = ActiveLearner(p)
    learner.teach(learner.query(x, 1, strategy="margin"), [0])  # the pool has 500 ids; no batch pending
    before = {f.name: f.read_bytes() for f in p.iterdir() if f.is_file()}
    proc = subprocess.run([sys.executable, "-m", "alscale", args[0], "--project", str(p), *args[1:]],
                          capture_output=True, text=True, cwd=tmp, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"alscale {args[0]}: error: ") and message in lines[0], proc.stderr
    assert {f.name: f.read_bytes() for f in p.iterdir() if f.is_file()} == before  # nothing recorded


def test_random_initial_batch_needs_only_the_pool_size(tmp_path):
    out = alscale_cli("query", "--project", tmp_path / "p", "--new", "--pool-size", 1000, "--strategy", "random",
                      "--budget", 10, "--seed", 4).stdout
    assert [int(r["id"]) for r in _rows(out)] == alscale.select_random(1000, 10, seed=4).tolist()
    proc = alscale_cli("query", "--project", tmp_path / "q", "--new", "--strategy", "random", "--budget", 10, ok=False)
    assert proc.returncode == 2 and "needs the pool size" in proc.stderr
    assert not (tmp_path / "q").exists()  # a failed query --new creates nothing


def test_status_of_a_missing_project_is_an_error(tmp_path):
    proc = alscale_cli("status", "--project", tmp_path / "none", ok=False)
    assert proc.returncode == 2 and f"no alscale project at {tmp_path / 'none'}" in proc.stderr
    assert not (tmp_path / "none").exists()


def test_query_reads_the_npy_files_as_memmaps(pool, monkeypatch):
    """The CLI opens the arrays with mmap_mode='r', so the selection streams over them in chunks."""
    from alscale import cli

    tmp, x, z, w = pool
    seen = []
    real = ActiveLearner.query

    def spy(self, logits, budget, **kw):
        seen.append(type(logits))
        return real(self, logits, budget, **kw)

    monkeypatch.setattr(ActiveLearner, "query", spy)
    assert cli.main(["query", "--project", str(tmp / "p"), "--new", "--logits", str(tmp / "logits.npy"), "--budget", "4",
                     "--out", str(tmp / "o.csv")]) == 0
    assert seen == [np.memmap]


@pytest.mark.parametrize("args, message", [
    (["--knn-recall", "1.5"], "argument --knn-recall: must be in (0, 1], got 1.5"),
    (["--knn-recall", "x"], "argument --knn-recall: must be a number, got 'x'"),
    (["--pca", "0"], "argument --pca: must be at least 1, got 0"),
    (["--n-clusters", "-2"], "argument --n-clusters: must be at least 1, got -2"),
    (["--neighbors", "2.5"], "argument --neighbors: must be an integer, got '2.5'"),
])
def test_bad_cluster_settings_are_refused(pool, args, message):
    tmp, x, z, w = pool
    proc = alscale_cli("query", "--project", tmp / "p", "--logits", tmp / "logits.npy", "--embeddings",
                       tmp / "emb.npy", "--strategy", "cluster-margin", "--budget", 3, *args, ok=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp / "p" / "history.json").exists()


def test_cluster_margin_settings_progress_and_cache(pool, no_torch):
    """--n-clusters/--neighbors/--knn-recall/--pca: the batch is the library's on those settings;
    each stage prints a line on stderr; the settings are stored in the project, so the next
    query reuses the cached clusters; a changed setting clusters again."""
    from alscale.cluster_margin import cluster_embeddings

    tmp, x, z, w = pool
    p = tmp / "project"
    base = ["query", "--project", p, "--logits", tmp / "logits.npy", "--embeddings", tmp / "emb.npy",
            "--strategy", "cluster-margin", "--budget", 15, "--seed", 5, "--out", tmp / "b.csv"]
    first = alscale_cli(*base, "--new", "--n-clusters", 7, "--neighbors", 4, "--knn-recall", 0.9, "--pca", 3, env=no_torch)
    labels = cluster_embeddings(z, 7, neighbors=4, recall=0.9, pca=3)
    want = alscale.select_cluster_margin(x, labels, 15, candidates=150, seed=5)
    assert [int(r["id"]) for r in _rows((tmp / "b.csv").read_text())] == want.tolist()
    err = first.stderr
    assert "alscale query: kNN graph of 500 embeddings (exact, k = 4, PCA to 3) ..." in err, err
    assert "alscale query: graph HAC into 7 clusters ..." in err and "alscale query: graph HAC: " in err
    config = json.loads((p / "project.json").read_text())
    assert config["options"] == {"n_clusters": 7, "neighbors": 4, "knn_recall": 0.9, "pca": 3}
    ActiveLearner(p).teach(want[:5], np.arange(5) % 6)
    again = alscale_cli(*base[:-2], "--pending", "query", env=no_torch)  # the stored settings: the cache
    assert "clusters reused" in again.stderr and "kNN graph" not in again.stderr, again.stderr
    lab = np.zeros(500, bool)
    lab[want[:5]] = True
    assert [int(r["id"]) for r in _rows(again.stdout)] == alscale.select_cluster_margin(
        x, labels, 15, candidates=150, exclude=lab, seed=5).tolist()
    changed = alscale_cli(*base[:-2], "--neighbors", 6, "--pending", "query", env=no_torch)
    assert "kNN graph of 500 embeddings (exact, k = 6, PCA to 3)" in changed.stderr
    assert json.loads((p / "project.json").read_text())["options"]["neighbors"] == 6


@pytest.mark.parametrize("strategy, extra", [
    ("margin", ["--bias", "bias.npy"]), ("base", []), ("mase", ["--bias", "bias.npy"]),
    ("cluster-margin", ["--multilabel", "--seed", "3", "--bias", "bias.npy"]),
])
def test_query_computes_the_logits_from_the_embeddings_and_the_head(pool, strategy, extra):
    """Without --logits, --embeddings with --weight (and --bias) give the head's logits chunk by
    chunk (alscale.logits_from_embeddings): the same batch and score columns as those logits
    written to a file and given as --logits."""
    tmp, x, z, w = pool
    bias = np.linspace(-2, 1, 6).astype(np.float32)
    np.save(tmp / "bias.npy", bias)
    head = alscale.logits_from_embeddings(z, w, bias if "--bias" in extra else None)
    np.save(tmp / "head_logits.npy", np.concatenate(list(head)))
    args = ["--strategy", strategy, "--budget", 18, "--embeddings", tmp / "emb.npy", "--weight", tmp / "weight.npy",
            *[e for e in extra if e not in ("--bias", "bias.npy")]]
    bias_args = ["--bias", tmp / "bias.npy"] if "--bias" in extra else []
    from_head = alscale_cli("query", "--project", tmp / "a", "--new", *args, *bias_args).stdout
    from_file = alscale_cli("query", "--project", tmp / "b", "--new", "--logits", tmp / "head_logits.npy",
                            *args).stdout
    got, want = _rows(from_head), _rows(from_file)
    assert len(got) == 18 and [r["id"] for r in got] == [r["id"] for r in want]
    score = next(k for k in got[0] if k != "id")
    assert np.allclose([float(r[score]) for r in got], [float(r[score]) for r in want], rtol=1e-5, atol=1e-6)
    if strategy == "margin":
        assert [int(r["id"]) for r in got] == alscale.select_margin(head, 18).tolist()
    assert json.loads((tmp / "a" / "project.json").read_text())["num_classes"] == 6


@pytest.mark.parametrize("args, message", [
    (["--logits", "logits.npy", "--bias", "bias.npy"], "--bias is for logits computed from --embeddings and --weight"),
    (["--embeddings", "emb.npy", "--bias", "bias.npy"], "--bias is for logits computed from --embeddings and --weight"),
    (["--embeddings", "emb.npy", "--weight", "weight.npy", "--bias", "short_bias.npy"], "bias must have shape (6,)"),
    (["--embeddings", "emb.npy", "--weight", "logits.npy"], "weight must have shape (classes, 4)"),
])
def test_bad_head_logits_are_one_error_line(pool, args, message):
    tmp, x, z, w = pool
    np.save(tmp / "bias.npy", np.zeros(6, np.float32))
    np.save(tmp / "short_bias.npy", np.zeros(5, np.float32))
    proc = subprocess.run([sys.executable, "-m", "alscale", "query", "--project", str(tmp / "p"), "--new",
                           "--strategy", "margin", "--budget", "3", *args], capture_output=True, text=True, cwd=tmp,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alscale query: error: ") and message in lines[0], proc.stderr
    assert not (tmp / "p").exists()
