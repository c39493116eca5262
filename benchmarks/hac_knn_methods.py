"""kNN graph (cosine, k = 10) at 200K x 64: alscale's cell scan against faiss's own indexes.

    python benchmarks/hac_knn_methods.py [--n 200000 --noise 0.15]   # separated blobs
    python benchmarks/hac_knn_methods.py --noise 0.6                  # overlapping blobs

The graph of every method is the k + 1 nearest points of every point with the point itself
dropped (faiss) or excluded (alscale). Each row: build (training + adding) and search times,
recall@k against exact neighbours of `--queries` sampled points (faiss brute force). Methods:
alscale knn_graph(knn_method="faiss", recall=0.95); faiss IndexIVFFlat (nlist = N/512, trained with
10 iterations on 32 points a list) at nprobe 2/4/8; IndexHNSWFlat (M = 16, efConstruction 40) at
efSearch 16/32/64; IndexIVFPQ (nlist = N/512, 16 bytes a vector) at nprobe 8/16. Prints one
JSON line per method.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from alscale import hac
from alscale.al.harness import blobs


def main() -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--noise", type=float, default=0.15)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=2000)
    a = p.parse_args()
    x, _ = blobs(a.n, 64, a.n // 100, a.noise, seed=0)
    u = hac._unit_points(x)
    del x
    n, d, k = a.n, 64, a.k
    q = np.sort(np.random.default_rng(7).choice(n, a.queries, replace=False))
    truth = faiss.knn(u[q], u, k + 1, metric=faiss.METRIC_INNER_PRODUCT)[1]
    truth = [set([j for j in t if j != i][:k]) for i, t in zip(q.tolist(), truth.tolist())]

    def recall(idx):
        return round(sum(len(t & set(r[r >= 0].tolist())) for t, r in zip(truth, idx[q])) / (len(q) * k), 4)

    def report(method, build_s, search_s, idx, **extra):
        print(json.dumps({"n": n, "noise": a.noise, "method": method, "build_s": round(build_s, 2),
                          "search_s": round(search_s, 2), "total_s": round(build_s + search_s, 2),
                          "recall_at_k": recall(idx), **extra}), flush=True)

    def drop_self(idx):
        self_pos = np.where(idx == np.arange(n)[:, None], np.arange(k + 1), k + 1).min(axis=1).clip(max=k)
        keep = np.ones_like(idx, dtype=bool)
        keep[np.arange(n), self_pos] = False
        return idx[keep].reshape(n, k)

    def search(index):
        t = time.perf_counter()
        out = np.empty((n, k + 1), dtype=np.int64)
        for s in range(0, n, 1 << 16):
            out[s : s + (1 << 16)] = index.search(u[s : s + (1 << 16)], k + 1)[1]
        return time.perf_counter() - t, drop_self(out)

    info: dict = {}
    t = time.perf_counter()
    idx, _ = hac._knn_cells(u, k, 0, None, 0.95, info)
    report("alscale cells (recall=0.95)", info["cells_s"] + info["probes_s"], info["scan_s"], idx,
           nprobe=info["nprobe"], candidates=info["candidates_per_point"], wall_s=round(time.perf_counter() - t, 2))

    nlist = max(1, n // 512)
    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter, ivf.cp.max_points_per_centroid, ivf.cp.min_points_per_centroid = 10, 32, 1
    ivf.train(u)
    ivf.add(u)
    build = time.perf_counter() - t
    for nprobe in (2, 4, 8):
        ivf.nprobe = nprobe
        s, idx = search(ivf)
        report(f"faiss IVF{nlist},Flat nprobe={nprobe}", build, s, idx)
    del ivf

    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(u)
    build = time.perf_counter() - t
    for ef in (16, 32, 64):
        hnsw.hnsw.efSearch = ef
        s, idx = search(hnsw)
        report(f"faiss HNSW16 efSearch={ef}", build, s, idx)
    del hnsw

    t = time.perf_counter()
    pq = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, 16, 8, faiss.METRIC_INNER_PRODUCT)
    pq.cp.niter, pq.cp.max_points_per_centroid, pq.cp.min_points_per_centroid = 10, 32, 1
    pq.train(u[np.sort(np.random.default_rng(0).choice(n, min(n, 65536), replace=False))])
    pq.add(u)
    build = time.perf_counter() - t
    for nprobe in (8, 16):
        pq.nprobe = nprobe
        s, idx = search(pq)
        report(f"faiss IVF{nlist},PQ16 nprobe={nprobe}", build, s, idx)


if __name__ == "__main__":
    main()
