"""Issue 22 (labelling projects a team can trust) and issue 20 item 2 (multi-label rounds): one
regression test per finding. Each failed on the code before the single-file store (commit
60fe253) and passes now: no label lost or misplaced, every documented command path working, one
error line naming the file and field."""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import alscale
from alscale.project import ActiveLearner, format_status, read_label_studio


def cli(*args, ok=True, env=None, cwd=None):
    """Runs alscale; ok=False: exit status 2 and one error line (after the progress lines of
    the work done before the error, which say nothing else)."""
    proc = subprocess.run([sys.executable, "-m", "alscale", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        lines = [line for line in proc.stderr.strip().splitlines() if ": error: " in line or not
                 re.match(r"alscale \w+: fingerprinting ", line)]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and p.name != ".lock"}


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    np.save(tmp_path / "logits.npy", x)
    (tmp_path / "pool.csv").write_text("id,image\n" + "".join(f"{i},http://img/{i}.jpg\n" for i in range(40)))
    return tmp_path, x


def _ids(text):
    return [int(r["id"]) for r in csv.DictReader(io.StringIO(text))]


# ------------------------------------------------------------------ labels misplaced or lost
def test_label_studio_csv_export_is_read_by_alscale_id(pool):
    """A Label Studio CSV export has alscale_id (pool id) and id (Label Studio's task id): the
    labels go to alscale_id. Before: teach read `id` and put every label on the wrong pool id."""
    tmp, x = pool
    p = tmp / "p"
    ids = _ids(cli("query", "--project", p, "--new", "--logits", tmp / "logits.npy", "--strategy", "margin",
                   "--budget", 4, "--classes", "cat,dog,bird").stdout)
    export = tmp / "export.csv"
    rows = [f"http://img/{i}.jpg,{i},{1000 + k},{['cat', 'dog', 'bird'][k % 3]},1,a@b.c,2026-01-01,3.5"
            for k, i in enumerate(ids)]
    rows[-1] = f"http://img/{ids[-1]}.jpg,{ids[-1]},{1000 + 3},,,,2026-01-01,"  # not annotated
    export.write_text("image,alscale_id,id,label,annotation_id,annotator,created_at,lead_time\n" + "\n".join(rows) + "\n")
    done = cli("teach", "--project", p, export)
    assert "3 new labels recorded (3 in all)" in done.stderr and "4 tasks: 1 not annotated" in done.stderr
    labels = ActiveLearner(p).labels
    assert dict(zip(labels.ids.tolist(), labels.labels.tolist())) == {ids[0]: 0, ids[1]: 1, ids[2]: 2}


def test_label_studio_json_export_is_read_by_alscale_id_and_counts_what_it_skips(tmp_path):
    tasks = [{"id": 7, "data": {"alscale_id": 3}, "annotations": [_ann("dog")]},
             {"id": 8, "data": {"alscale_id": 4}, "annotations": [_ann("cat"), _ann("cat")]},
             {"id": 9, "data": {"alscale_id": 5}, "annotations": [_ann("cat", cancelled=True)]},
             {"id": 10, "data": {"alscale_id": 6}, "annotations": []}]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    answers = read_label_studio(tmp_path / "e.json")
    assert [(i, y) for i, y, _ in answers] == [(3, "dog"), (4, "cat")]
    assert answers.counts == {"tasks": 4, "not_annotated": 1, "cancelled": 1, "several_annotations": 1}
    cli("init", "--project", tmp_path / "p", "--pool-size", 10, "--classes", "cat,dog")
    done = cli("teach", "--project", tmp_path / "p", tmp_path / "e.json")
    assert "2 new labels recorded" in done.stderr
    assert ("4 tasks: 1 not annotated, 1 skipped or cancelled (not taught), 1 with several annotations (they agree)"
            in done.stderr)


def _ann(*names, cancelled=False):
    return {"was_cancelled": cancelled, "result": [{"type": "choices", "from_name": "label", "to_name": "image",
                                                     "value": {"choices": list(names)}}]}


@pytest.mark.parametrize("name", ["project.json", "labels.csv", "clusters.npz", "."])
def test_out_inside_the_project_is_refused(pool, name):
    """Before: query --out PROJ/labels.csv replaced the project's labels with the batch."""
    tmp, x = pool
    p = tmp / "p"
    learner = ActiveLearner(p, pool_size=40, num_classes=3)
    learner.teach([1, 2], [0, 1])
    before = files(p)
    proc = cli("query", "--project", p, "--logits", tmp / "logits.npy", "--budget", 3, "--out", p / name, ok=False)
    assert "is inside the project folder" in proc.stderr
    assert files(p) == before


def _legacy(path, labels, history=None, **config):
    path.mkdir()
    settings = {"format": "alscale-project", "version": 1, "strategy": "margin", "classes": None,
                "num_classes": None, "pool_size": None, "options": {}, **config}
    (path / "project.json").write_text(json.dumps(settings))
    (path / "labels.csv").write_text(labels)
    if history is not None:
        (path / "history.json").write_text(json.dumps({"rounds": history}))


def test_a_legacy_project_opens_and_migrates_on_its_first_write(tmp_path):
    """A version-1 project (project.json + labels.csv + history.json) whose labels.csv was edited
    by hand and lost its last newline: before, the next teach appended to that line (one label
    lost, another on a wrong round). Now it is read as it is and migrated by the first write."""
    p = tmp_path / "old"
    _legacy(p, "id,label,round\n0,1,0\n5,2,1", history=[{"round": 1, "strategy": "margin", "budget": 2, "seed": 3,
                                                          "ids": [5, 6]}], pool_size=10, num_classes=3)
    old = ActiveLearner(p, create=False)
    assert old.labels.ids.tolist() == [0, 5] and old.status()["labels"] == 2  # read without writing
    assert (p / "labels.csv").exists()
    assert old.teach([6], [0]) == 1
    assert not (p / "labels.csv").exists() and not (p / "history.json").exists()
    state = json.loads((p / "project.json").read_text())
    assert state["version"] == 2 and state["labels"] == {"ids": [0, 5, 6], "labels": [1, 2, 0], "rounds": [0, 1, 1]}
    again = ActiveLearner(p)
    assert again.labels.rounds.tolist() == [0, 1, 1] and again.rounds[0].ids.tolist() == [5, 6]


@pytest.mark.parametrize("labels, message", [
    ("id,label,round\n-1,0,0\n", "labels.csv line 2: id -1 is outside the pool"),
    ("id,label,round\n3,0,0\n3,1,0\n", "labels.csv line 3: id 3 is labeled 1, but"),
    ("3,0,0\n4,1,0\n", "labels.csv line 1: the header must be id,label,round"),
    ("id,label,round\n3,7,0\n", "labels.csv line 2: label 7 is not a class (0..2)"),
    ("id,label,round\n99999999999999999999,0,0\n", "labels.csv line 2: id 99999999999999999999 is outside the pool"),
    ("id,label,round\n3,x,0\n", "labels.csv line 2: label must be an integer"),
])
def test_a_legacy_labels_csv_is_checked_line_by_line(tmp_path, labels, message):
    """Before: labels.csv was read with np.loadtxt: id -1 accepted, an id with two labels counted
    twice, a missing header dropped the first label, a label >= the classes passed."""
    _legacy(tmp_path / "p", labels, pool_size=10, num_classes=3)
    proc = cli("status", "--project", tmp_path / "p", ok=False)
    assert message in proc.stderr


def test_a_legacy_project_without_classes_gives_a_small_status(tmp_path):
    """Label 100000000 taught to an old project without classes: status counted 0..1e8 (3 GB)."""
    _legacy(tmp_path / "p", "id,label,round\n1,100000000,0\n2,3,0\n")
    status = ActiveLearner(tmp_path / "p").status()
    assert status["classes"] == ["3", "100000000"] and status["per_class"] == [1, 1]


def test_teach_with_a_huge_id_is_refused_and_the_project_stays_usable(pool):
    tmp, x = pool
    p = tmp / "p"
    cli("init", "--project", p, "--num-classes", 3)
    (tmp / "big.csv").write_text("id,label\n12345678901234567890,1\n")
    assert "does not know its pool size yet" in cli("teach", "--project", p, tmp / "big.csv", ok=False).stderr
    cli("query", "--project", p, "--logits", tmp / "logits.npy", "--budget", 2)
    assert "id 12345678901234567890 is out of range (the pool has ids 0..39)" in \
        cli("teach", "--project", p, tmp / "big.csv", ok=False).stderr
    cli("status", "--project", p)


@pytest.mark.parametrize("command", ["teach", "query"])
def test_a_refused_command_stores_no_classes(pool, command):
    """Before: a refused teach --classes cat,dgo (or query --classes) stored the classes, and every
    later command refused until project.json was edited by hand."""
    tmp, x = pool
    p = tmp / "p"
    cli("init", "--project", p, "--pool-size", 40)
    (tmp / "l.csv").write_text("id,label\n1,dog\n")
    before = files(p)
    if command == "teach":
        proc = cli("teach", "--project", p, tmp / "l.csv", "--classes", "cat,dgo,bird", ok=False)
        assert "unknown label 'dog'" in proc.stderr
    else:
        proc = cli("query", "--project", p, "--logits", tmp / "logits.npy", "--budget", 2, "--classes", "cat,dog",
                   ok=False)
        assert "logits has 3 classes but the project has 2" in proc.stderr
    assert files(p) == before
    cli("teach", "--project", p, tmp / "l.csv", "--classes", "cat,dog,bird")
    assert ActiveLearner(p).classes == ["cat", "dog", "bird"]


def test_a_query_is_one_write(tmp_path, monkeypatch):
    """Settings, round and labels go to the project in one os.replace (before: up to three files,
    so a query killed between them left settings stored without a round)."""
    x = np.random.default_rng(0).standard_normal((30, 3))
    learner = ActiveLearner(tmp_path / "p")
    replaced = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: replaced.append(os.path.basename(dst)) or real(src, dst))
    learner.query(x, 3, strategy="margin", options={"reduction": "min"})
    assert replaced == ["project.json"]
    replaced.clear()

    def killed(src, dst):
        raise KeyboardInterrupt  # killed at the write: nothing of the command is stored

    before = files(learner.path)
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        learner.query(x, 3, strategy="entropy", options={"reduction": "mean"}, pending="new")
    assert files(learner.path) == before


