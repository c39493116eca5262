"""TypiClust and ProbCover at scale: time per stage and peak RSS (BENCHMARKS.md, "Cold start").

    /usr/bin/time -v python benchmarks/coldstart.py              # 1M x 128, B = 1000
    python benchmarks/coldstart.py --n 100000 --budget 1000      # smaller

Synthetic embeddings (the harness's ``blobs``, alscale.al.harness; RSS: its VmRSS / VmHWM): N float32 points in ``--blobs`` Gaussian blobs (centres N(0, I_D), noise
``--noise``). TypiClust: faiss k-means into B clusters, then the most typical point of each
(alscale's kNN kernel within the cluster). ProbCover: faiss IVF kNN graph (k = ``--neighbors``),
faiss k-means into ``--classes`` clusters and the purity rule for δ, the δ-balls, the greedy
coverage kernel. Baselines in the same run: one numpy pass over the embeddings (the floor); the
papers' code for the same steps where it can run at this size — TypiClust's typicality with
faiss IndexFlatL2 per cluster (pycls/al/typiclust.py), ProbCover's greedy as np.bincount over
the edge list per pick (pycls/al/prob_cover.py; timed over its first --paper-steps picks, its
cost per pick does not fall much, so the total is that time per pick x B).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from alscale import _core
from alscale import coldstart as cs
from alscale._backend.arrays import unit_rows
from alscale.al.harness import blobs, current_rss, peak_rss
from alscale.knn import knn_graph


def rss_gib() -> tuple[float, float]:
    """(current, peak so far) resident set size in GiB: the harness's VmRSS and VmHWM."""
    return (current_rss() or 0) / 2**30, peak_rss() / 2**30


