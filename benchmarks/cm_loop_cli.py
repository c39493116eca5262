"""Cluster-Margin in the loop and the CLI at scale (issue 13, item 5).

    python benchmarks/cm_loop_cli.py checkpoint --n 9000000
        The loop's per-round checkpoint with N cluster labels: before (the labels a JSON list in
        the checkpoint, round-tripped, digested and rewritten every round) against now (an .npy
        beside it, serialised and hashed once per run; the JSON holds its name and SHA-256),
        and the resume's read of each. Median of --repeat.
    /usr/bin/time -v python benchmarks/cm_loop_cli.py cli --n 1000000
        `alscale query --strategy cluster-margin` on N x 64 blobs (N/100 centres, noise 0.15)
        with N x 10 logits, B = N/10: the first query (fingerprint + kNN graph + graph HAC +
        selection, each stage line with the seconds since the command started) and the second
        (the cache: fingerprint + selection).
    python benchmarks/cm_loop_cli.py paths --n 1000000
        The same clustering two ways, each in a fresh process (peak RSS of that process):
        cluster_embeddings (knn_graph, then hac_average_graph: the CLI's and the loop's path)
        and hac_average(neighbors=10, knn_method="faiss") in one call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cm_openimages import query as stamped_query  # benchmarks/: each stage line timed, the peak RSS


def checkpoint(n: int, repeat: int) -> None:
    from alscale.al.datasets import make_synthetic
    from alscale.al.loop import ActiveLearningLoop, _digest, write_json_atomic
    from alscale.strategies.cluster_margin import ClusterMargin

    rng = np.random.default_rng(0)
    labels = rng.integers(0, n // 100, n).astype(np.int64)
    data = make_synthetic(200, 4, 3, seed=0)
    folder = Path(tempfile.mkdtemp(prefix="cmckpt"))
    out = {"n": n}

    def median(fn):
        from alscale.al.harness import time_call

        return time_call(fn, repeat, warmup=0)[0].median

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


def make_pool(n: int, d: int, folder: Path) -> np.ndarray:
    """N x d blobs (emb.npy; the harness's ``blobs``, N/100 centres, noise 0.15) and N x 10 logits
    (logits.npy; the harness's ``gaussian``) in ``folder``; the blob of each row."""
    from alscale.al.harness import blobs, gaussian

    z = np.lib.format.open_memmap(str(folder / "emb.npy"), mode="w+", dtype=np.float32, shape=(n, d))
    x = np.lib.format.open_memmap(str(folder / "logits.npy"), mode="w+", dtype=np.float32, shape=(n, 10))
    _, which = blobs(n, d, max(1, n // 100), 0.15, seed=0, out=z)
    gaussian(n, 10, seed=1, out=x)
    z.flush()
    x.flush()
    return which


def cli(n: int, d: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cmcli"))
    which = make_pool(n, d, folder)
    centers = max(1, n // 100)
    budget = max(1, n // 10)
    cmd = [sys.executable, "-m", "alscale", "query", "--project", str(folder / "p"), "--logits",
           str(folder / "logits.npy"), "--embeddings", str(folder / "emb.npy"), "--strategy", "cluster-margin",
           "--budget", str(budget), "--n-clusters", str(centers), "--seed", "1"]
    for name, extra in (("first query (clusters)", ["--new"]), ("second query (cache)", ["--pending", "query", "--overwrite"])):
        print(f"## {name}")
        stamped_query(cmd + extra + ["--out", str(folder / "batch.csv")])
    from alscale.al.metrics import adjusted_rand_index

    with np.load(folder / "p" / "clusters.npz") as f:
        print(f"ARI of the cached clusters vs the blobs: {adjusted_rand_index(f['labels'], which):.4f}")


_PATH = """
import sys, time, numpy as np
from alscale.al.harness import peak_rss
z = np.load(sys.argv[1], mmap_mode="r")
t0 = time.perf_counter()
if sys.argv[2] == "cluster_embeddings":
    from alscale.cluster_margin import cluster_embeddings
    labels = cluster_embeddings(z, int(sys.argv[3]), neighbors=10, knn_method="faiss")
else:
    import alscale
    labels = alscale.hac_average(z, n_clusters=int(sys.argv[3]), neighbors=10, knn_method="faiss").labels
np.save(sys.argv[4], labels)
print(f"{sys.argv[2]}: {time.perf_counter() - t0:.1f} s, peak RSS "
      f"{peak_rss() / 2**30:.2f} GiB", flush=True)
"""


def paths(n: int, d: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cmpaths"))
    make_pool(n, d, folder)
    out = []
    for how in ("cluster_embeddings", "hac_average"):
        subprocess.run([sys.executable, "-c", _PATH, str(folder / "emb.npy"), how, str(max(1, n // 100)),
                        str(folder / f"{how}.npy")], check=True)
        out.append(np.load(folder / f"{how}.npy"))
    print("same labels:", bool(np.array_equal(out[0], out[1])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("checkpoint", "cli", "paths"))
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()}")
    if a.mode == "checkpoint":
        checkpoint(a.n, a.repeat)
    else:
        (cli if a.mode == "cli" else paths)(a.n, a.d)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()}")


if __name__ == "__main__":
    main()