# ------------------------------------------------------------------ wrong or surprising behaviour
def test_a_missing_project_is_an_error_naming_its_path(pool):
    """Before: a typo in --project started a new empty project and re-issued labelled ids."""
    tmp, x = pool
    proc = cli("query", "--project", tmp / "typo", "--logits", tmp / "logits.npy", "--budget", 2, ok=False)
    assert f"no alscale project at {tmp / 'typo'}" in proc.stderr and "alscale init" in proc.stderr
    assert not (tmp / "typo").exists()
    for command in (["teach", tmp / "pool.csv"], ["status"]):
        assert f"no alscale project at {tmp / 'typo'}" in cli(command[0], "--project", tmp / "typo", *command[1:],
                                                               ok=False).stderr
    assert "classes must be distinct" in cli("init", "--project", tmp / "p", "--classes", "a,a", ok=False).stderr
    assert not (tmp / "p").exists()  # a refused init leaves nothing
    cli("init", "--project", tmp / "p", "--classes", "a,b,c")
    assert "holds an alscale project already" in cli("init", "--project", tmp / "p", ok=False).stderr
    assert "drop --new" in cli("query", "--project", tmp / "p", "--new", "--logits", tmp / "logits.npy",
                               "--budget", 2, ok=False).stderr


def test_the_strategy_and_its_options_are_remembered(tmp_path):
    """Before: after --strategy bald, the next query without --strategy ran base on (T, N, C)."""
    mc = np.random.default_rng(1).standard_normal((4, 30, 3)).astype(np.float32)
    np.save(tmp_path / "mc.npy", mc)
    p = tmp_path / "p"
    first = _ids(cli("query", "--project", p, "--new", "--logits", tmp_path / "mc.npy", "--strategy", "bald",
                     "--budget", 3).stdout)
    ActiveLearner(p).teach(first, [0, 1, 2])
    second = _ids(cli("query", "--project", p, "--logits", tmp_path / "mc.npy", "--budget", 3).stdout)
    lab = np.zeros(30, bool)
    lab[first] = True
    assert second == alscale.select_bald(mc, 3, exclude=lab).tolist()
    assert ActiveLearner(p).strategy == "bald" and [b.strategy for b in ActiveLearner(p).rounds] == ["bald", "bald"]
    x = np.random.default_rng(2).standard_normal((30, 3)).astype(np.float32)
    q = ActiveLearner(tmp_path / "q")
    q.query(x, 2, strategy="margin", options={"multilabel": False, "reduction": "min"})
    assert ActiveLearner(tmp_path / "q").config["options"] == {"reduction": "min"}


