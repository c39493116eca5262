"""End-to-end graph average-linkage HAC at Open Images scale: kNN graph + HAC on 1M points.

    /usr/bin/time -v python benchmarks/hac_1m.py                 # 1,000,000 x 64, 10,000 blobs
    python benchmarks/hac_1m.py --n 100000 --centers 1000 --knn exact
    /usr/bin/time -v python benchmarks/hac_1m.py --graph DIR      # graph HAC alone, on DIR/idx.npy, DIR/sim.npy

Synthetic clustered data: `centers` Gaussian blob centres ~ N(0, I_d), points = centre +
0.15·N(0, I_d), float32. Prints one JSON line: the time of each stage, and the adjusted Rand index
of the cut at `centers` clusters against the blob labels. `--graph DIR` runs graph HAC alone on a
saved (N, k) kNN graph (`--save-graph DIR` writes one): its time, CPU time and peak RSS, beside the
RSS the graph itself takes. Data and memory measure: the harness (alscale.al.harness: ``blobs``
with noise 0.15, seed 0; ``peak_rss`` = VmHWM of this process).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import alscale
from alscale.al.harness import blobs, peak_rss
from alscale.al.metrics import adjusted_rand_index


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--centers", type=int, default=10_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--knn", choices=["exact", "faiss"], default="faiss")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--graph", help="graph HAC alone on DIR/idx.npy and DIR/sim.npy")
    p.add_argument("--save-graph", help="also save the kNN graph to DIR/idx.npy, DIR/sim.npy")
    a = p.parse_args()
    if a.graph:
        return hac_only(a)
    out = {"n": a.n, "d": a.d, "centers": a.centers, "k": a.k, "knn": a.knn}
    t = time.perf_counter()
    x, truth = blobs(a.n, a.d, a.centers, 0.15, seed=0)
    out["data_s"] = round(time.perf_counter() - t, 2)
    t0 = time.perf_counter()
    idx, sim = alscale.knn_graph(x, a.k, knn_method=a.knn, num_threads=a.threads)
    out["knn_s"] = round(time.perf_counter() - t0, 2)
    if a.save_graph:
        np.save(f"{a.save_graph}/idx.npy", idx)
        np.save(f"{a.save_graph}/sim.npy", sim)
    t = time.perf_counter()
    c = alscale.hac_average_graph((idx, sim), n_clusters=a.centers, num_threads=a.threads)
    out["hac_s"] = round(time.perf_counter() - t, 2)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["clusters"] = int(c.labels.max()) + 1
    out["ari_vs_blobs"] = round(adjusted_rand_index(c.labels, truth), 4)
    out["peak_rss_gib"] = round(peak_rss() / 2**30, 2)
    print(json.dumps(out))


def hac_only(a) -> None:
    idx, sim = np.load(f"{a.graph}/idx.npy"), np.load(f"{a.graph}/sim.npy")
    n = idx.shape[0]
    centers = a.centers if a.centers != 10_000 else max(1, n // 100)
    out = {"n": n, "k": idx.shape[1], "threads": a.threads, "rss_graph_gib": peak_rss_gib()}
    t, c = time.perf_counter(), time.process_time()
    cl = alscale.hac_average_graph((idx, sim), n_clusters=centers, num_threads=a.threads)
    out["hac_s"] = round(time.perf_counter() - t, 2)
    out["hac_cpu_s"] = round(time.process_time() - c, 2)
    out["clusters"] = int(cl.labels.max()) + 1
    out["peak_rss_gib"] = peak_rss_gib()
    print(json.dumps(out))


def peak_rss_gib() -> float:
    return round(peak_rss() / 2**30, 3)


if __name__ == "__main__":
    main()
