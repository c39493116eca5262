"""Open Images–scale selection from a pool on disk: a 9M-row logits memmap (synthesized), BASE and
margin with B = 100,000 and 1,000,000, on 1 and 2 ranks (gloo), with time and peak RSS per rank.

    python benchmarks/scale_9m.py --path /data/pool.npy            # make the file once, then run
    python benchmarks/scale_9m.py --path /data/pool.npy --rows 200000   # a quick try

The file is float32 (N x C); at 9M x 1000 it is 36 GB, more than this machine's memory, so every
pass reads it from disk. The floor is one pass of numpy over the same file in the same chunks
(``chunk.sum()``, pages released the same way). Each rank opens its contiguous block of rows as
a memmap slice and passes its global ``row_ids``; the 2-rank selections are checked equal to the
1-rank ones. Each configuration runs in fresh processes so that peak RSS is its own (the
harness's ``peak_rss``, VmHWM). The pool is this script's own: peaked logits written to disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np

from alscale.al.harness import peak_rss


def make_pool(path: str, rows: int, classes: int, seed: int = 0) -> None:
    """Peaked logits like a trained network's, written chunk by chunk (never all in memory):
    a bank of random rows, each used with a random temperature and a random roll of the classes,
    so that rows are distinct and predicted classes spread over all classes."""
    rng = np.random.default_rng(seed)
    bank = rng.standard_normal((8192, classes)).astype(np.float32)
    bank[np.arange(8192), rng.integers(0, classes, 8192)] += 4.0
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, classes))
    step = 65536
    for start in range(0, rows, step):
        n = min(step, rows - start)
        block = bank[rng.integers(0, 8192, n)] * rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
        out[start : start + n] = np.roll(block, int(rng.integers(0, classes)), axis=1)
    out.flush()
    del out


def _worker(rank, world, store, path, rule, budget, results):
    import torch

    import alscale
    from alscale.pool import ChunkedArray

    group = None
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
        group = dist.group.WORLD
    m = np.load(path, mmap_mode="r")
    ids = alscale.shard_rows(m.shape[0], rank=rank, world_size=world)
    local = m[ids[0] : ids[-1] + 1] if ids.size else m[:0]
    threads = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    if group is not None:
        dist.barrier()
    t0 = time.perf_counter()
    if rule == "floor":
        total = 0.0
        for chunk in ChunkedArray(local):
            total += float(np.asarray(chunk).sum(dtype=np.float64))
        out = np.zeros(0, np.int64)
    else:
        fn = {"balanced": alscale.select_balanced, "margin": alscale.select_margin}[rule]
        kw = {"group": group, "row_ids": ids} if group is not None else {}
        out = np.asarray(fn(local, budget, num_threads=threads, **kw))
    seconds = time.perf_counter() - t0
    rss = peak_rss()
    results.put((rank, seconds, rss, out if rank == 0 else None))
    if group is not None:
        dist.destroy_process_group()


def run(path: str, rule: str, budget: int, world: int) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_worker, args=(r, world, os.path.join(tmp, "store"), path, rule, budget, results))
                 for r in range(world)]
        for p in procs:
            p.start()
        got = [results.get(timeout=3600) for _ in range(world)]
        for p in procs:
            p.join()
    got.sort(key=lambda g: g[0])
    return {"rule": rule, "budget": budget, "ranks": world, "seconds": max(g[1] for g in got),
            "peak_rss_gib_per_rank": [g[2] / 2**30 for g in got], "indices": got[0][3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", required=True, help=".npy file of float32 logits (made if missing)")
    ap.add_argument("--rows", type=int, default=9_000_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--budgets", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rules", nargs="+", default=["margin", "balanced"])
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    if not os.path.exists(path := a.path):
        t = time.perf_counter()
        make_pool(path, a.rows, a.classes)
        print(f"# wrote {path}: {a.rows} x {a.classes} float32 in {time.perf_counter() - t:.0f} s", flush=True)
    m = np.load(path, mmap_mode="r")
    gib = m.nbytes / 2**30
    print(f"# pool {m.shape[0]} x {m.shape[1]} {m.dtype}, {gib:.1f} GiB on disk; machine: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB", flush=True)
    del m
    rows = []
    for world in a.ranks:
        floor = run(path, "floor", 0, world)
        rows.append(floor)
        print(f"floor    ranks={world}                {floor['seconds']:7.1f} s  "
              f"RSS/rank {max(floor['peak_rss_gib_per_rank']):.2f} GiB", flush=True)
        for rule in a.rules:
            for budget in a.budgets:
                r = run(path, rule, budget, world)
                r["x_floor"] = r["seconds"] / floor["seconds"]
                one = next((x for x in rows if x["rule"] == rule and x["budget"] == budget and x["ranks"] == 1), None)
                r["equal_to_1_rank"] = None if one is None or one is r else bool(np.array_equal(one["indices"], r["indices"]))
                rows.append(r)
                print(f"{rule:8s} ranks={world} B={budget:>9,d}  {r['seconds']:7.1f} s  {r['x_floor']:.2f}x floor  "
                      f"RSS/rank {max(r['peak_rss_gib_per_rank']):.2f} GiB  selected {r['indices'].size:,d}"
                      + ("" if r["equal_to_1_rank"] is None else f"  same as 1 rank: {r['equal_to_1_rank']}"),
                      flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "indices"} for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