def test_a_pending_batch_is_reported_and_reissued_only_when_asked(pool):
    """Before: a second query before teaching re-issued the same batch as a new round, silently."""
    tmp, x = pool
    p = tmp / "p"
    base = ["query", "--project", p, "--logits", tmp / "logits.npy", "--strategy", "margin", "--budget", 4]
    first = _ids(cli(*base, "--new").stdout)
    ActiveLearner(p).teach(first[:1], [0])
    refused = cli(*base, ok=False)
    assert "round 1's batch is pending: 3 of its 4 ids have no label yet" in refused.stderr
    assert "pending: round 1 has 3 ids without a label" in cli("status", "--project", p).stdout
    again = cli(*base, "--pending", "reissue")
    assert _ids(again.stdout) == first[1:] and "written again" in again.stderr
    assert len(ActiveLearner(p).rounds) == 1
    new = _ids(cli(*base, "--pending", "query").stdout)
    assert len(ActiveLearner(p).rounds) == 2 and not set(new) & set(first[:1])


def test_label_studio_tasks_without_data_are_refused_unless_asked_for(pool):
    tmp, x = pool
    p = tmp / "p"
    base = ["query", "--project", p, "--new", "--logits", tmp / "logits.npy", "--budget", 2, "--format", "label-studio"]
    assert "--format label-studio needs --data" in cli(*base, ok=False).stderr
    assert not p.exists()
    tasks = json.loads(cli(*base, "--no-data").stdout)
    assert [set(t["data"]) for t in tasks] == [{"alscale_id"}] * 2


def test_relabel_corrects_a_label_and_records_the_correction(pool):
    tmp, x = pool
    p = tmp / "p"
    cli("init", "--project", p, "--pool-size", 40, "--classes", "cat,dog")
    (tmp / "a.csv").write_text("id,label\n3,cat\n4,dog\n")
    cli("teach", "--project", p, tmp / "a.csv")
    (tmp / "b.csv").write_text("id,label\n3,dog\n5,cat\n")
    refused = cli("teach", "--project", p, tmp / "b.csv", ok=False)
    assert "id 3 is labeled 'dog', but was taught 'cat' before" in refused.stderr and "--relabel" in refused.stderr
    done = cli("teach", "--project", p, tmp / "b.csv", "--relabel")
    assert "1 new label recorded, 1 corrected (3 in all)" in done.stderr
    learner = ActiveLearner(p)
    assert dict(zip(learner.labels.ids.tolist(), learner.labels.labels.tolist())) == {3: 1, 4: 1, 5: 0}
    (fix,) = learner.corrections
    assert (fix["id"], fix["from"], fix["to"], fix["round"]) == (3, 0, 1, 0)
    assert "corrections: 1 label corrected" in cli("status", "--project", p).stdout


def test_typiclust_and_probcover_from_the_command_line(tmp_path):
    """Before: probcover needed an undocumented --classes (no --num-classes or delta flag)."""
    z = np.random.default_rng(3).standard_normal((60, 5)).astype(np.float32)
    np.save(tmp_path / "emb.npy", z)
    out = cli("query", "--project", tmp_path / "p", "--new", "--embeddings", tmp_path / "emb.npy", "--strategy",
              "probcover", "--num-classes", 4, "--budget", 5, "--seed", 1).stdout
    assert _ids(out) == alscale.select_probcover(z, 5, num_classes=4, seed=1).tolist()
    out = cli("query", "--project", tmp_path / "q", "--new", "--embeddings", tmp_path / "emb.npy", "--strategy",
              "probcover", "--option", "delta=0.9", "--budget", 5, "--seed", 1).stdout
    assert _ids(out) == alscale.select_probcover(z, 5, delta=0.9, seed=1).tolist()
    assert "strategy 'probcover' needs the number of classes for its purity rule (alscale query --num-classes C" in cli(
        "query", "--project", tmp_path / "r", "--new", "--embeddings", tmp_path / "emb.npy", "--strategy",
        "probcover", "--budget", 5, ok=False).stderr


