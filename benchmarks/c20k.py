"""C = 20,000 classes from embeddings (issue 11's shape): one chunked torch GEMM pass over the
embeddings (the baseline), then select_balanced over logits_from_embeddings."""
import time, numpy as np, alscale, torch
rng = np.random.default_rng(0)
E = rng.standard_normal((400_000, 256), dtype=np.float32)
W = (rng.standard_normal((20_000, 256)) / 16).astype(np.float32)
b = np.zeros(20_000, np.float32)
pool = alscale.logits_from_embeddings(E, W, b)
t = time.perf_counter()
s = 0.0
for chunk in pool:
    s += float(chunk[:, 0].sum())
gemm = time.perf_counter() - t
print(f"one chunked torch GEMM pass: {gemm:.1f} s")
t = time.perf_counter()
inv = alscale._backend.arrays.inverse_norms(W, 20_000)
print(f"inverse norms (C x C, csrc/head.cpp): {time.perf_counter() - t:.1f} s")
del inv
t = time.perf_counter()
sel = alscale.select_balanced(pool, 100_000, weight=W)
base = time.perf_counter() - t
print(f"select_balanced C=20K B=100K: {base:.1f} s = {base / gemm:.2f}x the GEMM pass; {len(sel)} rows, {len(np.unique(sel))} distinct")
