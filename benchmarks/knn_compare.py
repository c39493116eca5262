"""kNN graphs at a promised recall: alscale's cell scan against faiss's own indexes.

    python benchmarks/knn_compare.py --all [--n 200000 --repeats 3]   # every data set x method
    python benchmarks/knn_compare.py --data overlap --method ivf       # one, in this process

Every method builds the cosine 10-NN graph of the same unit rows through ``alscale.knn._knn``
(what ``knn_graph`` runs after normalising), asked for recall@10 = 0.95: the cell scan
("cells": two-level k-means cells, its own nprobe ladder; below the target it hands over to
"lists", so its own graph is reported beside what the promise then costs), faiss IndexIVFFlat
("ivf": N/64 lists, nprobe tuned on 1,000 sampled points), alscale's inverted file searched
GEMM-shaped ("lists": lists of 32 to 1,024 points, every point ranking every centroid exactly, the
lists' points scanned list by list in tiles; list size and nprobe tuned exactly on 1,000 sampled
points), faiss IndexHNSWFlat ("hnsw": M = 32,
efConstruction 40, efSearch tuned likewise), faiss IndexNNDescentFlat ("nndescent": graph
degree 1.6 k, 10 iterations, widened up a ladder when measured below the target), the default ("faiss": "lists" where its dearest
ranking N·(N/64)·D is at most 5·10¹¹ multiply-adds, else the cell scan handing over to "lists"
where its own estimate misses the target) and the exact blocked brute force ("exact"). Recall is
measured on 1,000 other sampled points against their exact neighbours (alscale's own measurement,
the figure the graph carries). Each (data, method) runs ``--repeats`` times in a fresh process;
the repeats are interleaved over the methods; the table gives min and median wall time, the recall, the parameter chosen, and the process's
peak RSS while building the graph (VmHWM, reset after loading the data: Linux clear_refs; else
ru_maxrss) beside the RSS after loading the data; the load average is read before and
after each run (shared 2-core machine).

Data: "separated" (64-d Gaussian blobs, N/100 centres, noise 0.15), "overlap" (64-d, N/100
centres, noise 0.8: heavily overlapping), "fmnist" (Fashion-MNIST train + test pixels, 70,000 x
784, from /usr/share/datasets/fashion-mnist: apt-get install dataset-fashion-mnist),
"fmnist-pca64" (the same, reduced by knn_graph's uncentred PCA to 64 dimensions) and "cnn-pca64"
(the first ``--n`` rows of ``--features``, an .npy of CNN-like features such as
benchmarks/cm_openimages.py makes, through the same PCA to 64; cached beside it).

``--ranks-budget`` sets the bytes of ranked lists "lists" holds at once (default: the library's,
the graph's size; ``inf``: all at once, as before the spill), to measure what the bound costs
and saves on the same data: the row records ``ranks_spilled`` and the ranking's seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from alscale.al import harness

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DATA = ("separated", "overlap", "fmnist", "fmnist-pca64", "cnn-pca64")
METHODS = ("faiss", "cells", "ivf", "lists", "hnsw", "nndescent", "exact")
FMNIST = "/usr/share/datasets/fashion-mnist"


GIB = 2**30


def fashion_mnist() -> np.ndarray:
    parts = []
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        with gzip.open(os.path.join(FMNIST, name)) as f:
            raw = f.read()
        n = int.from_bytes(raw[4:8], "big")
        parts.append(np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784))
    return np.concatenate(parts).astype(np.float32)


def unit_points(data: str, n: int, features: str | None = None) -> np.ndarray:
    from alscale import knn

    if data == "cnn-pca64":
        if not features:
            raise SystemExit("cnn-pca64 needs --features PATH.npy")
        cache = f"{features}.pca64-{n}.npy"
        if not os.path.exists(cache):
            np.save(cache + ".tmp.npy", knn._pca_unit(np.load(features, mmap_mode="r")[:n], 64))
            os.replace(cache + ".tmp.npy", cache)
        return np.load(cache)
    if data in ("separated", "overlap"):
        from cm_9m import blobs

        x, _ = blobs(n, 64, max(1, n // 100), 0.15 if data == "separated" else 0.8)
        return knn._unit_points(x)
    x = fashion_mnist()
    x = x[np.abs(x).max(axis=1) > 0]
    return knn._pca_unit(x, 64) if data == "fmnist-pca64" else knn._unit_points(x)


def one(data: str, method: str, n: int, k: int, recall: float, features: str | None = None,
        ranks_budget: str | None = None) -> dict:
    """Builds the graph once in this process; returns its row."""
    from alscale import knn

    kept = knn._ranks_budget
    if ranks_budget:
        budget = float(ranks_budget)
        knn._ranks_budget = lambda n, k: budget
    try:
        return _built(knn, data, method, n, k, recall, features, ranks_budget)
    finally:
        knn._ranks_budget = kept


def _built(knn, data, method, n, k, recall, features, ranks_budget) -> dict:
    u = unit_points(data, n, features)
    import gc

    gc.collect()
    base = (harness.current_rss() or 0) / GIB
    harness.reset_peak_rss()
    load = os.getloadavg()[0]
    t = time.perf_counter()
    cpu = time.process_time()
    g = knn._knn(u, k, method, 0, None, recall)
    wall = time.perf_counter() - t
    info = dict(g.info)
    row = {"data": data, "n": int(u.shape[0]), "d": int(u.shape[1]), "method": method, "wall_s": round(wall, 2),
           "cpu_s": round(time.process_time() - cpu, 2), "recall": round(g.recall, 4),
           "built_by": info.get("method"), "param": {p: info[p] for p in ("nprobe", "efSearch", "nlist", "quantizer", "cells", "degree", "iterations")
                                                     if p in info},
           "stages_s": {p: round(info[p], 2) for p in ("build_s", "tune_s", "search_s", "measure_s") if p in info},
           "peak_rss_gib": round(harness.peak_rss() / GIB, 3), "data_rss_gib": round(base, 3),
           "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}
    if ranks_budget:
        row["ranks_budget"] = ranks_budget
    for key in ("cells_recall", "cells_nprobe", "cells_s", "cells_scan_run", "approx_recall", "rank_s",
                "ranks_spilled", "list_size"):
        if key in info:
            row[key] = round(info[key], 4) if isinstance(info[key], float) else info[key]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=DATA)
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--all", action="store_true", help="every data set x method, each in a fresh process")
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--n", type=int, default=200_000, help="rows of the blob data sets")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--recall", type=float, default=0.95)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON lines file for --all")
    p.add_argument("--features", default=None, help="cnn-pca64: the .npy of features")
    p.add_argument("--ranks-budget", default=None, help='bytes of ranked lists held at once ("inf": all)')
    a = p.parse_args()
    if not a.all:
        print(json.dumps(one(a.data, a.method, a.n, a.k, a.recall, a.features, a.ranks_budget)), flush=True)
        return
    out = open(a.out, "a") if a.out else None
    methods = a.methods.split(",")
    for data in a.datasets.split(","):
        # the repeats interleaved over the methods: a shared machine's load drifts alike for each
        runs: dict = {m: [] for m in methods}
        for _ in range(a.repeats):
            for method in methods:
                if runs[method] is None:
                    continue
                cmd = [sys.executable, __file__, "--data", data, "--method", method, "--n", str(a.n),
                       "--k", str(a.k), "--recall", str(a.recall)]
                cmd += ["--features", a.features] if a.features else []
                cmd += ["--ranks-budget", a.ranks_budget] if a.ranks_budget else []
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    print(json.dumps({"data": data, "method": method, "error": res.stderr[-2000:]}), flush=True)
                    runs[method] = None
                    continue
                runs[method].append(json.loads(res.stdout.strip().splitlines()[-1]))
        for method in methods:
            done = runs[method]
            if not done:
                continue
            walls = [r["wall_s"] for r in done]
            row = {**done[-1], "wall_min_s": min(walls), "wall_median_s": round(statistics.median(walls), 2),
                   "repeats": len(done), "recalls": [r["recall"] for r in done],
                   "peak_rss_gib": max(r["peak_rss_gib"] for r in done),
                   "load": [min(r["load_before"] for r in done), max(r["load_after"] for r in done)]}
            print(json.dumps(row), flush=True)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()

if __name__ == "__main__":
    main()
