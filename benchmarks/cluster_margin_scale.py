"""Cluster-Margin at Open Images scale: budget 1M over a 9M pool (k_m = min(10·budget, pool)).

    python benchmarks/cluster_margin_scale.py [--n 9000000 --c 100 --budget 1000000 --clusters 100000]

Prints one JSON line: the whole select_cluster_margin call and its parts (margin scores, the k_m
top-k, the round-robin kernel), each the median of `--repeat` runs (the harness's timer; the
logits are the harness's ``gaussian`` rows, the clusters uniform labels).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import alscale
from alscale import _core
from alscale.al.harness import gaussian, time_call


def median_time(fn, repeat: int) -> float:
    return round(time_call(fn, repeat, warmup=0)[0].median, 3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=9_000_000)
    p.add_argument("--c", type=int, default=100)
    p.add_argument("--budget", type=int, default=1_000_000)
    p.add_argument("--clusters", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    logits = gaussian(a.n, a.c, seed=0)
    clusters = np.random.default_rng(0).integers(0, a.clusters, a.n)
    km = min(10 * a.budget, a.n)
    out = {"n": a.n, "c": a.c, "budget": a.budget, "clusters": a.clusters, "k_m": km}
    out["select_cluster_margin_s"] = median_time(
        lambda: alscale.select_cluster_margin(logits, clusters, a.budget, seed=0), a.repeat)
    scores = alscale.margin_scores(logits)
    out["margin_scores_s"] = median_time(lambda: alscale.margin_scores(logits), a.repeat)
    out["topk_s"] = median_time(lambda: _core.select_topk(scores, km, None, False, 0), a.repeat)
    rows = _core.select_topk(scores, km, None, False, 0)
    out["round_robin_s"] = median_time(lambda: _core.cluster_round_robin(rows, clusters[rows], a.budget, 0), a.repeat)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
