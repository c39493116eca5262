"""The selection kernels against their floor, interleaved in one process.

Each repeat times the floor (one single-threaded numpy ``L.sum()`` over the same logits) and then
every selection, so a ratio compares calls taken under the same load; min and median over the
repeats, and the process's peak RSS (the harness's measure). Synthetic N(0, 2²) fp32 logits, a N(0, 1) head of C × 2048, B = N × 10,000 / 1,281,167.

    python benchmarks/kernel_ratios.py --scale 0.25 --repeat 7
    python benchmarks/kernel_ratios.py --scale 0.25 --only margin,base_w
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import alscale
from alscale._backend.arrays import inverse_norms
from alscale.al import harness

IMAGENET_N = 1_281_167


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.25, help="N = 1,281,167 x scale (default 0.25)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", default="margin,confidence,entropy,mase_w,base_w,base,invnorms")
    a = ap.parse_args(argv)
    n, c = int(a.scale * IMAGENET_N), a.classes
    rng = np.random.default_rng(0)
    L = rng.standard_normal((n, c), dtype=np.float32) * 2
    W = rng.standard_normal((c, 2048))
    B = max(1, n * 10_000 // IMAGENET_N)
    calls = {
        "margin": lambda: alscale.select_margin(L, B),
        "confidence": lambda: alscale.select_confidence(L, B),
        "entropy": lambda: alscale.select_entropy(L, B),
        "mase": lambda: alscale.select_boundary(L, B),
        "mase_w": lambda: alscale.select_boundary(L, B, weight=W),
        "base": lambda: alscale.select_balanced(L, B),
        "base_w": lambda: alscale.select_balanced(L, B, weight=W),
        "invnorms": lambda: inverse_norms(W, c),
    }
    which = a.only.split(",")
    unknown = sorted(set(which) - set(calls))
    if unknown:
        raise SystemExit(f"unknown kernel(s) {unknown}; choose from {sorted(calls)}")
    times: dict = {k: [] for k in ["floor"] + which}
    for _ in range(a.repeat):
        for k in times:
            f = L.sum if k == "floor" else calls[k]
            timing, _ = harness.time_call(f, 1, warmup=0)
            times[k].append(timing.times[0])
    fl = times["floor"]
    print(f"N={n:,} C={c} B={B:,} load={os.getloadavg()[0]:.2f} floor min {min(fl):.3f} s median {np.median(fl):.3f} s")
    for k in which:
        v = times[k]
        print(f"{k:12s} min {min(v):.3f} s median {np.median(v):.3f} s   x floor: min/min {min(v) / min(fl):.2f}"
              f"  median/median {np.median(v) / np.median(fl):.2f}")
    print(f"peak RSS {harness.peak_rss() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