NO_FAISS = textwrap.dedent("""
    import sys
    class _Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "faiss":
                raise ImportError("No module named 'faiss' (hidden)")
            return None
    sys.meta_path.insert(0, _Hide())
""")


@pytest.mark.parametrize("extra", [["--strategy", "typiclust"], ["--strategy", "probcover", "--num-classes", "3"]])
def test_typiclust_without_faiss_is_one_line(tmp_path, extra):
    """Before: a 25-line traceback whose advice (clusters=) was for Python; ProbCover's purity rule
    runs faiss's k-means too."""
    where = tmp_path / "hide"
    where.mkdir()
    (where / "sitecustomize.py").write_text(NO_FAISS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), *sys.path])}
    np.save(tmp_path / "emb.npy", np.random.default_rng(3).standard_normal((60, 5)).astype(np.float32))
    proc = cli("query", "--project", tmp_path / "p", "--new", "--embeddings", tmp_path / "emb.npy", *extra,
               "--budget", 5, env=env, ok=False)
    assert "pip install faiss-cpu" in proc.stderr and "clusters=" not in proc.stderr
    assert not (tmp_path / "p").exists()


def test_status_json_is_strict_and_the_counts_are_plural_right(pool):
    tmp, x = pool
    p = tmp / "p"
    cli("init", "--project", p, "--pool-size", 40, "--classes", "cat,dog")
    (tmp / "a.csv").write_text("id,label\n3,cat\n")
    assert "1 new label recorded (1 in all)" in cli("teach", "--project", p, tmp / "a.csv").stderr
    out = cli("status", "--project", p, "--json").stdout
    status = json.loads(out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert status["imbalance"] is None and status["imbalance_infinite"] is True and '"inf"' not in out
    cli("query", "--project", p, "--logits", tmp / "logits.npy", "--budget", 1, "--strategy", "random",
        "--seed", 0, "--classes", "cat,dog", ok=False)  # 3 classes in the logits: refused
    table = cli("status", "--project", p).stdout
    assert "1 label of a pool of 40, 0 rounds queried" in table
    done = cli("query", "--project", p, "--strategy", "random", "--budget", 1, "--seed", 0, "--out", tmp / "one.csv")
    assert "round 1: 1 id (random) written to" in done.stderr  # before: "1 ids"
    again = cli("query", "--project", p, "--budget", 1, "--pending", "reissue")
    assert "round 1: 1 pending id written again" in again.stderr
    assert "1 label of a pool of 40, 1 round queried" in cli("status", "--project", p).stdout


def test_a_strategy_typo_suggests_the_closest_name(pool):
    tmp, x = pool
    proc = cli("query", "--project", tmp / "p", "--new", "--logits", tmp / "logits.npy", "--strategy", "margn",
               "--budget", 2, ok=False)
    assert "unknown strategy 'margn' (did you mean 'margin'?)" in proc.stderr


def test_every_strategy_says_the_same_when_every_id_is_labeled(tmp_path):
    """Before: margin, confidence, entropy, MASE and Cluster-Margin said "the pool is empty" while
    the others recorded an empty round; now every strategy a project runs says the same."""
    from alscale.strategies import available, get_class

    x = np.random.default_rng(0).standard_normal((6, 2))
    mc = np.random.default_rng(2).standard_normal((3, 6, 2))
    z = np.random.default_rng(1).standard_normal((6, 3))
    names = [n for n in available() if "labels" not in get_class(n).needs]
    assert {"margin", "random", "coreset", "base", "badge", "bald", "typiclust", "probcover", "mase"} <= set(names)
    for name in names:
        learner = ActiveLearner(tmp_path / name, pool_size=6, num_classes=2)
        learner.teach(range(6), [0, 1] * 3)
        logits = mc if "mc_samples" in get_class(name).needs else x
        with pytest.raises(ValueError, match=r"every id of the pool is labeled \(6 ids\)"):
            learner.query(logits, 2, strategy=name, embeddings=z, seed=0)
        assert learner.rounds == []


def test_query_help_names_the_mc_layout_and_the_cold_start_strategies(capsys):
    from alscale.cli import main

    with pytest.raises(SystemExit):
        main(["query", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(T, N, C)" in text and "typiclust" in text and "probcover" in text and "--num-classes" in text


def test_status_reads_under_a_shared_lock_while_a_command_runs_and_on_a_read_only_project(tmp_path, monkeypatch):
    """Before: status took the exclusive lock: it failed while another command ran and on a
    project it could not write."""
    learner = ActiveLearner(tmp_path / "p", pool_size=5, num_classes=2)
    learner.teach([1], [0])
    with learner._locked():  # another command is writing
        assert ActiveLearner(tmp_path / "p", create=False).status()["labels"] == 1
    (tmp_path / "p" / ".lock").unlink()
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    again = ActiveLearner(tmp_path / "p", create=False)
    assert again.status()["labels"] == 1 and again.labels.ids.tolist() == [1]
    with pytest.raises(ValueError, match="is read-only: this command would change it"):
        again.teach([2], [1])


DAMAGE = [  # (what is done to a good project.json, the field the one error line names)
    (lambda s: s["labels"].update(ids=[1, -1]), "field 'labels'.ids[1]: id -1 is outside the pool"),
    (lambda s: s["labels"].update(ids=[1, 2**70]), "field 'labels'.ids[1]: 1180591620717411303424 is not a 64-bit"),
    (lambda s: s["labels"].update(ids=[1, "2"]), "field 'labels'.ids[1]: must be an integer, got '2'"),
    (lambda s: s["labels"].update(ids=[1, 1]), "field 'labels'.ids[1]: id 1 appears twice"),
    (lambda s: s["labels"].update(labels=[0, 9]), "field 'labels'.labels[1]: class 9 is not a class"),
    (lambda s: s["labels"].update(rounds=[0]), "field 'labels': ids, labels and rounds differ in length"),
    (lambda s: s.update(labels=[]), "field 'labels': must be an object"),
    (lambda s: s["labels"].pop("ids"), "field 'labels'.ids: must be a list"),
    (lambda s: s.update(version="2"), "field 'version': '2' is not a project version this alscale reads"),
    # before: "project version 1, this alscale reads 1" and "logits has 100 rows but the project's pool has 100
    # ids" (a float where an integer belongs): now the field and what it holds
    (lambda s: s.update(version=1.0), "field 'version': 1.0 is not a project version this alscale reads (1, 2)"),
    (lambda s: s.update(pool_size=10.0), "field 'pool_size': must be an integer >= 0 or null, got 10.0"),
    (lambda s: s.update(num_classes=2.0), "field 'num_classes': must be an integer >= 1 or null, got 2.0"),
    (lambda s: s.update(pool_size="x"), "field 'pool_size': must be an integer >= 0 or null, got 'x'"),
    (lambda s: s.update(classes="ab"), "field 'classes': must be null or a list of distinct class names"),
    (lambda s: s.update(rounds={}), "field 'rounds': must be a list of batches"),
    (lambda s: s["rounds"][0].pop("ids"), "field 'rounds'[0]: has no field 'ids'"),
    (lambda s: s["rounds"][0].update(ids=[3, 99]), "field 'rounds'[0].ids[1]: id 99 is outside the pool"),
    (lambda s: s["rounds"][0].update(round=5), "field 'rounds'[0].round: must be 1, got 5"),
    (lambda s: s.update(format="other"), "is not an alscale project file"),
    (lambda s: s.update(multilabel="yes"), "field 'multilabel': must be true or false"),
]


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000, "project.json: not valid JSON"), ("", "project.json: not valid JSON"),
    ("[]", "is not an alscale project file"), ('{"format": "alscale-project", "version": 1, "pool_size": 5, '
                                                 '"labels": 3}', "labels.csv")])
