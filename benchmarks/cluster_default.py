"""cluster_embeddings' default kNN graph against the exact one, on Fashion-MNIST pixels.

    python benchmarks/cluster_default.py [--clusters 1000] [--n 70000] [--pca DIMS]

Clusters the 60,000 x 784 training pixels (apt-get install dataset-fashion-mnist) with
``cluster_embeddings`` twice, each in a fresh process: the default graph
(``auto_knn_method(N, D)``: faiss's graph at recall 0.95 where N²·D passes 1e11) and
``knn_method="exact"`` (the default before, up to 200,000 rows). Prints wall time, the graph's
measured recall, the process's peak RSS, and the agreement of the two cuts (adjusted Rand index)
and of each with the ten classes (purity: the share of points in their cluster's majority class).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np



def one(method: str, clusters: int, n: int, pca: int | None, out: str) -> dict:
    from alscale import knn
    from alscale.al import harness
    from alscale.cluster_margin import cluster_embeddings

    x = harness.fashion_mnist()[0][:n]
    lines: list = []
    load = os.getloadavg()[0]
    t = time.perf_counter()
    labels = cluster_embeddings(x, clusters, pca=pca, knn_method=None if method == "default" else method,
                                progress=lines.append)
    wall = time.perf_counter() - t
    np.save(out, labels)
    dims = pca or x.shape[1]
    return {"method": method, "auto": knn.auto_knn_method(x.shape[0], dims), "n": int(x.shape[0]), "d": dims,
            "wall_s": round(wall, 2), "clusters": int(labels.max() + 1),
            "peak_rss_gib": round(harness.peak_rss() / 2**30, 3), "progress": lines,
            "load": [round(load, 2), round(os.getloadavg()[0], 2)]}


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    table = np.zeros((labels.max() + 1, truth.max() + 1), dtype=np.int64)
    np.add.at(table, (labels, truth), 1)
    return float(table.max(axis=1).sum() / labels.size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--pca", type=int, default=None)
    p.add_argument("--one", choices=("default", "exact"))
    p.add_argument("--out", default="/tmp/cluster_default")
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.clusters, a.n, a.pca, f"{a.out}-{a.one}.npy")), flush=True)
        return
    rows = {}
    for method in ("default", "exact"):
        cmd = [sys.executable, __file__, "--one", method, "--clusters", str(a.clusters), "--n", str(a.n), "--out", a.out]
        if a.pca:
            cmd += ["--pca", str(a.pca)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[method] = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(rows[method]), flush=True)
    from alscale.al.metrics import adjusted_rand_index

    from alscale.al import harness

    truth = harness.fashion_mnist()[1][: a.n]
    d, e = (np.load(f"{a.out}-{m}.npy") for m in ("default", "exact"))
    print(json.dumps({"ari_default_vs_exact": round(adjusted_rand_index(d, e), 4),
                      "purity_default": round(purity(d, truth), 4), "purity_exact": round(purity(e, truth), 4),
                      "speedup": round(rows["exact"]["wall_s"] / rows["default"]["wall_s"], 1)}), flush=True)


if __name__ == "__main__":
    main()