def paper_typical(features: np.ndarray, k: int) -> int:
    """TypiClust's official typicality pick: faiss IndexFlatL2, k + 1 neighbours, drop the first."""
    import faiss

    kk = min(k, features.shape[0] // 2)
    if kk == 0:
        return 0
    index = faiss.IndexFlatL2(features.shape[1])
    index.add(features)
    dist, _ = index.search(features, kk + 1)
    return int(np.argmax(1 / (dist[:, 1:].mean(axis=1) + 1e-5)))


def paper_greedy(indptr: np.ndarray, members: np.ndarray, n: int, steps: int) -> float:
    """Seconds per pick of ProbCover's official greedy (bincount over the remaining edges)."""
    xs = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    ys = members.copy()
    t = time.perf_counter()
    for _ in range(steps):
        degrees = np.bincount(xs, minlength=n)
        cur = int(degrees.argmax())
        keep = ~np.isin(ys, ys[xs == cur])
        xs, ys = xs[keep], ys[keep]
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--blobs", type=int, default=1000)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--neighbors", type=int, default=20)
    p.add_argument("--classes", type=int, default=100, help="ProbCover's k-means clusters for the purity rule")
    p.add_argument("--paper-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    out: dict = {"args": vars(args)}
    stages: list = []

    cpu_at: dict = {}

    def stage(name: str, t0: float) -> None:
        cur, peak = rss_gib()
        cpu = time.process_time() - cpu_at.get(t0, cpu_at.get("last", 0.0))
        stages.append((name, time.perf_counter() - t0, cur, peak, cpu, os.getloadavg()[0]))
        print(f"{name:<58} {stages[-1][1]:9.2f} s  cpu {cpu:8.2f} s   rss {cur:5.2f} GiB   peak {peak:5.2f} GiB   "
              f"load {stages[-1][5]:.1f}", flush=True)
        cpu_at["last"] = time.process_time()

    def start() -> float:
        """A stage's start: wall clock (the key of its CPU clock)."""
        t0 = time.perf_counter()
        cpu_at[t0] = cpu_at["last"] = time.process_time()
        return t0

    out["load_before"] = [round(v, 2) for v in os.getloadavg()]

    t = start()
    x, _ = blobs(args.n, args.d, args.blobs, args.noise, seed=0)
    stage("data", t)
    t = start()
    x.sum(dtype=np.float64)
    stage("floor: one numpy pass (x.sum())", t)
    t = start()
    unit = unit_rows(x, "embeddings")
    stage("L2 normalisation", t)

    # TypiClust
    t0 = t = start()
    clusters = cs.kmeans_labels(unit, args.budget, seed=0, num_threads=args.threads)
    stage(f"typiclust: faiss k-means into {args.budget} clusters", t)
    t = start()
    labeled = np.zeros(args.n, dtype=bool)
    picks = cs.typiclust_picks(unit, clusters, labeled, args.budget, 20, args.threads)
    stage(f"typiclust: {args.budget} picks (alscale kNN in each cluster)", t)
    stage("typiclust: total (k-means + picks)", t0)
    t = start()
    same = 0
    for c in np.unique(clusters[picks]):
        rows = np.flatnonzero(clusters == c)
        same += int(rows[paper_typical(unit[rows], 20)] in set(picks.tolist()))
    stage("baseline: the paper's typicality (faiss IndexFlatL2), same clusters", t)
    out["typiclust_same_picks_as_paper_code"] = same

    # ProbCover
    t0 = t = start()
    graph = knn_graph(unit, args.neighbors, knn_method="faiss", num_threads=args.threads)
    stage(f"probcover: kNN graph (knn_graph(knn_method='faiss'), k = {args.neighbors}; recall {graph.recall:.4f}, "
          f"{graph.info.get('method')})", t)
    out["knn"] = {key: round(v, 4) if isinstance(v, float) else v for key, v in graph.info.items()}
    t = start()
    idx, dist = cs._neighbours(unit, None, "exact", args.threads, graph)
    stage("probcover: distances from the graph", t)
    t = start()
    km = cs.kmeans_labels(unit, args.classes, seed=0, num_threads=args.threads)
    stage(f"probcover: faiss k-means into {args.classes} clusters", t)
    t = start()
    delta = cs._purity_delta(idx, dist, km, 0.95)
    stage("probcover: δ by the purity rule (α = 0.95)", t)
    t = start()
    indptr, members = cs.balls(idx, dist, delta)
    stage("probcover: δ-balls (CSR)", t)
    t = start()
    covered = np.zeros(args.n, dtype=np.uint8)
    greedy, _ = _core.max_coverage(indptr, members, covered, np.ones(args.n, np.uint8), args.budget, args.threads)
    stage(f"probcover: greedy coverage kernel, {greedy.size} picks", t)
    stage("probcover: total (graph + k-means + δ + balls + greedy)", t0)
    t = start()
    per_pick = paper_greedy(indptr, members, args.n, args.paper_steps)
    stage(f"baseline: the paper's greedy, {args.paper_steps} picks", t)
    sizes = np.diff(indptr)
    out.update(delta=delta, truncated_balls=float(np.mean(dist[:, -1] < delta)), mean_ball=float(sizes.mean()),
               greedy_picks=int(greedy.size), paper_greedy_s_per_pick=per_pick,
               paper_greedy_s_for_budget=per_pick * args.budget)
    print(f"δ = {delta:.4f}; mean ball {sizes.mean():.2f} points; {out['truncated_balls']:.1%} of balls truncated "
          f"at k + 1; paper's greedy {per_pick:.3f} s per pick ≈ {per_pick * args.budget:.0f} s for B = "
          f"{args.budget}; TypiClust picks equal to the paper code's on the same clusters: {same}/{np.unique(clusters[picks]).size}")
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    out["stages"] = [dict(stage=s, seconds=round(sec, 3), cpu_s=round(cpu, 3), rss_gib=round(c, 3), peak_gib=round(pk, 3),
                          load=round(ld, 2)) for s, sec, c, pk, cpu, ld in stages]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
