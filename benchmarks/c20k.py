"""Many classes from embeddings (issue 11's shape): one chunked torch GEMM pass over the
embeddings (the baseline), then select_balanced over logits_from_embeddings, in one process
(peak RSS is this process's high-water mark, VmHWM, read by the harness's ``peak_rss``; the
embeddings and the head are the harness's ``gaussian`` rows).

    python benchmarks/c20k.py [--classes 20000] [--rows 400000] [--dims 256] [--budget 100000]
"""
import argparse, time

import numpy as np

import alscale
from alscale._backend.arrays import PAIR_CLASSES, inverse_norms
from alscale.al.harness import gaussian, peak_rss


def peak_gib():
    return peak_rss() / 2**30


ap = argparse.ArgumentParser()
ap.add_argument("--classes", type=int, default=20_000)
ap.add_argument("--rows", type=int, default=400_000)
ap.add_argument("--dims", type=int, default=256)
ap.add_argument("--budget", type=int, default=100_000)
a = ap.parse_args()
E = gaussian(a.rows, a.dims, seed=0)
W = gaussian(a.classes, a.dims, seed=1, scale=1 / 16)
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
