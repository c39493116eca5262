"""Graph HAC on kNN graphs against exact cosine UPGMA: adjusted Rand index of the flat clusters,
and recall@k of faiss's approximate kNN against the exact kNN graph.

    python benchmarks/hac_ari.py --n 20000 --ks 10 30 100        # ARI vs exact at 20,000 points
    python benchmarks/hac_ari.py --recall --n 100000             # faiss recall@k at 100,000

Data: the harness's ``blobs`` (alscale.al.harness): `centers` Gaussian blobs (centres ~ N(0, I_64),
points = centre + noise·N(0, I_64), float32, seed 0). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.cluster.hierarchy import fcluster

import alscale
from alscale.al.harness import blobs
from alscale.al.metrics import adjusted_rand_index


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--centers", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--ks", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--cuts", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--recall", action="store_true")
    a = p.parse_args()
    x, _ = blobs(a.n, a.d, a.centers, a.noise, seed=0)
    base = {"n": a.n, "d": a.d, "centers": a.centers, "noise": a.noise}
    if a.recall:
        for k in a.ks:
            t = time.perf_counter()
            exact, _ = alscale.knn_graph(x, k)
            te = time.perf_counter() - t
            t = time.perf_counter()
            approx, _ = alscale.knn_graph(x, k, knn_method="faiss")
            tf = time.perf_counter() - t
            found = np.mean([len(set(u) & set(v)) for u, v in zip(approx.tolist(), exact.tolist())]) / k
            print(json.dumps({**base, "k": k, "exact_s": round(te, 2), "faiss_s": round(tf, 2),
                              "recall_at_k": round(float(found), 5)}), flush=True)
        return
    t = time.perf_counter()
    exact = alscale.hac_average(x, metric="cosine", n_clusters=a.cuts[0])
    print(json.dumps({**base, "method": "exact", "seconds": round(time.perf_counter() - t, 2)}), flush=True)
    for k in a.ks:
        for knn in ("exact", "faiss"):
            t = time.perf_counter()
            g = alscale.hac_average(x, neighbors=k, knn_method=knn, n_clusters=a.cuts[0])
            s = time.perf_counter() - t
            ari = {}
            for cut in a.cuts:
                ari[cut] = round(adjusted_rand_index(fcluster(g.linkage, cut, "maxclust"),
                                                     fcluster(exact.linkage, cut, "maxclust")), 4)
            print(json.dumps({**base, "method": "graph", "k": k, "knn": knn, "seconds": round(s, 2),
                              "ari_vs_exact": ari}), flush=True)


if __name__ == "__main__":
    main()
