"""num_threads is capped at the cores in C++ (csrc/common.hpp thread_count): num_threads=4096 must
neither start 4096 OpenMP threads (the process could die without a Python exception) nor change
any kernel's result."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import alscale
from alscale import _core

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_max_threads_at_most_the_cores():
    assert 1 <= _core.max_threads() <= CORES <= os.cpu_count()


def test_omp_num_threads_above_the_cores_is_capped():
    # OMP_NUM_THREADS sets OpenMP's default (num_threads=0); it cannot go above the cores either.
    env = dict(os.environ, OMP_NUM_THREADS=str(4 * CORES + 3))
    code = "from alscale import _core; print(_core.max_threads())"
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert 1 <= int(out.stdout) <= CORES


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)")
def test_num_threads_4096_starts_at_most_the_cores():
    # OpenMP keeps its threads after a parallel region, so they can be counted afterwards.
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    before = len(os.listdir("/proc/self/task"))
    alscale.knn_graph(x, 3, num_threads=4096)
    alscale.hac_average(x, n_clusters=4, num_threads=4096)
    started = len(os.listdir("/proc/self/task")) - before
    assert started <= CORES, f"{started} threads started for num_threads=4096 on {CORES} cores"


def _kernels():
    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(3000, 13)) * 3).astype(np.float32)
    logits[::5] = np.round(logits[::5])  # ties
    weight = rng.normal(size=(13, 6))
    pts = rng.normal(size=(400, 12)).astype(np.float32)
    pts[::9] = np.round(pts[::9])
    exclude = np.zeros(len(logits), dtype=bool)
    exclude[::11] = True
    labeled = np.zeros(len(pts), dtype=bool)
    labeled[:15] = True
    return {
        "margin_scores": lambda t: alscale.margin_scores(logits, num_threads=t),
        "entropy_scores": lambda t: alscale.entropy_scores(logits, num_threads=t),
        "boundary_scores": lambda t: alscale.boundary_scores(logits, weight=weight, num_threads=t),
        "select_margin": lambda t: alscale.select_margin(logits, 300, exclude=exclude, num_threads=t),
        "select_balanced": lambda t: alscale.select_balanced(logits, 300, weight=weight, exclude=exclude,
                                                             num_threads=t),
        "knn_graph": lambda t: np.concatenate([a.ravel().astype(np.float64) for a in alscale.knn_graph(pts, 5, num_threads=t)]),
        "hac_exact": lambda t: alscale.hac_average(pts, n_clusters=9, num_threads=t).linkage,
        "hac_graph": lambda t: alscale.hac_average(pts, n_clusters=9, neighbors=6, num_threads=t).linkage,
        "coreset": lambda t: alscale.select_coreset(pts, 20, labeled=labeled, num_threads=t),
        "badge": lambda t: alscale.select_badge(logits[:400], pts, 20, exclude=labeled, seed=2, num_threads=t),
    }


@pytest.mark.parametrize("name", sorted(_kernels()))
def test_num_threads_4096_gives_the_one_thread_result(name):
    run = _kernels()[name]
    one, many = np.asarray(run(1)), np.asarray(run(4096))
    assert one.dtype == many.dtype and one.shape == many.shape
    assert one.tobytes() == many.tobytes(), name  # the same bits