def test_a_project_file_that_is_not_one_is_one_line(tmp_path, text, message):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.json").write_text(text)
    if "labels.csv" in message:  # a version-1 project: its labels.csv is read (here: with a bad header)
        (tmp_path / "p" / "labels.csv").write_text("ids,label,round\n1,0,0\n")
    assert message in cli("status", "--project", tmp_path / "p", ok=False).stderr
    if "not valid JSON" in message:  # the same text as a Label Studio export
        (tmp_path / "e.json").write_text(text)
        cli("init", "--project", tmp_path / "q", "--pool-size", 5, "--classes", "a,b")
        assert "not a Label Studio JSON export" in cli("teach", "--project", tmp_path / "q", tmp_path / "e.json",
                                                       ok=False).stderr


@pytest.mark.parametrize("damage, message", DAMAGE)
def test_a_damaged_project_file_is_one_line_naming_the_field(tmp_path, damage, message):
    learner = ActiveLearner(tmp_path / "p", classes=["a", "b"])
    x = np.random.default_rng(0).standard_normal((10, 2))
    learner.teach(learner.query(x, 2, strategy="margin"), [0, 1])
    state = json.loads((learner.path / "project.json").read_text())
    damage(state)
    (learner.path / "project.json").write_text(json.dumps(state))
    for command in ("status", "teach"):
        proc = cli(command, "--project", learner.path, *([tmp_path / "none.csv"] if command == "teach" else []),
                   ok=False)
        assert "project.json" in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("tasks, message", [
    ([{"id": 1, "data": {"alscale_id": 1}, "annotations": [{"result": [{"type": "choices", "value": ["cat"]}]}]}],
     "task 1 (id 1): annotations[0].result[0].value must be an object, got list"),
    ([{"id": 1, "data": {"alscale_id": 1}, "annotations": {"result": []}}], "'annotations' must be a list, got dict"),
    ([{"id": 1, "data": {"alscale_id": 1}, "annotations": [{"result": {"type": "choices"}}]}],
     "annotations[0].result must be a list, got dict"),
    ([{"id": 1, "data": {"alscale_id": 1}, "annotations": [{"result": [{"type": "choices", "value": {"choices": "cat"}}]}]}],
     "value.choices must be a list of class names"),
    ([{"id": 1, "data": []}], "a task must be an object with an object 'data'"),
])
def test_a_malformed_label_studio_export_is_one_line(tmp_path, tasks, message):
    """Before: a list value gave an AttributeError; objects where lists belong gave 0 labels, exit 0."""
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    cli("init", "--project", tmp_path / "p", "--pool-size", 5, "--classes", "cat,dog")
    assert message in cli("teach", "--project", tmp_path / "p", tmp_path / "e.json", ok=False).stderr


# ------------------------------------------------------------------ multi-label projects (issue 20, item 2)
MULTILABEL_KERNELS = "multilabel" in inspect.signature(alscale.select_margin).parameters


