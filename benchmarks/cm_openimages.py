"""Cluster-Margin at the paper's Open Images shape through `alscale query`, on a pool on disk.

    python benchmarks/cm_openimages.py --n 9000000 --dir DIR [--budgets 1000000,100000]

makes (once, kept in DIR with its parameters) a pool of CNN-like features shaped like the
paper's — ``--n`` rows × 2048 float16 non-negative features (ReLU of a random projection of
overlapping, long-tailed Gaussian blobs: ``alscale.al.harness.cnn_features``) and a multi-label
head of ``--classes`` sigmoids — then runs, each in a fresh process as a user would:

1. ``alscale query --new --multilabel --embeddings --weight --bias --strategy cluster-margin
   --pca 64 --n-clusters K --budget B1``: fingerprint, PCA 2048 → 64, kNN graph at recall 0.95
   (measured, printed), graph HAC into K clusters (cached in the project), the logits of the
   head chunk by chunk (never N × C), the multi-label Cluster-Margin batch, its score column;
2. the same with ``--budget B2 --pending query``: the cached clusters, a new batch.

Each stage line is printed with the seconds since its command started; each command's peak
RSS (its own high-water mark, VmHWM read while it runs: wait4's ru_maxrss would carry this
process's over the fork and exec) and wall time; the ARI of the cached clusters against
the generating blobs; the load average before and after (a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from alscale.al.harness import cnn_features, watch_peak_rss


def make(folder: Path, n: int, dim: int, clusters: int, classes: int, noise: float) -> dict:
    params = {"n": n, "dim": dim, "clusters": clusters, "classes": classes, "noise": noise, "dtype": "float16"}
    marker = folder / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        print(f"data: reusing {folder}", flush=True)
        return params
    marker.unlink(missing_ok=True)
    t = time.perf_counter()
    _, labels, weight, bias = cnn_features(n, dim, clusters, classes, noise=noise, path=str(folder / "emb.npy"))
    np.save(folder / "truth.npy", labels)
    np.save(folder / "head.npy", weight)
    np.save(folder / "bias.npy", bias)
    marker.write_text(json.dumps(params))
    params["make_s"] = round(time.perf_counter() - t, 1)
    print(f"data: {n} x {dim} float16 ({n * dim * 2 / 1e9:.1f} GB) in {params['make_s']} s", flush=True)
    return params


def query(cmd: list) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    peak = watch_peak_rss(proc.pid)
    lines = []
    for line in proc.stderr:
        stamped = f"{time.perf_counter() - t0:7.1f} s  {line.rstrip()}"
        lines.append(stamped)
        print(stamped, flush=True)
    high = peak()  # before wait4 reaps it (its pid is not reused until then)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"alscale query failed ({proc.returncode})")
    out = {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
           "peak_rss_gib": None if high is None else round(high / 2**30, 2), "lines": lines}
    print(f"{wall:7.1f} s  (exit) peak RSS {out['peak_rss_gib']} GiB, CPU {out['cpu_s']} s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=9_000_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--clusters", type=int, default=20_000, help="generating blobs, and the HAC's K")
    p.add_argument("--classes", type=int, default=600)
    p.add_argument("--noise", type=float, default=0.8)
    p.add_argument("--pca", type=int, default=64)
    p.add_argument("--budgets", default="1000000,100000")
    p.add_argument("--dir", required=True)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"load_before": [round(v, 2) for v in os.getloadavg()]}
    out["data"] = make(folder, a.n, a.dim, a.clusters, a.classes, a.noise)
    project = folder / "project"
    if project.exists():
        import shutil

        shutil.rmtree(project)
    base = [sys.executable, "-m", "alscale", "query", "--project", str(project), "--embeddings",
            str(folder / "emb.npy"), "--weight", str(folder / "head.npy"), "--bias", str(folder / "bias.npy"),
            "--strategy", "cluster-margin", "--seed", "1", "--overwrite"]
    budgets = [int(b) for b in a.budgets.split(",")]
    out["queries"] = []
    for k, budget in enumerate(budgets):
        extra = (["--new", "--multilabel", "--pca", str(a.pca), "--n-clusters", str(a.clusters)] if k == 0
                 else ["--pending", "query"])
        print(f"## query {k + 1}: B = {budget}", flush=True)
        q = query(base + extra + ["--budget", str(budget), "--out", str(folder / f"batch{k + 1}.csv")])
        q["budget"] = budget
        with open(folder / f"batch{k + 1}.csv") as f:
            q["rows_written"] = sum(1 for _ in f) - 1
        out["queries"].append(q)
        if k == 0:
            from alscale.al.metrics import adjusted_rand_index

            with np.load(project / "clusters.npz") as f:
                labels = f["labels"]
            out["clusters"] = int(labels.max()) + 1
            out["ari_vs_blobs"] = round(adjusted_rand_index(labels, np.load(folder / "truth.npy")), 4)
            print(f"ARI of the cached clusters vs the blobs: {out['ari_vs_blobs']} ({out['clusters']} clusters)",
                  flush=True)
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: v for k, v in out.items() if k != "queries"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
