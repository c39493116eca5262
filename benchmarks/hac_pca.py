"""What PCA of 2048-d features does to the graph-HAC clustering: 200K points.

    python benchmarks/hac_pca.py                      # 200,000 x 2048, 2,000 clusters; PCA to 64, 128, 256
    python benchmarks/hac_pca.py --n 20000 --centers 200 --dims 64

Synthetic CNN-like features: a power-law spectrum (variance of feature i ∝ 1/(i+1)) for both
the cluster centres and the within-cluster noise (`--noise` times the centres' scale), float32,
made chunk by chunk (the harness's ``blobs``, scaled; peak RSS: the harness's ``peak_rss``). The reference clustering is graph HAC (k = 10, kNN graph by
knn_graph(knn_method="faiss")) on the unreduced features; each reduced run is graph HAC on
knn_graph(..., pca=dims). All cuts at `centers` clusters. Prints one JSON line: times, the ARI of
each reduced clustering against the unreduced one and against the generating clusters.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import alscale
from alscale.al.harness import blobs, peak_rss
from alscale.al.metrics import adjusted_rand_index


def features(n: int, d: int, centers: int, noise: float, seed: int = 0):
    """The harness's blobs, feature i scaled by 1/sqrt(i+1) (centres and noise alike)."""
    x, labels = blobs(n, d, centers, noise, seed=seed)
    x *= (1.0 / np.sqrt(np.arange(1, d + 1))).astype(np.float32)
    return x, labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=2048)
    p.add_argument("--centers", type=int, default=2000)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
    a = p.parse_args()
    out: dict = {"n": a.n, "d": a.d, "centers": a.centers, "noise": a.noise, "k": a.k}
    x, truth = features(a.n, a.d, a.centers, a.noise)

    def cluster(dims):
        t = time.perf_counter()
        g = alscale.knn_graph(x, a.k, knn_method="faiss", pca=dims)
        t_knn = time.perf_counter() - t
        c = alscale.hac_average_graph(g, n_clusters=a.centers)
        return c.labels, round(t_knn, 2), round(time.perf_counter() - t - t_knn, 2)

    full, t_knn, t_hac = cluster(None)
    out["full"] = {"knn_s": t_knn, "hac_s": t_hac, "ari_vs_truth": round(adjusted_rand_index(full, truth), 4)}
    for dims in a.dims:
        labels, t_knn, t_hac = cluster(dims)
        out[f"pca{dims}"] = {"knn_s": t_knn, "hac_s": t_hac,
                             "ari_vs_unreduced": round(adjusted_rand_index(labels, full), 4),
                             "ari_vs_truth": round(adjusted_rand_index(labels, truth), 4)}
        print(json.dumps(out), flush=True)
    out["peak_rss_gib"] = round(peak_rss() / 2**30, 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