def test_a_multilabel_round_end_to_end(tmp_path):
    """Label, teach (CSV id,labels; Label Studio JSON and CSV exports of a Choices with
    choice="multiple"), status counts positives per class; the query with multi-label margins
    where the library has them (issue 20 item 1), else the pool's first ids."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 3)).astype(np.float32)
    np.save(tmp_path / "logits.npy", x)
    p = tmp_path / "p"
    cli("init", "--project", p, "--classes", "cat,dog,bird", "--multilabel", "--pool-size", 50)
    if MULTILABEL_KERNELS:
        out = cli("query", "--project", p, "--logits", tmp_path / "logits.npy", "--strategy", "margin", "--budget", 6,
                  "--reduction", "min").stdout
        ids = _ids(out)
        assert ids == alscale.select_margin(x, 6, multilabel=True, reduction="min").tolist()
        scores = [float(r["margin"]) for r in csv.DictReader(io.StringIO(out))]
        assert np.allclose(scores, alscale.margin_scores(x, multilabel=True, reduction="min")[ids])
    else:
        ids = _ids(cli("query", "--project", p, "--strategy", "random", "--budget", 6, "--seed", 0).stdout)
    (tmp_path / "a.csv").write_text(f"id,labels\n{ids[0]},cat;bird\n{ids[1]},\n{ids[2]},dog\n")
    assert "3 new labels recorded" in cli("teach", "--project", p, tmp_path / "a.csv").stderr
    tasks = [{"id": 50, "data": {"alscale_id": ids[3]}, "annotations": [_ann("dog", "cat")]},
             {"id": 51, "data": {"alscale_id": ids[4]}, "annotations": [{"result": []}]}]  # submitted, no class
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    assert "2 new labels recorded" in cli("teach", "--project", p, tmp_path / "e.json").stderr
    (tmp_path / "e.csv").write_text('alscale_id,id,label\n' + f'{ids[5]},52,"{{""choices"": [""bird"", ""dog""]}}"\n')
    from alscale.formats import read_label_studio_csv

    assert [(i, y) for i, y, _ in read_label_studio_csv(tmp_path / "e.csv", multilabel=True)] == [(ids[5], ("bird", "dog"))]
    cli("teach", "--project", p, tmp_path / "e.csv")
    learner = ActiveLearner(p)
    got = dict(zip(learner.labels.ids.tolist(), learner.labels.labels))
    assert got == {ids[0]: (0, 2), ids[1]: (), ids[2]: (1,), ids[3]: (0, 1), ids[4]: (), ids[5]: (1, 2)}
    status = learner.status()
    assert status["multilabel"] and status["per_class"] == [2, 3, 2] and status["no_positive"] == 2
    assert "ids with no positive class: 2" in format_status(status) and "positives" in format_status(status)
    if MULTILABEL_KERNELS:  # the next round excludes them; the stored reduction is reused
        lab = np.zeros(50, bool)
        lab[ids] = True
        again = _ids(cli("query", "--project", p, "--logits", tmp_path / "logits.npy", "--budget", 4).stdout)
        assert again == alscale.select_margin(x, 4, multilabel=True, reduction="min", exclude=lab).tolist()


def test_single_and_multi_label_are_never_mixed(tmp_path):
    x = np.random.default_rng(5).standard_normal((20, 3)).astype(np.float32)
    np.save(tmp_path / "logits.npy", x)
    single = tmp_path / "s"
    cli("init", "--project", single, "--pool-size", 20, "--classes", "a,b,c")
    (tmp_path / "multi.csv").write_text("id,labels\n1,a;b\n")
    assert "this project is single-label" in cli("teach", "--project", single, tmp_path / "multi.csv", ok=False).stderr
    (tmp_path / "one.csv").write_text("id,label\n1,a\n")
    cli("teach", "--project", single, tmp_path / "one.csv")
    proc = cli("query", "--project", single, "--logits", tmp_path / "logits.npy", "--budget", 2, "--multilabel",
               "--strategy", "margin", ok=False)
    assert "the project is single-label (1 label, 0 rounds)" in proc.stderr
    multi = tmp_path / "m"
    cli("init", "--project", multi, "--pool-size", 20, "--classes", "a,b,c", "--multilabel")
    assert "this project is multi-label" in cli("teach", "--project", multi, tmp_path / "one.csv", ok=False).stderr
    assert "reads one softmax over the classes; this project is multi-label" in cli(
        "query", "--project", multi, "--logits", tmp_path / "logits.npy", "--budget", 2, "--strategy", "base",
        ok=False).stderr
    tasks = [{"id": 1, "data": {"alscale_id": 2}, "annotations": [_ann("a", "b")]}]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    assert "several choices are for a multi-label project" in cli("teach", "--project", single, tmp_path / "e.json",
                                                                  ok=False).stderr
    learner = ActiveLearner(multi)
    with pytest.raises(ValueError, match="takes each id's classes as a list"):
        learner.teach([3], ["a"])
    assert learner.teach([3, 4], [["a", "c"], []]) == 2
    with pytest.raises(ValueError, match=r"id 3 is labeled \{'a'\}, but was taught \{'a', 'c'\} before"):
        learner.teach([3], [["a"]])
    assert learner.teach([3], [["a"]], relabel=True) == 0 and learner.corrections[0]["to"] == [0]


# ------------------------------------------------------------------ the README runs as written
def test_the_readme_labelling_commands_run_as_written(tmp_path):
    """The first bash block of the README's labelling section, command by command, in a folder
    holding the files it names (Label Studio's part played by annotating every task of tasks.json
    in its JSON export format)."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Labelling rounds: query, label, teach", 1)[1]
    block = re.search(r"^```bash\n(.*?)^```", section, flags=re.S | re.M).group(1)
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    commands = [c for c in commands if c]
    assert [c[:2] for c in commands] == [["alscale", "init"], ["alscale", "query"], ["alscale", "teach"],
                                         ["alscale", "status"]]
    rng = np.random.default_rng(7)
    np.save(tmp_path / "logits.npy", rng.standard_normal((3000, 3)).astype(np.float32))
    np.save(tmp_path / "head.npy", rng.standard_normal((3, 8)).astype(np.float32))
    (tmp_path / "pool.csv").write_text("id,image\n" + "".join(f"{i},http://img/{i}.jpg\n" for i in range(3000)))
    names = ["cat", "dog", "bird"]
    for words in commands:
        if words[1] == "teach":
            tasks = json.loads((tmp_path / "tasks.json").read_text())
            export = [{"id": 1 + k, "data": t["data"], "annotations": [_ann(names[k % 3])]} for k, t in enumerate(tasks)]
            (tmp_path / "export.json").write_text(json.dumps(export))
        proc = cli(*words[1:], cwd=tmp_path)
        if words[1] == "status":
            assert "1000 labels of a pool of 3000, 1 round queried" in proc.stdout, proc.stdout


