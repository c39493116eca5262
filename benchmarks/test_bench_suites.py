"""The benchmark harness and ``alscale bench --suite``: every suite at a tiny scale with its
correctness checks on (in this process, for speed), one suite through the CLI in child processes
(peak memory, JSON, --compare), the memory refusal, and the data generators' rules.

    pytest benchmarks/test_bench_suites.py
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

import alscale
from alscale.al import harness, suites

# Tiny scales: each suite runs in a few seconds at most (C, D and the points per cluster stay).
TINY = {"imagenet": 0.001, "openimages": 0.0002, "hac": 0.005, "knn": 0.002, "bayes": 0.001, "coldstart": 0.001}


def test_every_suite_has_a_tiny_scale():
    assert set(TINY) == set(suites.SUITES)


@pytest.mark.parametrize("name", sorted(TINY))
def test_suite_at_tiny_scale_checks_agree(name):
    suite = suites.build_suite(name, TINY[name])
    rows = harness.run_suite(suite, repeat=1, warmup=0, isolate=False, file=None, progress=False)
    assert [r["method"] for r in rows] == [c.method for c in suite.cases]
    for row, case in zip(rows, suite.cases):
        assert "error" not in row, row
        if "skipped" in row:
            # only what is documented: a missing optional module, or the multi-label keyword
            assert row["skipped"].startswith(("needs ", "select_margin has no multilabel=")), row
            continue
        assert row["repeats"] == 1 and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["peak_rss"] is None  # in-process: no memory figure (only a case's own process gives one)
        assert row["ratio_to_floor"] > 0
        if case.check is not None:
            assert row["check"]["ok"] is True, row["check"]
            assert row["ratio_to_alscale"] > 0
    roles = {r["role"] for r in rows if "median_s" in r}
    assert {"floor", "alscale"} <= roles


def test_multilabel_row_follows_select_margin_signature():
    has = "multilabel" in inspect.signature(alscale.select_margin).parameters
    suite = suites.build_suite("openimages", TINY["openimages"])
    ml = [c for c in suite.cases if "multilabel" in c.method or "sigmoid" in c.method]
    assert ml and all((c.skip is None) == has for c in ml)


def test_cli_suite_in_child_processes_json_and_compare(tmp_path, capsys):
    from alscale import cli

    out = tmp_path / "hac.json"
    assert cli.main(["bench", "--suite", "hac", "--scale", "0.003", "--repeat", "2", "--json", str(out),
                     "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "needs ~" in text and "GiB of memory" in text
    for column in ("median s", "min s", "max s", "x floor", "x alscale", "peak MiB", "check"):
        assert column in text
    payload = json.loads(out.read_text())
    assert payload["format"] == "alscale-bench/1"
    assert {"cpu", "cpu_count", "load_average", "numpy", "alscale"} <= set(payload["machine"])
    (run,) = payload["suites"]
    timed = [r for r in run["rows"] if "median_s" in r]
    assert timed and all(r["peak_rss"] >= r["base_rss"] > 0 for r in timed)
    assert all(r["repeats"] == 2 and len(r["times_s"]) == 2 for r in timed)
    checked = [r for r in run["rows"] if "check" in r]
    assert checked and all(r["check"]["ok"] is True for r in checked)
    alscale_rows = [r for r in timed if r["role"] == "alscale" and "vs_peers" in r]
    assert alscale_rows

    # --compare against a copy where every row was twice as fast: every non-floor row regresses
    old = json.loads(out.read_text())
    for r in old["suites"][0]["rows"]:
        if "median_s" in r:
            r["median_s"] /= 2
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    text, regressions = harness.compare_runs(old, payload["suites"], threshold=0.5)
    assert "REGRESSION" in text
    assert len(regressions) == sum(1 for r in timed if r["role"] != "floor")
    text, regressions = harness.compare_runs(payload, payload["suites"])
    assert not regressions and "1.00x" in text


def test_suite_that_does_not_fit_is_refused(monkeypatch, capsys):
    from alscale import cli

    monkeypatch.setattr(harness, "available_memory", lambda: 1 << 20)
    assert cli.main(["bench", "--suite", "imagenet", "--scale", "0.001", "--repeat", "1", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "needs ~" in captured.out
    assert "refused" in captured.err and "--scale" in captured.err


def test_cli_list_and_bad_arguments(capsys):
    from alscale import cli

    assert cli.main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in suites.SUITES:
        assert listed.count(f"\n{name} ") + listed.startswith(f"{name} ") == 1
    assert cli.main(["bench", "--suite", "nope"]) == 2
    assert "unknown suite" in capsys.readouterr().err
    assert cli.main(["bench", "--repeat", "2"]) == 2  # --repeat goes with --suite
    with pytest.raises(SystemExit):
        cli.main(["bench", "--suite", "hac", "--scale", "0"])


def test_compare_refuses_a_file_that_is_not_a_bench_json(tmp_path, capsys):
    from alscale import cli

    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert cli.main(["bench", "--suite", "hac", "--scale", "0.003", "--compare", str(bad)]) == 2
    assert "not an `alscale bench --json` file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- generators


def test_blobs_deterministic_whatever_the_threads_and_documented_hard_case():
    a, la = harness.blobs(40_000, 8, 50, 0.3, seed=3, threads=1)
    b, lb = harness.blobs(40_000, 8, 50, 0.3, seed=3, threads=4)
    assert a.dtype == np.float32 and a.shape == (40_000, 8) and la.shape == (40_000,)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, harness.blobs(40_000, 8, 50, 0.3, seed=4)[0])
    assert harness.HARD_BLOBS == {"dim": 64, "centres": 20_000, "noise": 0.8}
    x, labels = harness.blobs(2000, **dict(harness.HARD_BLOBS, centres=40))
    # overlapping: a point is closer to another blob's centre than noise·√dim would allow apart
    assert x.shape == (2000, 64) and labels.max() < 40
    # the noise around the centre is what was asked for
    centres = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
    spread = (x - centres[np.searchsorted(np.unique(labels), labels)]).std()
    assert 0.7 < spread < 0.9


def test_make_data_and_bench_share_one_generator():
    from alscale.al import bench

    assert bench.make_data is harness.make_data and bench.SIZES is harness.SIZES
    size = harness.BenchSize("t", n=3000, c=20, d=8, budget=10)
    a = harness.make_data(size, seed=1, threads=1)
    b = harness.make_data(size, seed=1, threads=3)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert harness.SIZES["imagenet"].scaled(0.001) == harness.BenchSize("imagenet", 1281, 1000, 2048, 10)


def test_openimages_embeddings_memmap_and_head(tmp_path):
    x, w, b = harness.openimages_embeddings(500, 16, 30, path=str(tmp_path / "x.npy"))
    assert isinstance(x, np.memmap) and x.shape == (500, 16) and x.dtype == np.float32
    assert w.shape == (30, 16) and b.shape == (30,)
    y, w2, b2 = harness.openimages_embeddings(500, 16, 30)
    np.testing.assert_array_equal(np.asarray(x), y)
    np.testing.assert_array_equal(w, w2)


def test_cnn_features_long_tailed_overlapping_non_negative_and_deterministic(tmp_path):
    x, labels, w, b = harness.cnn_features(20_000, 64, 200, 12, latent=16, path=str(tmp_path / "x.npy"))
    assert isinstance(x, np.memmap) and x.shape == (20_000, 64) and x.dtype == np.float16
    assert not x.flags.writeable and (np.asarray(x) >= 0).all() and (np.asarray(x) > 0).mean() > 0.3
    assert w.shape == (12, 64) and w.dtype == np.float32 and b.shape == (12,) and (b == -4).all()
    y, labels2, w2, _ = harness.cnn_features(20_000, 64, 200, 12, latent=16, threads=1)
    np.testing.assert_array_equal(np.asarray(x), y)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(w, w2)
    sizes = np.bincount(labels, minlength=200)
    assert sizes[:10].sum() > 5 * sizes[-10:].sum()  # long-tailed: the first blobs are far larger
    logits = np.asarray(y, dtype=np.float32) @ w.T + b
    positive = (logits > 0).sum(axis=1)
    assert 0 < positive.mean() < 12  # multi-label: some classes on, most off
    with pytest.raises(ValueError, match="positive sizes"):
        harness.cnn_features(0, 64)


def test_timer_and_memory_measure():
    calls = []
    timing, result = harness.time_call(lambda: calls.append(1) or len(calls), repeat=3, warmup=2)
    assert len(calls) == 5 and result == 5 and len(timing.times) == 3
    assert timing.min <= timing.median <= timing.max
    assert harness.peak_rss() >= (harness.current_rss() or 0) > 0
    assert harness.available_memory() > 0


def test_fashion_mnist_hook():
    from alscale.al.datasets import DEFAULT_FASHION_MNIST_DIR
    import os

    if not os.path.exists(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")):
        pytest.skip("no Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    x, y = harness.fashion_mnist(100)
    assert x.shape == (100, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (100,) and y.max() <= 9


def test_timer_stops_repeating_past_max_time():
    import time

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)

    timing, _ = harness.time_call(slow, repeat=50, warmup=1, max_time=0.12)
    assert 1 <= len(timing.times) <= 2 and len(calls) == len(timing.times) + 1
    timing, _ = harness.time_call(slow, repeat=3, warmup=0, max_time=0.001)
    assert len(timing.times) == 1  # always one timed call


def test_suite_all_skips_what_does_not_fit_and_fails_on_a_failed_check(monkeypatch, tmp_path, capsys):
    small, big = suites.build_suite("hac", 0.001), suites.build_suite("imagenet", 0.001)
    assert small.memory_needed() < big.memory_needed()
    monkeypatch.setattr(harness, "available_memory", lambda: (small.memory_needed() + big.memory_needed()) // 2)
    ran = []

    def fake_run_suite(suite, **kw):
        ran.append(suite.name)
        return [{"group": "g", "method": "m", "role": "alscale", "median_s": 1.0, "min_s": 1.0, "max_s": 1.0}]

    monkeypatch.setattr(harness, "run_suite", fake_run_suite)
    out = tmp_path / "all.json"
    assert suites.run(["imagenet", "hac"], scale=0.001, repeat=1, json_path=str(out)) == 0
    assert ran == ["hac"]
    assert "suite imagenet refused" in capsys.readouterr().err
    payload = json.loads(out.read_text())
    assert [s["suite"] for s in payload["suites"]] == ["imagenet", "hac"]
    assert "refused" in payload["suites"][0] and payload["suites"][1]["rows"]
    assert suites.run(["imagenet"], scale=0.001, repeat=1) == 2  # alone: nothing ran

    def failing(suite, **kw):
        return [{"group": "g", "method": "peer", "role": "peer", "median_s": 1.0, "min_s": 1.0, "max_s": 1.0,
                 "check": {"against": "m", "ok": False, "verdict": "2 rows differ"}}]

    monkeypatch.setattr(harness, "run_suite", failing)
    assert suites.run(["imagenet", "hac"], scale=0.001, repeat=1) == 1
    assert "FAIL: 2 rows differ" in capsys.readouterr().out


def test_cpu_times_peak_reset_shifted_gaussian_and_the_size_rule(monkeypatch):
    """time_call records each timed call's CPU seconds beside its wall time; reset_peak_rss lowers
    the high-water mark to the resident set (a peak within one process: the pytest-benchmark
    suites); gaussian's shift moves the mean and nothing else; ALSCALE_BENCH_SIZE is checked."""
    timing, _ = harness.time_call(lambda: sum(range(20000)), repeat=3, warmup=0)
    assert len(timing.cpu) == len(timing.times) == 3 and timing.cpu_median >= 0
    big = np.ones(40 * 2**20 // 8)  # 40 MiB resident
    del big
    if harness.reset_peak_rss():
        assert harness.peak_rss() < harness.current_rss() + 20 * 2**20
    x = harness.gaussian(1000, 8, seed=3, scale=2.0)
    y = harness.gaussian(1000, 8, seed=3, scale=2.0, shift=-2.0)
    np.testing.assert_array_equal(y, x + np.float32(-2.0))
    assert np.array_equal(harness.generate(harness.DataSpec.of("gaussian", n=1000, dim=8, seed=3, scale=2.0))["x"], x)
    monkeypatch.setenv("ALSCALE_BENCH_SIZE", "imagenet")
    assert harness.env_size() == "imagenet"
    monkeypatch.setenv("ALSCALE_BENCH_SIZE", "huge")
    with pytest.raises(ValueError, match="ALSCALE_BENCH_SIZE must be one of"):
        harness.env_size()


def _kernel_ratios():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("kernel_ratios.py")
    spec = importlib.util.spec_from_file_location("kernel_ratios", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kernel_ratios_script_times_each_kernel_with_its_floor(capsys):
    _kernel_ratios().main(["--scale", "0.0005", "--classes", "20", "--repeat", "2", "--only", "margin,base_w"])
    out = capsys.readouterr().out
    (floor,) = [ln for ln in out.splitlines() if ln.startswith("fp32 floor")]
    assert " min " in floor and " median " in floor and "<- the floor" in floor and "load=" in out
    for name in ("margin", "base_w"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(name)]
        assert "min/min" in line and "median/median" in line
        assert "| x 2-thread read: min/min" in line  # the read split over two threads, beside the floor
    (split,) = [ln for ln in out.splitlines() if ln.startswith("2-thread read")]
    assert "<- the read on more threads" in split
    _kernel_ratios().main(["--scale", "0.0005", "--classes", "20", "--repeat", "1", "--only", "margin",
                           "--read-threads", "1"])
    assert "thread read" not in capsys.readouterr().out


def test_kernel_ratios_script_refuses_an_unknown_kernel():
    with pytest.raises(SystemExit, match="unknown kernel"):
        _kernel_ratios().main(["--scale", "0.0005", "--only", "margin,nope"])
    with pytest.raises(SystemExit, match="read-threads"):
        _kernel_ratios().main(["--scale", "0.0005", "--only", "margin", "--read-threads", "0"])


def test_knn_compare_ranks_budget_spills_the_same_graph():
    """knn_compare's --ranks-budget: a small budget spills the lists' ranks (recorded in the row),
    ``inf`` holds them at once; the same graph (recall and parameters) either way, and the
    library's budget is restored after the run."""
    pytest.importorskip("faiss")
    import sys
    from pathlib import Path

    from alscale import knn

    sys.path.insert(0, str(Path(__file__).parent))
    import knn_compare

    kept = knn._ranks_budget
    small = knn_compare.one("overlap", "lists", 3000, 5, 0.9, ranks_budget="4096")
    whole = knn_compare.one("overlap", "lists", 3000, 5, 0.9, ranks_budget="inf")
    assert knn._ranks_budget is kept
    assert small["ranks_spilled"]["files"] > 1 and "ranks_spilled" not in whole
    assert small["recall"] == whole["recall"] >= 0.9 and small["param"] == whole["param"]
    assert small["peak_rss_gib"] > 0 and small["rank_s"] > 0


def test_knn_rank_script_times_both_builds_and_compares_their_ranks(capsys):
    pytest.importorskip("faiss")
    import sys
    from pathlib import Path

    import alscale as pkg

    sys.path.insert(0, str(Path(__file__).parent))
    import knn_rank

    here = str(Path(pkg.__file__).parent.parent)
    knn_rank.main(["--n", "6000", "--queries", "500", "--probes", "1,7", "--repeat", "2", "--rounds", "1",
                   "--against", here])
    out = capsys.readouterr().out
    assert "500 queries x " in out and "one thread; load" in out
    for name in ("this", "against"):
        for probes in (1, 7):
            (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{name:8s} probes {probes:4d}:")]
            assert " min " in line and " median " in line
            assert line.endswith("same ranks: True") == (name == "this")


def test_base_builds_script_interleaves_two_builds_and_checks_their_picks(capsys):
    import sys
    from pathlib import Path

    import alscale as pkg

    sys.path.insert(0, str(Path(__file__).parent))
    import base_builds

    here = str(Path(pkg.__file__).parent.parent)
    base_builds.main(["--old", here, "--new", here, "--rows", "3000", "--classes", "40", "--budgets", "30,1500",
                      "--repeat", "2"])
    out = capsys.readouterr().out
    for budget in ("30", "1,500"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"B={budget}: floor ")]
        assert "old " in line and "new " in line and "the floor" in line and "new/old cpu: min" in line
        assert "picks identical" in line  # the same build twice
    assert "peak RSS: old worker" in out


def test_base_builds_script_times_the_other_kernels_too(capsys):
    import sys
    from pathlib import Path

    import alscale as pkg

    sys.path.insert(0, str(Path(__file__).parent))
    import base_builds

    here = str(Path(pkg.__file__).parent.parent)
    kernels = ["margin", "confidence", "entropy", "mase_w", "base_w", "base"]
    base_builds.main(["--old", here, "--new", here, "--rows", "2000", "--classes", "24", "--budgets", "20",
                      "--repeat", "2", "--kernels", ",".join(kernels)])
    out = capsys.readouterr().out
    for kernel in kernels:
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{kernel} B=20: floor ")]
        assert "picks identical" in line and "new/old wall: min" in line
    with pytest.raises(SystemExit, match="unknown kernel"):
        base_builds.main(["--old", here, "--new", here, "--kernels", "margin,nope"])


def test_openimages_rows_at_seconds_per_call_are_timed_fewer_times():
    """From N = 100K on (scale 0.02 is 180K rows) the floor and alscale's rows run 3 times, each
    peer once, none after a warm-up call; tiny scales keep the command's repeat and warm-up."""
    big = suites.build_suite("openimages", 0.02)
    for case in big.cases:
        want = (1, 0) if case.role == "peer" else (3, 0)
        assert (case.repeat, case.warmup) == want, case.method
    assert any("timed 3 times, each peer once" in note for note in big.notes)
    tiny = suites.build_suite("openimages", TINY["openimages"])
    assert all(c.repeat is None and c.warmup == 1 for c in tiny.cases)
    assert not any("timed 3 times" in note for note in tiny.notes)


@pytest.mark.parametrize("rule", ["margin", "confidence", "entropy", "multilabel"])
@pytest.mark.parametrize("head", [False, True])
def test_torch_peer_reuses_its_buffers_and_leaves_the_input_alone(monkeypatch, rule, head):
    import torch

    monkeypatch.setattr(suites, "_CHUNK_BYTES", 4 * 7 * 23)  # 23 rows a chunk: 5 chunks, the last short
    rng = np.random.default_rng(0)
    z = rng.standard_normal((100, 5)).astype(np.float32)
    w = rng.standard_normal((7, 5)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    x = z if head else (z @ w.T + bias).astype(np.float32)
    before = x.copy()
    kw = {"weight": w, "bias": bias} if head else {}
    got = suites.torch_select(x, 30, "margin" if rule == "multilabel" else rule, multilabel=rule == "multilabel", **kw)
    np.testing.assert_array_equal(x, before)  # never written, even by the in-place multi-label path
    logits = torch.from_numpy(z @ w.T + bias if head else before)
    p = torch.softmax(logits, dim=1)
    if rule == "multilabel":
        s = torch.tanh(logits / 2).abs().mean(dim=1)
    elif rule == "margin":
        top = p.topk(2, dim=1).values
        s = top[:, 0] - top[:, 1]
    elif rule == "confidence":
        s = p.max(dim=1).values
    else:
        s = torch.special.entr(p).sum(dim=1)
    want = torch.topk(s, 30, largest=rule == "entropy", sorted=True).indices
    np.testing.assert_array_equal(np.sort(got.numpy()), np.sort(want.numpy()))


def test_numpy_cluster_margin_margins_over_reused_chunks(monkeypatch):
    monkeypatch.setattr(suites, "_CHUNK_BYTES", 4 * 6 * 17)  # 17 rows a chunk, the last short
    rng = np.random.default_rng(1)
    z = rng.standard_normal((120, 4)).astype(np.float32)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    clusters = rng.integers(0, 9, 120)
    lg = z @ w.T + bias
    p = np.exp(lg - lg.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.partition(p, 4, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    for budget in (1, 5, 12):
        want = suites.round_robin(np.argsort(margins, kind="stable")[: 10 * budget], clusters, budget, 3)
        got = suites.numpy_cluster_margin(z, w, bias, clusters, budget, seed=3)
        assert np.bincount(clusters[got], minlength=9).tolist() == np.bincount(clusters[want], minlength=9).tolist()
        assert set(got.tolist()) <= set(np.argsort(margins, kind="stable")[: 10 * budget + 2].tolist())
