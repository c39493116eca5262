"""End-to-end graph average-linkage HAC at Open Images scale: kNN graph + HAC on 1M points.

    /usr/bin/time -v python benchmarks/hac_1m.py                 # 1,000,000 x 64, 10,000 blobs
    python benchmarks/hac_1m.py --n 100000 --centers 1000 --knn exact

Synthetic clustered data: `centers` Gaussian blob centres ~ N(0, I_d), points = centre +
0.15·N(0, I_d), float32. Prints one JSON line: the time of each stage, and the adjusted Rand index
of the cut at `centers` clusters against the blob labels.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

import alscale
from alscale.al.metrics import adjusted_rand_index


def blobs(n: int, d: int, centers: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)).astype(np.float32)
    labels = rng.integers(0, centers, n)
    x = c[labels] + np.float32(0.15) * rng.normal(size=(n, d)).astype(np.float32)
    return x, labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--centers", type=int, default=10_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--knn", choices=["exact", "faiss"], default="faiss")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    out = {"n": a.n, "d": a.d, "centers": a.centers, "k": a.k, "knn": a.knn}
    t = time.perf_counter()
    x, truth = blobs(a.n, a.d, a.centers)
    out["data_s"] = round(time.perf_counter() - t, 2)
    t0 = time.perf_counter()
    idx, sim = alscale.knn_graph(x, a.k, method=a.knn, num_threads=a.threads)
    out["knn_s"] = round(time.perf_counter() - t0, 2)
    t = time.perf_counter()
    c = alscale.hac_average_graph((idx, sim), n_clusters=a.centers, num_threads=a.threads)
    out["hac_s"] = round(time.perf_counter() - t, 2)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["clusters"] = int(c.labels.max()) + 1
    out["ari_vs_blobs"] = round(adjusted_rand_index(c.labels, truth), 4)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