def test_out_never_silently_replaces_an_earlier_batch(pool):
    tmp, x = pool
    p = tmp / "p"
    base = ["query", "--project", p, "--logits", tmp / "logits.npy", "--strategy", "margin", "--budget", 2,
            "--out", tmp / "batch.csv"]
    cli(*base, "--new")
    first = (tmp / "batch.csv").read_text()
    assert "exists (an earlier batch?): --overwrite replaces it" in cli(*base, "--pending", "query", ok=False).stderr
    assert (tmp / "batch.csv").read_text() == first and len(ActiveLearner(p).rounds) == 1
    cli(*base, "--pending", "reissue", "--overwrite")
    assert (tmp / "batch.csv").read_text() == first


def test_mc_strategies_on_two_dimensional_logits_are_one_line_without_python_advice(pool):
    tmp, x = pool
    proc = cli("query", "--project", tmp / "p", "--new", "--logits", tmp / "logits.npy", "--strategy", "bald",
               "--budget", 2, ok=False)
    assert "(T, N, C)" in proc.stderr and "logits[None]" not in proc.stderr


def test_batchbald_in_a_project_scores_a_bounded_candidate_set(tmp_path, monkeypatch):
    """Before: the project's batchbald scored every unlabeled row with 1,000 joint-entropy samples
    (hours at 20K rows); now it is the strategy layer's, bounded to candidates_per_pick x budget
    (10 x B by default, the loop's), and both options are --option flags."""
    import alscale.strategies.bayes as bayes

    mc = np.random.default_rng(8).standard_normal((3, 400, 4)).astype(np.float32)
    seen = []
    real = bayes.batchbald_picks  # select_batchbald's picks with each pick's gain (the CSV's column)
    monkeypatch.setattr(bayes, "batchbald_picks", lambda *a, **k: seen.append(k) or real(*a, **k))
    learner = ActiveLearner(tmp_path / "p", strategy="batchbald")
    got = learner.query(mc, 5, seed=2, options={"num_samples": 200, "candidates_per_pick": 4})
    assert seen[-1]["candidates"] == 20 and seen[-1]["num_samples"] == 200
    assert got.tolist() == alscale.select_batchbald(mc, 5, num_samples=200, candidates=20, seed=2).tolist()
    learner.query(mc, 5, seed=3, pending="new")  # the stored options
    assert seen[-1]["candidates"] == 20
    np.save(tmp_path / "mc.npy", mc)
    out = cli("query", "--project", tmp_path / "q", "--new", "--logits", tmp_path / "mc.npy", "--strategy",
              "batchbald", "--option", "num_samples=200", "--option", "candidates_per_pick=4", "--budget", 5,
              "--seed", 2)
    assert _ids(out.stdout) == got.tolist()
    assert ("alscale query: batchbald: 5 greedy picks among the 20 unlabeled rows with the largest BALD "
            "(candidates_per_pick = 4), joint entropies over up to 200 label configurations") in out.stderr


