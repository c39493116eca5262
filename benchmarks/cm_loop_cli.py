"""Cluster-Margin in the loop and the CLI at scale (issue 13, item 5).

    python benchmarks/cm_loop_cli.py checkpoint --n 9000000
        The loop's per-round checkpoint with N cluster labels: before (the labels a JSON list in
        the checkpoint, round-tripped, digested and rewritten every round) against now (an .npy
        beside it, serialised and hashed once per run; the JSON holds its name and SHA-256),
        and the resume's read of each. Median of --repeat.
    /usr/bin/time -v python benchmarks/cm_loop_cli.py cli --n 1000000
        `alscale query --strategy cluster-margin` on N x 64 blobs (N/100 centres, noise 0.15)
        with N x 10 logits, B = N/10: the first query (fingerprint + kNN graph + graph HAC +
        selection, the stage lines as printed) and the second (the cache: fingerprint + selection).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def checkpoint(n: int, repeat: int) -> None:
    from alscale.al.datasets import make_synthetic
    from alscale.al.loop import ActiveLearningLoop, _digest, write_json_atomic
    from alscale.al.strategies.cluster_margin import ClusterMargin

    rng = np.random.default_rng(0)
    labels = rng.integers(0, n // 100, n).astype(np.int64)
    data = make_synthetic(200, 4, 3, seed=0)
    folder = Path(tempfile.mkdtemp(prefix="cmckpt"))
    out = {"n": n}

    def median(fn):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    # before: strategy_state = {"labels": list}, the loop's state() and write as they were
    strategy = ClusterMargin()
    strategy._labels = labels
    loop = ActiveLearningLoop(data, strategy, None, initial=10, budget=5, rounds=2, checkpoint=folder / "old.json")

    def old_write():
        parts = {"config": loop.config(), "labeled": loop.labeled_order.tolist(), "records": [],
                 "strategy_state": {"labels": labels.tolist()}}
        parts = json.loads(json.dumps(parts))
        write_json_atomic(folder / "old.json", {"version": 2, **parts, "sha256": {k: _digest(v) for k, v in parts.items()}})

    out["before: write per round (s)"] = median(old_write)
    out["before: checkpoint bytes"] = (folder / "old.json").stat().st_size

    def old_read():
        with open(folder / "old.json") as f:
            state = json.load(f)
        _digest(state["strategy_state"])
        fresh = ClusterMargin()
        fresh.load_state(state["strategy_state"])

    out["before: resume read (s)"] = median(old_read)

    new = ActiveLearningLoop(data, strategy, None, initial=10, budget=5, rounds=2, checkpoint=folder / "new.json")
    t0 = time.perf_counter()
    new._write_checkpoint()
    out["now: first write of the run (s)"] = time.perf_counter() - t0
    out["now: write per later round (s)"] = median(new._write_checkpoint)
    out["now: checkpoint bytes"] = (folder / "new.json").stat().st_size
    out["now: labels file bytes"] = sum(p.stat().st_size for p in folder.glob("new.json.labels.*.npy"))

    def new_read():
        with open(folder / "new.json") as f:
            state = json.load(f)
        _digest(state["strategy_state"])
        fresh = ClusterMargin()
        fresh.load_state({"labels": new._read_array("x", "labels", state["strategy_state"]["labels"])})

    out["now: resume read (s)"] = median(new_read)
    print(json.dumps(out, indent=1))


def cli(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="cmcli"))
    centers = max(1, n // 100)
    c = rng.normal(size=(centers, d)).astype(np.float32)
    which = rng.integers(0, centers, n)
    z = np.lib.format.open_memmap(str(folder / "emb.npy"), mode="w+", dtype=np.float32, shape=(n, d))
    x = np.lib.format.open_memmap(str(folder / "logits.npy"), mode="w+", dtype=np.float32, shape=(n, 10))
    step = 1 << 20
    for s in range(0, n, step):
        e = min(n, s + step)
        z[s:e] = c[which[s:e]] + np.float32(0.15) * rng.standard_normal((e - s, d), dtype=np.float32)
        x[s:e] = rng.standard_normal((e - s, 10), dtype=np.float32)
    z.flush()
    x.flush()
    del z, x
    budget = max(1, n // 10)
    cmd = [sys.executable, "-m", "alscale", "query", "--project", str(folder / "p"), "--logits",
           str(folder / "logits.npy"), "--embeddings", str(folder / "emb.npy"), "--strategy", "cluster-margin",
           "--budget", str(budget), "--n-clusters", str(centers), "--seed", "1"]
    for name in ("first query (clusters)", "second query (cache)"):
        t0 = time.perf_counter()
        done = subprocess.run(cmd + ["--out", str(folder / "batch.csv")], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(done.stderr)
        print(f"## {name}: {wall:.1f} s wall")
        for line in done.stderr.splitlines():
            print(f"{time.strftime('%H:%M:%S')} {line}")
        sys.stdout.flush()
    from alscale.al.metrics import adjusted_rand_index

    with np.load(folder / "p" / "clusters.npz") as f:
        print(f"ARI of the cached clusters vs the blobs: {adjusted_rand_index(f['labels'], which):.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("checkpoint", "cli"))
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()}")
    checkpoint(a.n, a.repeat) if a.mode == "checkpoint" else cli(a.n, a.d)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()}")


if __name__ == "__main__":
    main()
