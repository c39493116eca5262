"""The selection kernels against their floor, interleaved in one process.

Each repeat times the floor (one single-threaded numpy ``L.sum()`` over the same logits) and then
every selection, so a ratio compares calls taken under the same load; min and median over the
repeats, and the process's peak RSS (the harness's measure). Synthetic N(0, 2²) fp32 logits, a N(0, 1) head of C × 2048, B = N × 10,000 / 1,281,167.

    python benchmarks/kernel_ratios.py --scale 0.25 --repeat 7
    python benchmarks/kernel_ratios.py --scale 0.25 --only margin,base_w
    python benchmarks/kernel_ratios.py --scale 0.25 --threads 1   # one thread: CPU ns per value
    python benchmarks/kernel_ratios.py --scale 0.25 --dtype bfloat16  # 16-bit logits (torch bf16)

Besides the wall ratios, each kernel's CPU seconds per logit (``process_time``, min over the
repeats) and their ratio to the floor's: with ``--threads 1`` a measure that other processes on
the machine barely move (a shared machine's wall ratios of a 2-thread kernel to a 1-thread floor
are not).

``--dtype float16`` (numpy) or ``bfloat16`` (a torch tensor, as the library takes it: its int16
bits, never copied) rounds the same N(0, 2²) values to 16 bits. The kernels are then timed against
two floors in the same repeats: the fp32 floor of the same values (``L.sum()`` of the float32
array) and a 16-bit floor, the fastest of a few single-threaded one-pass numpy reads of the 16-bit
array's bytes (its min over the repeats; every candidate's figures are printed):

- ``int16.sum``: ``u.sum(dtype=np.int64)`` of the int16 view (the floor BENCHMARKS.md used before);
- ``f16.add.reduce``: ``np.add.reduce(h, axis=None, dtype=np.float32)`` of the float16 view (for
  bf16 bytes a read of the same bytes as halves; its sum means nothing);
- ``u32.sum``: ``.view(np.uint32).sum()`` (two values per element);
- ``u64.or``: ``np.bitwise_or.reduce`` of the uint64 view (four values per element: a plain read).

One thread's read need not be the machine's limit: the same read split over two threads (numpy
releases the GIL in these reductions), ``L.sum()`` for float32 and ``u64.or`` for 16-bit, is timed
in the same repeats as "2-thread read", and every kernel's ratio to it is printed beside the
others (``--read-threads N`` for another count; 1 leaves it out).
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor

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
    ap.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                    help="the logits' dtype (bfloat16: a torch tensor; default float32)")
    ap.add_argument("--read-threads", type=int, default=2,
                    help="threads of the split read timed beside the one-thread floors (default 2; 1: none)")
    a = ap.parse_args(argv)
    if a.read_threads < 1:
        raise SystemExit("--read-threads must be at least 1")
    n, c = int(a.scale * IMAGENET_N), a.classes
    rng = np.random.default_rng(0)
    L32 = rng.standard_normal((n, c), dtype=np.float32) * 2
    L, floors, plain = logits_of(L32, a.dtype)
    pool = ThreadPoolExecutor(a.read_threads) if a.read_threads > 1 else None
    split = {} if pool is None else {f"{a.read_threads}-thread read": split_read(*plain, pool, a.read_threads)}
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
    calls.update(floors)
    calls.update(split)
    times: dict = {k: [] for k in list(floors) + list(split) + which}
    cpu: dict = {k: [] for k in times}
    for _ in range(a.repeat):
        for k in times:
            timing, _ = harness.time_call(calls[k], 1, warmup=0)
            times[k].append(timing.times[0])
            cpu[k].append(timing.cpu[0])
    size = n * c
    # The floor of the logits' own bytes: the fastest candidate (min over the repeats).
    own = min((k for k in floors if k != "fp32 floor" or len(floors) == 1), key=lambda k: min(times[k]))
    print(f"N={n:,} C={c} B={B:,} dtype={a.dtype} threads={th or 'all'} load={os.getloadavg()[0]:.2f}")
    for k in list(floors) + list(split):
        v = times[k]
        print(f"{k:16s} min {min(v):.3f} s median {np.median(v):.3f} s, CPU {min(cpu[k]) / size * 1e9:.3f} ns per logit"
              + ("   <- the floor" if k == own else "   <- the read on more threads" if k in split else ""))
    bases = ([own] if own == "fp32 floor" else [own, "fp32 floor"]) + list(split)
    for k in which:
        v = times[k]
        line = f"{k:12s} min {min(v):.3f} s median {np.median(v):.3f} s  CPU {min(cpu[k]) / size * 1e9:.3f} ns per logit"
        for f in bases:
            fl, fc = times[f], min(cpu[f])
            line += (f" | x {f}: min/min {min(v) / min(fl):.2f} median/median {np.median(v) / np.median(fl):.2f}"
                     f" CPU {min(cpu[k]) / fc:.2f}")
        print(line)
    print(f"peak RSS {harness.peak_rss() / 2**30:.2f} GiB; load average (1, 5, 15 min) at the start "
          f"{', '.join(f'{v:.2f}' for v in load_start)}, at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
          " (a shared machine: a 2-thread kernel's wall ratio needs both cores idle)")
    if pool is not None:
        pool.shutdown()


def split_read(array: np.ndarray, read, pool: ThreadPoolExecutor, threads: int):
    """``read`` (a one-pass numpy reduction) over ``threads`` contiguous parts of ``array`` at once."""
    parts = np.array_split(array, threads)
    return lambda: [f.result() for f in [pool.submit(read, p) for p in parts]]


def logits_of(L32: np.ndarray, dtype: str):
    """The logits in ``dtype``, the floors to time them against (name -> a one-pass numpy read) and
    the plain read to split over threads (an array and its reduction). For float32 the one floor
    ``L.sum()``; for 16-bit that of the float32 values ("fp32 floor") and the 16-bit candidates
    over the 16-bit array's bytes (module docstring)."""
    if dtype == "float32":
        return L32, {"fp32 floor": L32.sum}, (L32, np.sum)
    if dtype == "float16":
        L = L32.astype(np.float16)
        raw = L
    else:
        import torch  # the app extra: bfloat16 logits are a torch tensor

        L = torch.from_numpy(L32).to(torch.bfloat16)
        raw = L.view(torch.int16).numpy()  # the same bytes, never copied
    i16 = raw.view(np.int16)
    flat = i16.reshape(-1)
    assert flat.nbytes % 8 == 0, "the 16-bit floors read the bytes as uint64: N * C must be a multiple of 4"
    return L, {
        "fp32 floor": L32.sum,
        "int16.sum": lambda: i16.sum(dtype=np.int64),
        "f16.add.reduce": lambda: np.add.reduce(flat.view(np.float16), dtype=np.float32),
        "u32.sum": lambda: flat.view(np.uint32).sum(),
        "u64.or": lambda: np.bitwise_or.reduce(flat.view(np.uint64)),
    }, (flat.view(np.uint64), np.bitwise_or.reduce)


if __name__ == "__main__":
    main()
