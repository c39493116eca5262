"""Multi-label margin (``multilabel=True``) against its floor and a plain numpy baseline, in one
pytest-benchmark group: the floor (``logits.sum()``), alscale's fused kernel with "mean" and
"min", and numpy's ``|tanh(z/2)|`` reduced over the classes then ``argsort`` (an N × C float32
temporary). Each test checks its result, so CI (``--benchmark-disable``) keeps them right.

On the harness: the data is conftest's (``harness.make_data``), each test's peak memory is in its
``extra_info`` (conftest), and the numpy baseline and its check are benchmarks/multilabel.py's,
which runs the same rows through the harness in child processes
(``python benchmarks/multilabel.py logits --numpy``); that script runs at a tiny size below.

    pytest benchmarks/test_bench_multilabel.py --benchmark-enable
    ALSCALE_BENCH_SIZE=imagenet pytest benchmarks/test_bench_multilabel.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest

import alscale
from multilabel import numpy_select, swapped_beyond_the_cut


@pytest.mark.benchmark(group="multilabel-margin")
def test_multilabel_floor(benchmark, data):
    assert np.isfinite(benchmark(data.logits.sum))


@pytest.mark.benchmark(group="multilabel-margin")
@pytest.mark.parametrize("reduction", ["mean", "min"])
def test_multilabel_alscale(benchmark, data, reduction):
    idx = benchmark(lambda: alscale.select_margin(data.logits, data.budget, multilabel=True, reduction=reduction))
    idx = np.asarray(idx)
    assert idx.shape == (min(data.budget, data.size.n),) and np.unique(idx).size == idx.size
    scores = np.asarray(alscale.margin_scores(data.logits, multilabel=True, reduction=reduction))
    picked = scores[idx]
    assert np.all(np.diff(picked) >= 0)
    rest = np.ones(data.size.n, dtype=bool)
    rest[idx] = False
    assert picked.max() <= scores[rest].min()


@pytest.mark.benchmark(group="multilabel-margin")
@pytest.mark.parametrize("reduction", ["mean", "min"])
def test_multilabel_numpy_tanh(benchmark, data, reduction):
    ref = benchmark.pedantic(lambda: numpy_select(data.logits, data.budget, reduction), rounds=3, iterations=1)
    ours = np.asarray(alscale.select_margin(data.logits, data.budget, multilabel=True, reduction=reduction))
    # numpy's float32 tanh and mean round differently: only rows tied with the cut may swap
    assert swapped_beyond_the_cut(data.logits, ours, ref, reduction).size == 0


@pytest.mark.parametrize("part", ["logits", "embeddings", "cluster-margin"])
def test_multilabel_script_on_the_harness(part, tmp_path, capsys):
    """benchmarks/multilabel.py at a tiny size: every row runs in its own process and has its
    times (min <= median <= max), CPU seconds and peak memory; the numpy rows' checks pass."""
    import json

    import multilabel

    if part == "embeddings":
        pytest.importorskip("torch")
    out = tmp_path / "run.json"
    argv = [part, "--rows", "3000", "--classes", "40", "--budget", "50", "--repeats", "2", "--json", str(out)]
    assert multilabel.main(argv + (["--numpy", "--softmax"] if part == "logits" else [])) == 0
    text = capsys.readouterr().out
    assert "load average" in text and "peak MiB" in text and "cpu s" in text
    rows = json.loads(out.read_text())["suites"][0]["rows"]
    assert rows and all("error" not in r and "skipped" not in r for r in rows), rows
    for r in rows:
        assert r["repeats"] == 2 and r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["peak_rss"] >= r["base_rss"] > 0 and r["cpu_median_s"] >= 0
    checks = [r["check"] for r in rows if "check" in r]
    assert len(checks) == (2 if part == "logits" else 0) and all(c["ok"] for c in checks), checks
