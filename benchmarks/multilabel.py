"""Multi-label uncertainty (issue 20, part 1) against its floors, in one process.

logits:     N x C float32 logits in memory (default the ImageNet shape, 1,281,167 x 1000):
            one single-threaded numpy pass ``L.sum()`` (the floor) and the multi-label margin
            (mean and min) as scores and as ``select_margin(..., multilabel=True)``, interleaved
            with the floor, ``--repeats`` times each.
embeddings: N x D float32 embeddings and a C x D head (default 400,000 x 256, C = 20,000, the
            Open Images head): one chunked torch GEMM pass over ``logits_from_embeddings`` (the
            floor) and ``select_margin(logits_from_embeddings(E, W, b), B, multilabel=True)``.

Prints min and median seconds, the ratio of the medians, the load average before and after, and
the process's peak RSS (VmHWM) after each part.

    python benchmarks/multilabel.py logits [--rows 1281167] [--classes 1000] [--repeats 3]
    python benchmarks/multilabel.py embeddings [--rows 400000] [--dims 256] [--classes 20000] [--budget 100000]
    python benchmarks/multilabel.py cluster-margin [--rows 2000000] [--classes 100] [--budget 200000]

cluster-margin: Cluster-Margin's selection step (k_m = 10 B lowest-margin rows, round-robin over
            given cluster ids: 2M rows in 20,000 clusters) with the softmax margin and with the
            multi-label margin (mean and min), interleaved; the target is multi-label <= 2x single.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import alscale


def peak_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


CPU: dict[str, list[float]] = {}


def timed(fn, name: str = "") -> float:
    """Wall seconds of fn(); its CPU seconds (every thread of this process) go to CPU[name]: on
    a loaded machine they show what the run costs apart from the waiting."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t
    CPU.setdefault(name, []).append(time.process_time() - c)
    return wall


def report(name: str, times: list[float], floor: list[float] | None = None, key: str = "") -> None:
    line = f"{name:<44} min {min(times):7.3f} s  median {statistics.median(times):7.3f} s"
    if floor is not None:
        line += f"  = {statistics.median(times) / statistics.median(floor):.2f}x the baseline's median"
    if CPU.get(key or name):
        line += f"  (cpu median {statistics.median(CPU[key or name]):.3f} s)"
    print(line, flush=True)


def logits_part(a) -> None:
    rng = np.random.default_rng(0)
    L = np.empty((a.rows, a.classes), np.float32)
    step = 20_000
    for s in range(0, a.rows, step):  # generated in slices: no float64 copy of the whole array
        L[s : s + step] = rng.standard_normal((min(step, a.rows - s), a.classes), dtype=np.float32) * 3 - 2
    print(f"{a.rows:,} x {a.classes:,} float32 logits ({L.nbytes / 2**30:.2f} GiB), {alscale._core.max_threads()} "
          f"threads; {load()}", flush=True)
    runs = {"floor": []}
    jobs = {"floor": lambda: L.sum()}
    for red in ("mean", "min"):
        jobs[f"margin_scores {red}"] = lambda red=red: alscale.margin_scores(L, multilabel=True, reduction=red)
        jobs[f"select_margin {red} B={a.budget:,}"] = lambda red=red: alscale.select_margin(
            L, a.budget, multilabel=True, reduction=red)
    if a.softmax:
        jobs["softmax select_margin (single-label)"] = lambda: alscale.select_margin(L, a.budget)
    for name in jobs:
        runs.setdefault(name, [])
    for _ in range(a.repeats):  # interleaved: a drift in the machine's speed hits every job alike
        for name, fn in jobs.items():
            runs[name].append(timed(fn, name))
    report("floor: L.sum() (numpy, one thread)", runs["floor"], key="floor")
    for name in jobs:
        if name != "floor":
            report(name, runs[name], runs["floor"])
    print(f"peak RSS {peak_gib():.2f} GiB; {load()}", flush=True)


