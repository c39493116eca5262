"""Shared data for the selection benchmarks.

Size from ``ALSCALE_BENCH_SIZE``: "small" (default; N=20,000, C=100, D=64, B=500, for CI, which
runs the suite with ``--benchmark-disable`` so it only checks correctness) or "imagenet"
(N=1,281,167, C=1000, D=2048, B=10,000: 5.1 GB of fp32 logits, several minutes).
"""

from __future__ import annotations

import os

import pytest

from alscale.al import harness as bench  # the one harness's data (make_data, SIZES)

SIZE = os.environ.get("ALSCALE_BENCH_SIZE", "small")
if SIZE not in bench.SIZES:
    raise pytest.UsageError(
        f"ALSCALE_BENCH_SIZE must be one of {sorted(bench.SIZES)}, got {SIZE!r}"
    )


def pytest_report_header(config):
    s = bench.SIZES[SIZE]
    return f"alscale benchmarks: size {SIZE} (N={s.n:,} C={s.c:,} D={s.d:,} B={s.budget:,})"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["alscale_bench_size"] = SIZE


@pytest.fixture(scope="session")
def data() -> bench.BenchData:
    """The synthetic pool (logits, head weight), generated once per session."""
    return bench.make_data(SIZE, seed=0)
