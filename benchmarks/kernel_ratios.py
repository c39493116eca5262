"""The selection kernels against their floor, interleaved in one process.

Each repeat times the floor (one single-threaded numpy ``L.sum()`` over the same logits) and then
every selection, so a ratio compares calls taken under the same load; min and median over the
repeats, and the process's peak RSS (the harness's measure). Synthetic N(0, 2²) fp32 logits, a N(0, 1) head of C × 2048, B = N × 10,000 / 1,281,167.

    python benchmarks/kernel_ratios.py --scale 0.25 --repeat 7
    python benchmarks/kernel_ratios.py --scale 0.25 --only margin,base_w
    python benchmarks/kernel_ratios.py --scale 0.25 --threads 1   # one thread: CPU ns per value

Besides the wall ratios, each kernel's CPU seconds per logit (``process_time``, min over the
repeats) and their ratio to the floor's: with ``--threads 1`` a measure that other processes on
the machine barely move (a shared machine's wall ratios of a 2-thread kernel to a 1-thread floor
are not).
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
    ap.add_argument("--threads", type=int, default=0, help="num_threads of the kernels (0: all cores)")
    a = ap.parse_args(argv)
    n, c = int(a.scale * IMAGENET_N), a.classes
    rng = np.random.default_rng(0)
    L = rng.standard_normal((n, c), dtype=np.float32) * 2
    W = rng.standard_normal((c, 2048))
    B = max(1, n * 10_000 // IMAGENET_N)
    th = a.threads
    calls = {
        "margin": lambda: alscale.select_margin(L, B, num_threads=th),
        "confidence": lambda: alscale.select_confidence(L, B, num_threads=th),
        "entropy": lambda: alscale.select_entropy(L, B, num_threads=th),
        "mase": lambda: alscale.select_boundary(L, B, num_threads=th),
        "mase_w": lambda: alscale.select_boundary(L, B, weight=W, num_threads=th),
        "base": lambda: alscale.select_balanced(L, B, num_threads=th),
        "base_w": lambda: alscale.select_balanced(L, B, weight=W, num_threads=th),
        "invnorms": lambda: inverse_norms(W, c),
    }
    which = a.only.split(",")
    unknown = sorted(set(which) - set(calls))
    if unknown:
        raise SystemExit(f"unknown kernel(s) {unknown}; choose from {sorted(calls)}")
    load_start = os.getloadavg()
    times: dict = {k: [] for k in ["floor"] + which}
    cpu: dict = {k: [] for k in times}
    for _ in range(a.repeat):
        for k in times:
            f = L.sum if k == "floor" else calls[k]
            timing, _ = harness.time_call(f, 1, warmup=0)
            times[k].append(timing.times[0])
            cpu[k].append(timing.cpu[0])
    fl, fc = times["floor"], min(cpu["floor"])
    print(f"N={n:,} C={c} B={B:,} threads={th or 'all'} load={os.getloadavg()[0]:.2f} floor min {min(fl):.3f} s "
          f"median {np.median(fl):.3f} s, CPU {fc / L.size * 1e9:.3f} ns per logit")
    for k in which:
        v = times[k]
        print(f"{k:12s} min {min(v):.3f} s median {np.median(v):.3f} s   x floor: min/min {min(v) / min(fl):.2f}"
              f"  median/median {np.median(v) / np.median(fl):.2f}   CPU {min(cpu[k]) / L.size * 1e9:.3f} ns per logit"
              f" ({min(cpu[k]) / fc:.2f}x)")
    print(f"peak RSS {harness.peak_rss() / 2**30:.2f} GiB; load average (1, 5, 15 min) at the start "
          f"{', '.join(f'{v:.2f}' for v in load_start)}, at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
          " (a shared machine: a 2-thread kernel's wall ratio needs both cores idle)")


if __name__ == "__main__":
    main()
