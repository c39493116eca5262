"""``alscale`` command-line manners: --version, Ctrl-C, an --out that holds an earlier run,
--resume's settings check and elapsed time, a closed stdout pipe, and ``run --list``."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

import alscale
from alscale import strategies
from alscale.cli import main
from alscale.al.loop import ActiveLearningLoop

SMALL = ["run", "--dataset", "synthetic", "--n", "200", "--dim", "4", "--classes", "3", "--initial", "10",
         "--budget", "5", "--rounds", "2", "--seeds", "1", "--epochs", "2", "--strategies", "random,margin",
         "--no-progress"]


def _alscale(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "alscale", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"alscale {alscale.__version__}"


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_prints_the_resume_command_and_the_resumed_run_is_the_same(tmp_path, capsys, monkeypatch):
    out = tmp_path / "res"
    argv = SMALL + ["--out", str(out), "--overwrite"]
    real_round, calls = ActiveLearningLoop._round, []

    def interrupted(self, r):
        calls.append(r)
        if len(calls) == 4:  # the second run (margin), in its first round
            raise KeyboardInterrupt
        real_round(self, r)

    monkeypatch.setattr(ActiveLearningLoop, "_round", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("alscale run: interrupted; continue with: alscale run ")
    command = lines[0].split("continue with: ", 1)[1]
    words = shlex.split(command)
    assert words[-1] == "--resume" and "--overwrite" not in words
    assert words[1:-1] == [w for w in argv if w != "--overwrite"]

    monkeypatch.setattr(ActiveLearningLoop, "_round", real_round)
    assert main(words[1:]) == 0
    assert main(SMALL + ["--out", str(tmp_path / "whole")]) == 0
    resumed = json.loads((out / "results.json").read_text())["records"]
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())["records"]
    drop = ("train_seconds", "select_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in drop} for r in whole]


def _sigint_as_in_a_terminal():
    """In the child before exec: Ctrl-C's default action. A test runner started in the background
    (`cmd &` in a script) ignores SIGINT, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_exits_130_with_one_line(tmp_path):
    out = tmp_path / "res"
    long = {"--n": "5000", "--rounds": "900"}  # far more rounds than the few seconds before the signal
    args = [long.get(prev, w) for prev, w in zip([None, *SMALL], SMALL)] + ["--out", str(out)]
    proc = _alscale(*args, preexec_fn=_sigint_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "random-seed0.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].endswith(f"--out {out} --resume")


# ------------------------------------------------------------------ --out, --overwrite, --resume
def test_out_with_an_earlier_run_is_refused_or_overwritten(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(SMALL + ["--out", str(out)]) == 0
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    # Not --resume: refused, nothing touched.
    assert main(SMALL + ["--out", str(out), "--strategies", "random"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} holds an earlier run" in err and "--resume" in err and "--overwrite" in err, err
    assert (out / "results.csv").read_bytes() == before
    # Checkpoints alone (an interrupted run) count as an earlier run too.
    for name in ("results.csv", "results.json", "accuracy.png", "balance.png"):
        (out / name).unlink()
    assert main(SMALL + ["--out", str(out)]) == 2
    assert "checkpoints/" in capsys.readouterr().err
    # --overwrite: the earlier run's files go first, stale checkpoints included.
    stale = out / "checkpoints" / "badge-seed7.json"
    stale.write_text((out / "checkpoints" / "margin-seed0.json").read_text())
    (out / "checkpoints" / ".margin-seed0.json.x.tmp").write_text("{")
    (out / "notes.txt").write_text("mine")
    assert main(SMALL + ["--out", str(out), "--strategies", "random", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["random-seed0.json", "run.json"]
    assert (out / "notes.txt").read_text() == "mine"  # not a result: kept
    assert json.loads((out / "results.json").read_text())["config"]["strategies"] == ["random"]
    # An empty folder, or one without results, is fine.
    (tmp_path / "empty").mkdir()
    assert main(SMALL + ["--out", str(tmp_path / "empty"), "--strategies", "random"]) == 0


def test_resume_and_overwrite_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(SMALL + ["--out", str(tmp_path), "--resume", "--overwrite"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_out_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "f"
    path.write_text("x")
    assert main(SMALL + ["--out", str(path)]) == 2
    assert f"--out {path} is a file, not a folder" in capsys.readouterr().err


def test_resume_of_a_finished_run_keeps_its_time(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(SMALL + ["--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    state = json.loads((out / "checkpoints" / "run.json").read_text())
    assert first["seconds"] > 0
    assert first["seconds"] == pytest.approx(sum(state["seconds"].values()), abs=0)
    assert sorted(state["seconds"]) == ["margin-seed0", "random-seed0"]
    assert main(SMALL + ["--out", str(out), "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["seconds"] == first["seconds"]
    assert again["records"] == first["records"]
    # Dropping a strategy on --resume: the time of the runs reported, not of all runs.
    assert main(SMALL + ["--out", str(out), "--resume", "--strategies", "margin"]) == 0
    assert json.loads((out / "results.json").read_text())["seconds"] == state["seconds"]["margin-seed0"]


def test_refused_resume_names_the_settings_that_differ(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(SMALL + ["--out", str(out), "--strategies", "random"]) == 0
    capsys.readouterr()
    argv = SMALL + ["--out", str(out), "--strategies", "random", "--resume", "--budget", "6", "--dim", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resume: the run in" in err and "--budget 5 (now 6)" in err and "--dim 4 (now 5)" in err, err
    assert "--initial" not in err and "{" not in err, err  # only what differs, no dicts
    # More seeds (and other strategies) may be added on --resume.
    assert main(SMALL + ["--out", str(out), "--strategies", "random,margin", "--seeds", "2", "--resume"]) == 0


@pytest.mark.parametrize("content", ["{not json", "[]", '{"config": {}, "seconds": {"random-seed0": -1}}',
                                     '{"config": {}, "seconds": {"random-seed0": NaN}}'])
def test_bad_run_state_is_named(tmp_path, capsys, content):
    out = tmp_path / "res"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "run.json").write_text(content)
    assert main(SMALL + ["--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "delete it" in err and "Traceback" not in err, err


# ------------------------------------------------------------------ pipes and --list
@pytest.mark.parametrize("args,status", [(["run", "--list"], 141), (["--version"], 0)])  # argparse's own
def test_closed_stdout_pipe_is_quiet(args, status):
    proc = _alscale(*args)
    proc.stdout.close()  # the reader is gone before alscale writes (`alscale run --list | head -0`)
    with proc.stderr:
        stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert stderr == ""
    assert proc.returncode == status


def test_list_describes_every_strategy(capsys):
    assert main(["run", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == strategies.available()
    described = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert all(0 < len(d) <= 100 and d != "(no description)" for d in described.values()), described
    assert "BASE" in described["base"] and "pool" in described["cluster-margin"], described


def test_strategy_summary_rule(monkeypatch):
    """The first sentence of the class's own docstring (roles and ``literals`` unwrapped), else
    of its module's after the 'name, name:' prefix; at most 100 characters."""
    import types

    from alscale.strategies import Strategy

    def _summary(cls):
        return cls.summary()

    class WithDoc(Strategy):  # no name: not registered
        """Picks rows by :func:`alscale.select_margin` with ``k``, e.g. ten of them. More text
        here.

        Details."""

    WithDoc.name = "with-doc"
    assert _summary(WithDoc) == "Picks rows by alscale.select_margin with k, e.g. ten of them."

    class NoDoc(Strategy):
        pass

    NoDoc.name = "no-doc"
    module = types.ModuleType("fake_strategies")
    module.__doc__ = "other, no-doc: the module's summary. More."
    monkeypatch.setitem(sys.modules, "fake_strategies", module)
    NoDoc.__module__ = "fake_strategies"
    assert _summary(NoDoc) == "The module's summary."
    module.__doc__ = "other: not about no-doc."
    assert _summary(NoDoc) == "(no description)"
    WithDoc.__doc__ = "A long one " + "word " * 40 + "end."
    assert len(_summary(WithDoc)) <= 100 and _summary(WithDoc).endswith("...")


def test_results_csv_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import csv

    from alscale.al import report

    path = tmp_path / "results.csv"
    record = {"strategy": "random", "seed": 0, "round": 0, "n_labeled": 10, "test_accuracy": 0.5}
    report.write_csv(path, [record])
    before = path.read_text()
    real, rows = csv.DictWriter.writerow, []

    def interrupted(self, row):
        rows.append(row)
        if len(rows) == 3:  # the header, one record, then Ctrl-C
            raise KeyboardInterrupt
        return real(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_csv(path, [record] * 5)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
