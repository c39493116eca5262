"""Many classes from embeddings (issue 11's shape): one chunked torch GEMM pass over the
embeddings (the baseline), then select_balanced over logits_from_embeddings, in one process
(peak RSS is this process's high-water mark, VmHWM).

    python benchmarks/c20k.py [--classes 20000] [--rows 400000] [--dims 256] [--budget 100000]
"""
import argparse, time

import numpy as np

import alscale
from alscale._backend.arrays import PAIR_CLASSES, inverse_norms


def peak_gib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


ap = argparse.ArgumentParser()
ap.add_argument("--classes", type=int, default=20_000)
ap.add_argument("--rows", type=int, default=400_000)
ap.add_argument("--dims", type=int, default=256)
ap.add_argument("--budget", type=int, default=100_000)
a = ap.parse_args()
rng = np.random.default_rng(0)
E = rng.standard_normal((a.rows, a.dims), dtype=np.float32)
W = (rng.standard_normal((a.classes, a.dims)) / 16).astype(np.float32)
b = np.zeros(a.classes, np.float32)
pool = alscale.logits_from_embeddings(E, W, b)
t = time.perf_counter()
s = 0.0
for chunk in pool:
    s += float(chunk[:, 0].sum())
gemm = time.perf_counter() - t
print(f"{a.rows:,} x {a.dims} embeddings, {a.classes:,} classes, B = {a.budget:,}")
print(f"one chunked torch GEMM pass: {gemm:.1f} s (peak RSS so far {peak_gib():.2f} GiB)")
t = time.perf_counter()
inv = inverse_norms(W, a.classes)
kind = "pairs on demand + bfloat16 lower bounds" if a.classes >= PAIR_CLASSES else "C x C float64 table"
print(f"head norms ({kind}): {time.perf_counter() - t:.1f} s")
del inv
t = time.perf_counter()
sel = alscale.select_balanced(pool, a.budget, weight=W)
base = time.perf_counter() - t
print(f"select_balanced: {base:.1f} s = {base / gemm:.2f}x the GEMM pass; {len(sel)} rows, "
      f"{len(np.unique(sel))} distinct; peak RSS {peak_gib():.2f} GiB")
