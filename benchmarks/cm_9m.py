"""Cluster-Margin end to end at Open Images scale: clustered embeddings -> kNN graph -> graph HAC
-> select_cluster_margin.

    /usr/bin/time -v python benchmarks/cm_9m.py --n 9000000           # 9M x 64, 90,000 blobs, B = 1M
    python benchmarks/cm_9m.py --n 2000000 --budget 1000000
    /usr/bin/time -v python benchmarks/cm_9m.py --n 9000000 --centers 20000 --noise 0.8 \
        --recall-queries 1000                                          # 9M overlapping blobs
    python benchmarks/cm_9m.py --n 200000 --quality                   # approximate vs exact graph HAC

Synthetic embeddings (the harness's ``blobs``, alscale.al.harness): `centers` (default n/100) Gaussian blob centres ~ N(0, I_d), points = centre +
noise·N(0, I_d) (noise 0.15: separated blobs; 0.5 and more: blobs that overlap), float32, made
chunk by chunk. Stages, each timed: the kNN graph (k = 10, the public knn_graph(knn_method="faiss",
recall=...), which measures and returns its recall; before this it called the private cell scan,
which has no promise), graph average linkage cut at `centers` clusters, select_cluster_margin with budget
B over synthetic logits (N x 10, random: synthetic margins). Beside the times: peak RSS, the
recall@k of the graph against exact neighbours of `--recall-queries` sampled points (faiss brute
force, not timed), and the ARI of the cut against the generating blobs. `--quality` also runs
exact graph HAC on the exact kNN graph (alscale's blocked brute force) and reports the ARI of the
two cuts. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

import alscale
from alscale import hac
from alscale.al.harness import blobs, gaussian, peak_rss
from alscale.al.metrics import adjusted_rand_index


def recall_at_k(unit: np.ndarray, idx: np.ndarray, k: int, queries: int) -> float:
    import faiss

    rng = np.random.default_rng(7)
    q = np.sort(rng.choice(unit.shape[0], min(queries, unit.shape[0]), replace=False))
    hits = 0
    for s in range(0, q.size, 2000):
        qq = q[s : s + 2000]
        truth = faiss.knn(unit[qq], unit, k + 1, metric=faiss.METRIC_INNER_PRODUCT)[1]
        for i, t, got in zip(qq.tolist(), truth.tolist(), idx[qq].tolist()):
            hits += len(set([j for j in t if j != i][:k]) & set(got))
    return hits / (q.size * k)


def progress(out: dict) -> None:
    """The figures so far, on stderr: a long run that is stopped still leaves its stages."""
    print(json.dumps(out), file=sys.stderr, flush=True)


def rss() -> float:
    """The peak RSS so far (GiB): the harness's ``peak_rss``, VmHWM of this process."""
    return round(peak_rss() / 2**30, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=9_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--centers", type=int, default=0, help="default n // 100")
    p.add_argument("--noise", type=float, default=0.15)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--recall", type=float, default=0.95)
    p.add_argument("--nprobe", type=int, default=None)
    p.add_argument("--method", default="faiss", help="knn_graph's method (default faiss: the public promise)")
    p.add_argument("--budget", type=int, default=1_000_000)
    p.add_argument("--recall-queries", type=int, default=10_000)
    p.add_argument("--quality", action="store_true")
    p.add_argument("--threshold", type=float, default=0.99, help="second cut, at this distance")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    centers = a.centers or max(1, a.n // 100)
    out = {"n": a.n, "d": a.d, "centers": centers, "noise": a.noise, "k": a.k, "target_recall": a.recall,
           "load_before": [round(v, 2) for v in os.getloadavg()]}  # a shared machine: say how busy it was
    t = time.perf_counter()
    x, truth = blobs(a.n, a.d, centers, a.noise, seed=0)
    out["data_s"] = round(time.perf_counter() - t, 2)
    out["rss_after_data_gib"] = rss()
    progress(out)

    t0, c0 = time.perf_counter(), time.process_time()
    unit = hac._unit_points(x)  # what knn_graph does first
    del x
    with warnings.catch_warnings(record=True) as caught:  # a missed promise is reported, not raised
        warnings.simplefilter("always")
        graph = alscale.knn_graph(unit, a.k, knn_method=a.method, recall=a.recall, nprobe=a.nprobe, num_threads=a.threads)
    idx, sim = graph
    info: dict = dict(graph.info or {}, promised_recall=graph.recall,
                      warnings=[str(w.message)[:200] for w in caught])
    out["knn_s"] = round(time.perf_counter() - t0, 2)
    out["knn_cpu_s"] = round(time.process_time() - c0, 2)  # both cores' CPU time: a busy machine's wall time misleads
    out["knn"] = {key: round(v, 4) if isinstance(v, float) else v for key, v in info.items()}
    out["rss_after_knn_gib"] = rss()
    progress(out)
    t = time.perf_counter()
    out["recall_at_k"] = round(recall_at_k(unit, idx, a.k, a.recall_queries), 4)
    out["recall_check_s"] = round(time.perf_counter() - t, 2)
    progress(out)
    exact = None
    if a.quality:
        t = time.perf_counter()
        exact = alscale.knn_graph(unit, a.k, num_threads=a.threads)
        out["exact_knn_s"] = round(time.perf_counter() - t, 2)
    del unit

    t, c0 = time.perf_counter(), time.process_time()
    c = alscale.hac_average_graph((idx, sim), n_clusters=centers, num_threads=a.threads)
    out["hac_s"] = round(time.perf_counter() - t, 2)
    out["hac_cpu_s"] = round(time.process_time() - c0, 2)
    del idx, sim
    out["rss_after_hac_gib"] = rss()
    out["clusters"] = int(c.labels.max()) + 1
    # Separated blobs are components of the graph, joined at distance exactly 1: when one blob
    # is itself split, the cut at `centers` clusters ties at height 1 and takes all of them
    # (scipy's maxclust rule). The cut at distance 0.99 (average similarity >= 0.01) says more.
    from scipy.cluster.hierarchy import fcluster

    at = fcluster(c.linkage, a.threshold, criterion="distance")
    out["clusters_at_threshold"] = int(at.max())
    out["ari_vs_blobs_at_threshold"] = round(adjusted_rand_index(at, truth), 4)
    del at
    progress(out)
    labels = c.labels
    approx_z = c.linkage if a.quality else None
    del c

    logits = gaussian(a.n, 10, seed=3)
    t, c0 = time.perf_counter(), time.process_time()
    sel = alscale.select_cluster_margin(logits, labels, a.budget, seed=0, num_threads=a.threads)
    out["select_s"] = round(time.perf_counter() - t, 2)
    out["select_cpu_s"] = round(time.process_time() - c0, 2)
    out["selected"] = int(sel.size)
    out["total_s"] = round(out["knn_s"] + out["hac_s"] + out["select_s"], 2)
    out["peak_rss_gib"] = rss()
    out["ari_vs_blobs"] = round(adjusted_rand_index(labels, truth), 4)
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    if exact is not None:
        t = time.perf_counter()
        ce = alscale.hac_average_graph(exact, n_clusters=centers, num_threads=a.threads)
        out["exact_hac_s"] = round(time.perf_counter() - t, 2)
        out["ari_approx_vs_exact_graph_hac"] = round(adjusted_rand_index(labels, ce.labels), 4)
        at_e = fcluster(ce.linkage, a.threshold, criterion="distance")
        at_a = fcluster(approx_z, a.threshold, criterion="distance")
        out["ari_approx_vs_exact_graph_hac_at_threshold"] = round(adjusted_rand_index(at_a, at_e), 4)
        out["ari_exact_vs_blobs"] = round(adjusted_rand_index(ce.labels, truth), 4)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
