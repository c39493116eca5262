"""Selection kernels against their baselines, one pytest-benchmark group per method.

Each group holds the floor (``logits.sum()``, one numpy pass over the same array), alscale's
kernel and the baseline the papers use, so ``--benchmark-compare``/the table reads as ratios.
Every test also checks the result, so CI (``--benchmark-disable``, small size) keeps them right.

On the harness (alscale.al.harness): the data is conftest's ``harness.make_data`` at
``harness.env_size()``, each test's peak memory is in its ``extra_info`` (conftest), the machine
info is the harness's; the official rules (``alscale.al.bench``) are the peers of ``alscale bench
--suite imagenet``, which times the same groups in child processes.

    pytest benchmarks                                            # small, checks only
    pytest benchmarks --benchmark-enable                         # small, timed
    ALSCALE_BENCH_SIZE=imagenet pytest benchmarks --benchmark-enable   # the paper's scale
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import alscale
from alscale.al import bench, harness

FULL_SCALE = harness.env_size() == "imagenet"  # the size rule of conftest.py (which refuses a bad value)

# Relative distance between two BASE scores below which a disagreement is a float tie.
TIE_RTOL = 1e-12
# |numpy float32 margin - alscale margin| allowed; rows this close to the budget's cut may swap.
MARGIN_ATOL = 1e-6


def timed(benchmark, fn, *, full_scale_rounds=None):
    """benchmark(fn), or one/few pedantic rounds for slow baselines at ImageNet scale."""
    if FULL_SCALE and full_scale_rounds is not None:
        return benchmark.pedantic(fn, rounds=full_scale_rounds, iterations=1, warmup_rounds=0)
    return benchmark(fn)


def check_indices(idx, n, budget):
    idx = np.asarray(idx)
    assert idx.dtype == np.int64
    assert idx.shape == (min(budget, n),)
    assert np.unique(idx).size == idx.size, "duplicate rows selected"
    assert idx.size == 0 or (idx.min() >= 0 and idx.max() < n)
    return idx


def floor(benchmark, data):
    total = timed(benchmark, data.logits.sum)
    assert np.isfinite(total)


# ---------------------------------------------------------------------------------- BASE


@pytest.fixture(scope="session")
def official_base_small(data):
    """The official rule's selection, where it is cheap to compute outside its benchmark."""
    if FULL_SCALE:
        return None
    return bench.official_base(data.logits, data.budget, weight=data.weight)


@pytest.mark.benchmark(group="balanced")
def test_balanced_floor(benchmark, data):
    floor(benchmark, data)


@pytest.mark.benchmark(group="balanced")
def test_balanced_alscale(benchmark, data, official_base_small):
    idx = timed(
        benchmark, lambda: alscale.select_balanced(data.logits, data.budget, weight=data.weight)
    )
    check_indices(idx, data.size.n, data.budget)
    if official_base_small is not None:
        np.testing.assert_array_equal(idx, official_base_small)


@pytest.mark.benchmark(group="balanced")
def test_balanced_official_torch_loop(benchmark, data):
    ref = timed(
        benchmark,
        lambda: bench.official_base(data.logits, data.budget, weight=data.weight),
        full_scale_rounds=1,
    )
    check_indices(ref, data.size.n, data.budget)
    ours = alscale.select_balanced(data.logits, data.budget, weight=data.weight)
    same, verdict = bench.compare_selections(
        ours, ref, logits=data.logits, weight=data.weight, budget=data.budget
    )
    benchmark.extra_info["matches_alscale"] = verdict
    if FULL_SCALE:
        # At full scale a float tie (two rows' scores equal to ~1e-16) may be broken
        # differently by a different summation order of W Wᵀ; anything else is a bug.
        assert same or "a float tie" in verdict, verdict
    else:
        assert same, verdict


def test_balanced_official_rule_unweighted_and_clipped(data):
    """weight=None (plain logit gap) and a budget beyond the pool, on a slice of the data."""
    logits = data.logits[:997]
    for budget in (0, 1, data.size.c + 3, 2000):
        ours = alscale.select_balanced(logits, budget)
        ref = bench.official_base(logits, budget)
        check_indices(ours, logits.shape[0], budget)
        same, verdict = bench.compare_selections(ours, ref, logits=logits, budget=budget)
        assert same, f"budget {budget}: {verdict}"


# ---------------------------------------------------------------------------------- MASE


@pytest.mark.benchmark(group="boundary")
def test_boundary_floor(benchmark, data):
    floor(benchmark, data)


@pytest.mark.benchmark(group="boundary")
def test_boundary_alscale(benchmark, data):
    idx = timed(
        benchmark, lambda: alscale.select_boundary(data.logits, data.budget, weight=data.weight)
    )
    check_indices(idx, data.size.n, data.budget)