# ------------------------------------------------------------------ the batch's score columns, stdout
def _columns(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    return rows[0].keys() if rows else [], rows


@pytest.mark.parametrize("name, column, score", [
    ("bald", "bald", alscale.bald_scores), ("powerbald", "bald", alscale.bald_scores), ("power-margin", "margin", alscale.mc_margin_scores),
    ("power-entropy", "entropy", alscale.mc_entropy_scores)])
def test_mc_strategies_write_their_score_column(tmp_path, name, column, score):
    """Before: the CSV of bald, batchbald and the power strategies was `id` alone (the README
    promises id,<score>). Now each pick's BALD (or MC margin, MC entropy), as the library's."""
    mc = np.random.default_rng(9).standard_normal((4, 120, 3)).astype(np.float32)
    np.save(tmp_path / "mc.npy", mc)
    out = cli("query", "--project", tmp_path / "p", "--new", "--logits", tmp_path / "mc.npy", "--strategy", name,
              "--budget", 6, "--seed", 1).stdout
    keys, rows = _columns(out)
    assert list(keys) == ["id", column]
    ids = [int(r["id"]) for r in rows]
    np.testing.assert_allclose([float(r[column]) for r in rows], score(mc)[ids], rtol=1e-12)


def test_batchbald_writes_each_picks_gain_in_joint_information(tmp_path):
    """Before: `id` alone. Now each pick's gain in the batch's joint mutual information, as the
    library's batchbald_picks gives it (the first is its BALD; each at most the row's BALD)."""
    from alscale.bayesian import batchbald_picks

    mc = np.random.default_rng(9).standard_normal((4, 120, 3)).astype(np.float32)
    np.save(tmp_path / "mc.npy", mc)
    out = cli("query", "--project", tmp_path / "p", "--new", "--logits", tmp_path / "mc.npy", "--strategy",
              "batchbald", "--budget", 6, "--seed", 1).stdout
    keys, rows = _columns(out)
    assert list(keys) == ["id", "gain"]
    picks, gains, _ = batchbald_picks(mc, 6, candidates=60, seed=1)
    assert [int(r["id"]) for r in rows] == picks.tolist()
    np.testing.assert_allclose([float(r["gain"]) for r in rows], gains, rtol=1e-12)
    bald = alscale.bald_scores(mc)[picks]
    assert abs(gains[0] - bald[0]) < 1e-6 and (gains <= bald + 1e-6).all()


def test_base_and_typiclust_write_their_score_columns(pool, tmp_path):
    """BASE: id,distance,class (before: one column named `class`, no score); TypiClust: each
    pick's typicality in its k-means cluster (before: `id` alone). Label Studio tasks carry the
    same columns in their meta, strict JSON (a distance that is not finite is null)."""
    tmp, x = pool
    w = np.random.default_rng(1).standard_normal((3, 4))
    np.save(tmp / "w.npy", w)
    out = cli("query", "--project", tmp / "b", "--new", "--logits", tmp / "logits.npy", "--weight", tmp / "w.npy",
              "--strategy", "base", "--budget", 5).stdout
    keys, rows = _columns(out)
    assert list(keys) == ["id", "distance", "class"]
    ids, served = [int(r["id"]) for r in rows], [int(r["class"]) for r in rows]
    assert ids == alscale.select_balanced(x, 5, weight=w).tolist() and served == [0, 0, 1, 1, 2]
    import reference as ref

    np.testing.assert_allclose([float(r["distance"]) for r in rows],
                               ref.balanced_scores(x.astype(np.float64), w)[ids, served], rtol=1e-12)
    tasks = json.loads(cli("query", "--project", tmp / "b", "--logits", tmp / "logits.npy", "--weight", tmp / "w.npy",
                           "--budget", 5, "--format", "label-studio", "--no-data", "--pending", "reissue").stdout)
    assert [t["meta"]["class"] for t in tasks] == served and [t["data"]["alscale_id"] for t in tasks] == ids
    from alscale.formats import label_studio_tasks

    assert label_studio_tasks([3], scores={"distance": np.array([np.inf]), "class": np.array([1])}) == [
        {"data": {"alscale_id": 3}, "meta": {"distance": None, "class": 1}}]
    z = np.random.default_rng(3).standard_normal((60, 5)).astype(np.float32)
    np.save(tmp_path / "emb.npy", z)
    out = cli("query", "--project", tmp_path / "t", "--new", "--embeddings", tmp_path / "emb.npy", "--strategy",
              "typiclust", "--budget", 5, "--seed", 1).stdout
    keys, rows = _columns(out)
    assert list(keys) == ["id", "typicality"]
    assert [int(r["id"]) for r in rows] == alscale.select_typiclust(z, 5, seed=1).tolist()
    typicality = np.array([float(r["typicality"]) for r in rows])
    assert np.isfinite(typicality).all() and (typicality > 0).all()


def test_typicality_is_the_papers_within_the_picks_cluster():
    """TypiClust's score: 1 / the mean squared distance of the unit rows to the k' = min(k, m // 2)
    nearest others of the pick's cluster still free (labeled and earlier picks left out)."""
    from alscale.strategies import PoolView, get

    z = np.random.default_rng(5).standard_normal((80, 4))
    labeled = np.zeros(80, bool)
    labeled[:6] = True
    s = get("typiclust", neighbors=3)
    pool = PoolView(labeled=labeled, embeddings=z)
    picks = s.select(pool, 7, 2)
    got = s.scores(pool, picks)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    clusters = s._picked[1]
    free = ~labeled
    for j, i in enumerate(picks):
        rows = np.flatnonzero(free & (clusters == clusters[i]) & (np.arange(80) != i))
        kk = min(3, (rows.size + 1) // 2)
        d2 = np.sort(((unit[rows] - unit[i]) ** 2).sum(axis=1))[:kk]
        if kk:
            np.testing.assert_allclose(got[j], 1.0 / d2.mean(), rtol=1e-5)
        else:
            assert np.isnan(got[j])
        free[i] = False
    assert s.scores(pool, picks[::-1]) is None  # not this instance's picks: no score


NATIVE_CHATTER = textwrap.dedent("""
    import ctypes, os
    import alscale.coldstart as cs
    import alscale.strategies.typiclust as tc
    _real = cs.kmeans_labels
    def chatty(*a, **k):  # what faiss's k-means does with printf, and other ways to reach descriptor 1
        ctypes.CDLL(None).printf(b"WARNING clustering 60 points to 5 centroids (printf)\\n")
        os.write(1, b"raw write\\n")
        print("python print")
        return _real(*a, **k)
    cs.kmeans_labels = tc.kmeans_labels = chatty
""")


def test_native_chatter_never_reaches_the_batch_on_stdout(tmp_path):
    """Our standard output is the batch: what native code prints while the strategy runs (faiss's
    k-means warnings) goes to standard error. Before: it was mixed into the CSV."""
    where = tmp_path / "chat"
    where.mkdir()
    (where / "sitecustomize.py").write_text(NATIVE_CHATTER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), *sys.path])}
    z = np.random.default_rng(3).standard_normal((60, 5)).astype(np.float32)
    np.save(tmp_path / "emb.npy", z)
    proc = cli("query", "--project", tmp_path / "p", "--new", "--embeddings", tmp_path / "emb.npy", "--strategy",
               "typiclust", "--budget", 5, "--seed", 1, env=env)
    keys, rows = _columns(proc.stdout)
    assert proc.stdout.startswith("id,typicality\n") and len(rows) == 5, proc.stdout
    assert [int(r["id"]) for r in rows] == alscale.select_typiclust(z, 5, seed=1).tolist()
    for line in ("WARNING clustering 60 points", "raw write", "python print"):
        assert line in proc.stderr and line not in proc.stdout