def embeddings_part(a) -> None:
    rng = np.random.default_rng(0)
    E = rng.standard_normal((a.rows, a.dims), dtype=np.float32)
    W = (rng.standard_normal((a.classes, a.dims)) / 16).astype(np.float32)
    b = np.full(a.classes, -3.0, np.float32)  # most classes absent, as in a multi-label head
    pool = alscale.logits_from_embeddings(E, W, b)
    print(f"{a.rows:,} x {a.dims} embeddings, {a.classes:,} classes (chunks of {pool.chunk_rows:,} rows), "
          f"B = {a.budget:,}; {load()}", flush=True)

    def gemm_pass():
        s = 0.0
        for chunk in pool:
            s += float(chunk[0, 0])
        return s

    runs = {"gemm": [], "mean": [], "min": []}
    for _ in range(a.repeats):
        runs["gemm"].append(timed(gemm_pass, "gemm"))
        print(f"  GEMM pass {runs['gemm'][-1]:.2f} s, peak RSS so far {peak_gib():.2f} GiB", flush=True)
        for red in ("mean", "min"):
            runs[red].append(timed(lambda: alscale.select_margin(pool, a.budget, multilabel=True, reduction=red), red))
            print(f"  select_margin {red} {runs[red][-1]:.2f} s", flush=True)
    report("floor: one chunked torch GEMM pass", runs["gemm"], key="gemm")
    for red in ("mean", "min"):
        report(f"select_margin(multilabel=True, reduction={red!r})", runs[red], runs["gemm"], key=red)
    print(f"peak RSS {peak_gib():.2f} GiB (embeddings {E.nbytes / 2**30:.2f} GiB); {load()}", flush=True)


def cluster_margin_part(a) -> None:
    rng = np.random.default_rng(0)
    L = np.empty((a.rows, a.classes), np.float32)
    step = 100_000
    for s in range(0, a.rows, step):
        L[s : s + step] = rng.standard_normal((min(step, a.rows - s), a.classes), dtype=np.float32) * 3 - 2
    clusters = rng.integers(0, 20_000, a.rows)
    print(f"{a.rows:,} x {a.classes:,} float32 logits ({L.nbytes / 2**30:.2f} GiB), 20,000 clusters, B = {a.budget:,}, "
          f"k_m = {10 * a.budget:,}; {load()}", flush=True)
    jobs = {"single-label (softmax margin)": lambda: alscale.select_cluster_margin(L, clusters, a.budget, seed=0)}
    for red in ("mean", "min"):
        jobs[f"multi-label margin, {red}"] = lambda red=red: alscale.select_cluster_margin(
            L, clusters, a.budget, seed=0, multilabel=True, reduction=red)
    runs = {name: [] for name in jobs}
    for _ in range(a.repeats):
        for name, fn in jobs.items():
            runs[name].append(timed(fn, name))
    single = runs["single-label (softmax margin)"]
    for name in jobs:
        report(name, runs[name], single)
    print(f"(ratios are to the single-label selection's median) peak RSS {peak_gib():.2f} GiB; {load()}", flush=True)


ap = argparse.ArgumentParser()
ap.add_argument("part", choices=["logits", "embeddings", "cluster-margin"])
ap.add_argument("--rows", type=int)
ap.add_argument("--classes", type=int)
ap.add_argument("--dims", type=int, default=256)
ap.add_argument("--budget", type=int)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--softmax", action="store_true", help="also time the single-label select_margin")
args = ap.parse_args()
if args.part == "logits":
    args.rows, args.classes = args.rows or 1_281_167, args.classes or 1000
    args.budget = args.budget or 10_000
    logits_part(args)
elif args.part == "cluster-margin":
    args.rows, args.classes = args.rows or 2_000_000, args.classes or 100
    args.budget = args.budget or 200_000
    cluster_margin_part(args)
else:
    args.rows, args.classes = args.rows or 400_000, args.classes or 20_000
    args.budget = args.budget or 100_000
    embeddings_part(args)