@pytest.mark.benchmark(group="boundary")
def test_boundary_official_torch_sort(benchmark, data):
    ref = timed(
        benchmark,
        lambda: bench.official_boundary(data.logits, data.budget, weight=data.weight),
        full_scale_rounds=1,
    )
    check_indices(ref, data.size.n, data.budget)
    ours = alscale.select_boundary(data.logits, data.budget, weight=data.weight)
    np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------------- margin


@pytest.mark.benchmark(group="margin")
def test_margin_floor(benchmark, data):
    floor(benchmark, data)


@pytest.mark.benchmark(group="margin")
def test_margin_alscale(benchmark, data):
    idx = timed(benchmark, lambda: alscale.select_margin(data.logits, data.budget))
    check_indices(idx, data.size.n, data.budget)
    if FULL_SCALE:
        return
    # The selection is the budget smallest of alscale's own scores, in ascending order...
    scores = np.asarray(alscale.margin_scores(data.logits))
    assert scores.shape == (data.size.n,)
    picked = scores[idx]
    assert np.all(np.diff(picked) >= 0)
    rest = np.ones(data.size.n, dtype=bool)
    rest[idx] = False
    assert picked.max() <= scores[rest].min()
    # ...and those scores are the softmax margins.
    np.testing.assert_allclose(
        scores, bench.numpy_margin_scores(data.logits), rtol=0, atol=MARGIN_ATOL
    )


@pytest.mark.benchmark(group="margin")
def test_margin_numpy_softmax_argpartition(benchmark, data):
    ref = timed(
        benchmark,
        lambda: bench.numpy_select_margin(data.logits, data.budget),
        full_scale_rounds=3,
    )
    check_indices(ref, data.size.n, data.budget)
    ours = np.asarray(alscale.select_margin(data.logits, data.budget))
    swapped = np.setxor1d(ours, ref)
    if swapped.size:
        # float32 softmax rounding may swap rows whose margins tie at the budget's cut, no other.
        scores = bench.numpy_margin_scores(data.logits)
        cut = np.sort(scores[ref])[-1]
        assert np.all(np.abs(scores[swapped] - cut) <= MARGIN_ATOL), (
            f"{swapped.size} rows differ, not only near-ties at the cut {cut}"
        )
    benchmark.extra_info["same_set_as_alscale"] = not swapped.size


# ---------------------------------------------------------------------------------- CLI


@pytest.mark.skipif(FULL_SCALE, reason="the CLI at ImageNet scale is run by hand")
def test_cli_bench_small(capsys, tmp_path):
    from alscale import cli

    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--size", "small", "--repeats", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for method in (
        "alscale.select_balanced",
        "official BASE rule (torch loop)",
        "alscale.select_margin",
    ):
        assert method in text
    payload = json.loads(out.read_text())
    assert payload["size"]["name"] == "small"
    assert all(row.get("match", True) for row in payload["rows"]), payload["rows"]


# ---------------------------------------------------------------------------------- the bench module


def test_official_rules_agree_on_a_head_with_near_identical_rows():
    """Two head rows 1e-7 apart: a Gram-matrix norm ||w_0 - w_1||² = G00 + G11 - 2 G01 loses
    most of its digits. The bench once computed its own such inverse norms and reported 'a real
    disagreement' with alscale here; it now uses the library's, so the rules must agree."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 16))
    weight[1] = weight[0] + 1e-7 * rng.standard_normal(16)
    weight[3] = weight[2] * (1 + 1e-9)
    logits = (rng.standard_normal((3000, 16)) @ weight.T).astype(np.float32)
    for budget in (30, 1200):
        ours = alscale.select_balanced(logits, budget, weight=weight)
        same, verdict = bench.compare_selections(
            ours, bench.official_base(logits, budget, weight=weight),
            logits=logits, weight=weight, budget=budget,
        )
        assert same, f"budget {budget}: {verdict}"
        np.testing.assert_array_equal(
            alscale.select_boundary(logits, budget, weight=weight),
            bench.official_boundary(logits, budget, weight=weight),
        )


def test_bench_uses_the_library_and_no_absolute_import_of_alscale():
    import ast
    import inspect

    from alscale._backend import arrays

    tree = ast.parse(inspect.getsource(bench))
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "inverse_norms" not in own  # no copy of the library's helper
    absolute = [
        ast.unparse(node) for node in ast.walk(tree)
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "alscale" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "alscale")
    ]
    assert not absolute, absolute  # the package imports itself relatively
    weight = np.random.default_rng(1).standard_normal((5, 3))
    np.testing.assert_array_equal(bench._inverse_norms(weight, 5).numpy(), arrays.inverse_norms(weight, 5))
    plain = bench._inverse_norms(None, 3).numpy()
    assert np.array_equal(plain, np.where(np.eye(3, dtype=bool), np.inf, 1.0))
    assert bench.machine_info()["alscale"] == alscale.__version__
