"""``alscale run``: the files it writes, the table it prints, and clear errors for bad configs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from alscale.cli import main
from alscale.al.report import CSV_COLUMNS

SMALL = ["run", "--dataset", "synthetic", "--n", "400", "--dim", "8", "--classes", "4", "--initial", "20",
         "--budget", "10", "--rounds", "2", "--seeds", "2", "--epochs", "5"]


def test_run_writes_results_plots_and_table(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(SMALL + ["--strategies", "random,base,coreset,partitioned-badge", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "alscale run" in captured.err and "100%" in captured.err  # the tqdm bar
    table = captured.out
    assert "test accuracy (%)" in table and "partitioned-badge" in table
    for n in (20, 30, 40):
        assert any(line.split()[0] == str(n) for line in table.splitlines() if line.strip())
    assert str(out / "accuracy.png") in table
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * 2 * 3
    assert {r["strategy"] for r in rows} == {"random", "base", "coreset", "partitioned-badge"}
    assert sorted({int(r["n_labeled"]) for r in rows}) == [20, 30, 40]
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["strategies"] == ["random", "base", "coreset", "partitioned-badge"]
    assert len(saved["records"]) == 24
    for png in ("accuracy.png", "balance.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_resume_reuses_checkpoints(tmp_path, capsys):
    out = tmp_path / "res"
    args = SMALL + ["--strategies", "margin", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())["records"]
    assert main(args + ["--resume"]) == 0  # everything checkpointed: nothing retrained
    second = json.loads((out / "results.json").read_text())["records"]
    assert second == first


def test_run_cluster_margin_clustering_flags(tmp_path, capsys):
    """--knn-recall and --pca reach the cluster-margin strategy (its checkpoint's options) and the
    run's settings, so that --resume with other values is refused; other strategies ignore them."""
    out = tmp_path / "res"
    args = SMALL + ["--strategies", "cluster-margin,random", "--seeds", "1", "--out", str(out), "--no-progress",
                    "--knn-recall", "0.9", "--pca", "4"]
    assert main(args) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["knn_recall"] == 0.9 and config["pca"] == 4
    ckpt = json.loads((out / "checkpoints" / "cluster-margin-seed0.json").read_text())
    assert '"knn_recall": 0.9' in json.dumps(ckpt) and '"pca": 4' in json.dumps(ckpt)
    assert '"pca"' not in (out / "checkpoints" / "random-seed0.json").read_text()
    capsys.readouterr()
    assert main(args[:-1] + ["6", "--resume"]) == 2
    assert "--pca 4 (now 6)" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--knn-recall", "0"), ("--knn-recall", "1.5"), ("--knn-recall", "x"),
                                        ("--pca", "0")])
def test_run_cluster_margin_flag_values(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(SMALL + ["--strategies", "cluster-margin", "--out", str(tmp_path), flag, value])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--strategies", "random,nope"], "unknown strategy 'nope'; available:"),
    (["--strategies", "random,random"], "repeats a name"),
    (["--budget", "500"], r"--initial \+ --budget x --rounds = 1020 labels, more than the pool's 400 rows"),
    (["--model", "cnn"], "--model cnn needs images"),
])
def test_run_bad_configs(tmp_path, capsys, extra, message):
    assert main(SMALL + ["--out", str(tmp_path), "--no-progress"] + extra) == 2
    err = capsys.readouterr().err
    assert "alscale run: error:" in err
    import re

    assert re.search(message, err), err


def test_run_missing_data_and_bad_npz(tmp_path, capsys):
    assert main(["run", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "Fashion-MNIST not found in" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((5, 2)))
    assert main(["run", "--dataset", f"npz:{bad}", "--out", str(tmp_path)]) == 2
    assert "has no array 'y'" in capsys.readouterr().err


def test_run_list(capsys):
    assert main(["run", "--list"]) == 0
    assert "partitioned-coreset" in capsys.readouterr().out.split()


@pytest.mark.parametrize("world", [2, 3])
def test_torchrun_gives_the_single_process_run(tmp_path, world):
    """`torchrun --nproc-per-node N -m alscale run`: ranks score shards, selection is global, and
    the labeled sets, records and the one set of checkpoints equal those of one process."""
    import subprocess
    import sys

    args = ["--dataset", "synthetic", "--rows", "1500", "--classes", "6", "--dim", "16",
            "--strategies", "base,mase,margin,entropy,random", "--seeds", "1", "--rounds", "2",
            "--initial", "30", "--budget", "40", "--no-progress"]
    assert main(["run", *args, "--out", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
           "-m", "alscale", "run", *args, "--out", str(tmp_path / "many")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("# test accuracy") == 1, "only rank 0 reports"
    for name in ("base", "mase", "margin", "entropy", "random"):
        one = json.loads((tmp_path / "one" / "checkpoints" / f"{name}-seed0.json").read_text())
        many = json.loads((tmp_path / "many" / "checkpoints" / f"{name}-seed0.json").read_text())
        assert many["labeled"] == one["labeled"], name
        acc = [r["test_accuracy"] for r in one["records"]]
        assert [r["test_accuracy"] for r in many["records"]] == acc, name
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
