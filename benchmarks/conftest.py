"""Shared data and measures for the pytest-benchmark suites, from the harness (alscale.al.harness).

Size from ``ALSCALE_BENCH_SIZE`` (:func:`harness.env_size`): "small" (default; N=20,000, C=100,
D=64, B=500, for CI, which runs the suite with ``--benchmark-disable`` so it only checks
correctness) or "imagenet" (N=1,281,167, C=1000, D=2048, B=10,000: 5.1 GB of fp32 logits,
several minutes). The machine info of the saved runs is the harness's (CPU, load average,
versions); each benchmark's ``extra_info`` holds its peak resident set (``peak_rss``: the
process's high-water mark, lowered to the resident set before the test's call by
:func:`harness.reset_peak_rss`, so it is this test's peak; the session's data included) and
``base_rss`` (the resident set before the test): peak - base is what the test itself took.
"""

from __future__ import annotations

import pytest

from alscale.al import harness as bench  # the one harness: data, sizes, memory, machine info

try:
    SIZE = bench.env_size()
except ValueError as err:
    raise pytest.UsageError(str(err)) from None


def pytest_report_header(config):
    s = bench.SIZES[SIZE]
    return f"alscale benchmarks: size {SIZE} (N={s.n:,} C={s.c:,} D={s.d:,} B={s.budget:,})"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["alscale_bench_size"] = SIZE
    machine_info["alscale_harness"] = bench.machine_info()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A benchmark test's peak and base resident set, in its ``extra_info`` (measured around the
    test's call: its fixtures, e.g. the session's data, are already built)."""
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    reset = benchmark is not None and bench.reset_peak_rss()
    base = bench.current_rss()
    yield
    if reset:
        benchmark.extra_info["peak_rss"] = bench.peak_rss()
        benchmark.extra_info["base_rss"] = base


@pytest.fixture(scope="session")
def data() -> bench.BenchData:
    """The synthetic pool (logits, head weight), generated once per session."""
    return bench.make_data(SIZE, seed=0)
