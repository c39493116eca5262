"""One command for a lent GPU: build alscale with its CUDA kernels if needed, check every GPU
kernel against the CPU kernel, time them at the papers' scales and print a table.

    python benchmarks/gpu.py                 # everything (about 10 minutes on an H100)
    python benchmarks/gpu.py --quick         # small shapes: a smoke test of build + checks
    python benchmarks/gpu.py --json out.json --profile prof.txt   # + rows as JSON, + kernel profile

Issue 12 rows (BASE served on the device, W on the device): select_balanced with W on the host
and on the device beside the copy floor and the torch loop, the head's inverse norms on the
device alone (a tiny pool: 1000 x 2048 and 20,000 x 2048), the worst case (every score tied:
extra passes), and the 9M x 600 bf16 pool at B = 100K and 1M, each checked against the CPU.

Timings: CUDA events around each call on the current stream, warm-up first, median of
``--repeats``. The floor is a device-to-device copy of the same logits (torch.clone); the torch
baselines are softmax + torch.topk (uncertainty) and a per-class torch.topk loop (BASE, the
official implementation's shape). Not collected by pytest (its name is not test_*.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_built() -> None:
    try:
        import alscale._cuda  # noqa: F401
        return
    except ImportError:
        pass
    print("alscale._cuda missing: building (pip install --no-build-isolation .) ...", flush=True)
    t = time.time()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "-q", ROOT], check=True)
    print(f"built in {time.time() - t:.0f} s", flush=True)
    subprocess.run([sys.executable, *sys.argv], check=True)  # a fresh interpreter imports the new build
    sys.exit(0)


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of fn() between CUDA events on the current stream."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def torch_margin_topk(x, budget):
    import torch

    p = torch.softmax(x.float(), dim=1)
    top2 = torch.topk(p, 2, dim=1).values
    return torch.topk(top2[:, 0] - top2[:, 1], budget, largest=False).indices


def torch_base_loop(x, budget, inv=None):
    """BASE the official implementation's way: per class, scores for every row, torch.topk."""
    import torch

    n, c = x.shape
    lf = x.double()
    lp, p = lf.max(dim=1)
    gap = lp[:, None] - lf
    r = gap if inv is None else gap * inv[p]
    r[torch.arange(n, device=x.device), p] = float("inf")
    rmin = r.min(dim=1).values
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    picks = []
    for cls in range(c):
        q = budget // c + (cls < budget % c)
        if q == 0:
            continue
        s = torch.where(p == cls, rmin, r[:, cls])
        s = torch.where(taken, torch.full_like(s, float("inf")), s)
        idx = torch.topk(s, q, largest=False).indices
        taken[idx] = True
        picks.append(idx)
    return torch.cat(picks)


def host_only(quick: bool) -> None:
    """What issue 12 measures without a GPU: the capacity arithmetic of the device's passes (the
    compact candidate arrays the serving sorts, the worst-case pass count with pass_memory 0) and
    the host's BalancedState serving (advance()) that the device's serving replaces."""
    import numpy as np

    from alscale import _core

    print("shape (C, B)        cap_max   sum(cap)  sort arrays MiB  passes_bound (pm 0 / default)")
    for c, b in [(1000, 10_000), (600, 100_000), (600, 1_000_000), (20_000, 100_000), (20_000, 1_000_000)]:
        extra = _core.default_extra(c, b)
        cap = _core.BalancedState(c, b, extra, 0).snapshot()["capacity"]
        mib = int(cap.sum()) * 32 / 2**20  # keys + rows, twice (the two stable sorts' buffers)
        print(f"({c:6d}, {b:9d})  {int(cap.max()):8d} {int(cap.sum()):10d} {mib:16.1f}  "
              f"{_core.BalancedState(c, b, extra, 0).passes_bound():6d} / {_core.BalancedState(c, b, extra).passes_bound()}")
    n, c = (200_000, 600) if quick else (1_200_000, 600)
    rng = np.random.default_rng(0)
    x = np.empty((n, c), np.uint16)  # bfloat16 bits of N(0, 3^2) logits, 100K rows at a time
    for s in range(0, n, 100_000):
        f = (rng.standard_normal((min(100_000, n - s), c), dtype=np.float32) * 3).view(np.uint32)
        x[s:s + 100_000] = (f >> 16).astype(np.uint16)
    for b in (n // 12, (5 * n) // 6):
        ups, advs = [], []
        for _ in range(3):
            state = _core.BalancedState(c, b, _core.default_extra(c, b), 0)  # the device's capacities
            up = adv = 0.0
            passes = 0
            while True:
                passes += 1
                t0 = time.perf_counter()
                state.update(x, True, 0, None, None, None, 0)
                t1 = time.perf_counter()
                done = state.advance()
                t2 = time.perf_counter()
                up, adv = up + t1 - t0, adv + t2 - t1
                if done:
                    break
            ups.append(up)
            advs.append(adv)
        print(f"host BalancedState {n}x{c} bf16 B={b} (pass_memory 0): {passes} pass(es); update "
              f"{statistics.median(ups) * 1e3:.0f} ms, advance (host serving) {statistics.median(advs) * 1e3:.0f} ms "
              f"(medians of 3, {os.cpu_count()} cores)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes only")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--oi-classes", type=int, default=600, help="classes of the Open Images-shaped pool")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--profile", help="write a torch.profiler kernel table of one select_balanced call (W on device)")
    ap.add_argument("--full-checks", action="store_true", help="also check the 9M-row selections against the CPU")
    ap.add_argument("--host-only", action="store_true", help="no GPU: the capacity arithmetic and the host serving")
    args = ap.parse_args()
    if args.host_only:
        return host_only(args.quick)
    ensure_built()

    import numpy as np
    import torch

    import alscale

    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible: nothing to benchmark")
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    print(f"device: {name}; torch {torch.__version__}; alscale {alscale.__version__}; HAS_CUDA={alscale.HAS_CUDA}")
    rows = []

    def row(what, shape, dtype, ms, floor=None, baseline=None, check=""):
        rows.append(dict(what=what, shape=shape, dtype=dtype, ms=ms, floor_ms=floor, torch_ms=baseline, check=check))
        f = f"{ms / floor:6.2f}x" if floor else "      "
        t = f"{baseline / ms:7.1f}x" if baseline else "       "
        print(f"{what:34s} {shape:>16s} {dtype:>9s} {ms:10.2f} ms  floor {f}  torch/alscale {t}  {check}", flush=True)

    # ---- 1. correctness against the CPU kernels (identical indices) ----
    n_check = 20_000 if args.quick else 200_000
    for dtype in ("float32", "bfloat16", "float16", "float64"):
        cpu = (torch.randn(n_check, 1000, dtype=torch.float64) * 3).to(getattr(torch, dtype))
        gpu = cpu.to(dev)
        w = torch.randn(1000, 64, dtype=torch.float64)
        ex = np.random.default_rng(0).random(n_check) < 0.2
        ok = True
        for fn, kw in [(alscale.select_balanced, {}), (alscale.select_balanced, {"weight": w}),
                       (alscale.select_margin, {}), (alscale.select_confidence, {}), (alscale.select_entropy, {}),
                       (alscale.select_boundary, {"weight": w})]:
            a = fn(gpu, 10_000, exclude=torch.from_numpy(ex).to(dev), **kw).cpu().numpy()
            b = fn(cpu, 10_000, exclude=ex, **kw).numpy()
            same = np.array_equal(a, b)
            ok &= same
            if not same:
                print(f"MISMATCH {fn.__name__} {kw and 'weight'} {dtype}: first differing position "
                      f"{int(np.argmax(a != b)) if a.shape == b.shape else 'shape'}")
        for fn in (alscale.margin_scores, alscale.confidence_scores, alscale.boundary_scores):
            same = np.array_equal(fn(gpu).cpu().numpy(), fn(cpu).numpy())
            ok &= same
            if not same:
                print(f"MISMATCH {fn.__name__} {dtype}")
        print(f"check {dtype:9s} {n_check} x 1000 vs CPU: {'identical' if ok else 'DIFFERENT'}", flush=True)
        del gpu
    xk = torch.randn(5_000 if args.quick else 30_000, 128)
    ic, sc = alscale.knn_graph(xk, 20)
    ig, sg = alscale.knn_graph(xk.to(dev), 20)
    knn_ok = np.array_equal(ig.cpu().numpy(), ic) and np.array_equal(sg.cpu().numpy(), sc)
    print(f"check kNN {tuple(xk.shape)} k=20 vs CPU: {'identical' if knn_ok else 'DIFFERENT'}", flush=True)

    # ---- 2. ImageNet scale: 1.28M x 1000 logits, B = 10,000 ----
    n = 100_000 if args.quick else 1_281_167
    budget = 10_000
    weight = torch.randn(1000, 2048, dtype=torch.float64)
    inv = torch.from_numpy(alscale._backend.arrays.inverse_norms(weight.numpy(), 1000)).to(dev)
    print(f"\n{'':34s} {'shape':>16s} {'dtype':>9s} {'median':>13s}")
    for dtype in ("float32", "bfloat16"):
        x = (torch.randn(n, 1000, device=dev) * 3).to(getattr(torch, dtype))
        shape = f"{n}x1000"
        floor = timed(lambda: x.clone(), args.repeats)
        row("copy (floor)", shape, dtype, floor, floor)
        t_margin = timed(lambda: torch_margin_topk(x, budget), args.repeats)
        row("torch softmax+topk (margin)", shape, dtype, t_margin, floor)
        row("alscale margin_scores", shape, dtype, timed(lambda: alscale.margin_scores(x), args.repeats), floor)
        row("alscale select_margin", shape, dtype, timed(lambda: alscale.select_margin(x, budget), args.repeats), floor, t_margin)
        row("alscale select_entropy", shape, dtype, timed(lambda: alscale.select_entropy(x, budget), args.repeats), floor)
        row("alscale select_boundary (W)", shape, dtype,
            timed(lambda: alscale.select_boundary(x, budget, weight=weight), args.repeats), floor)
        t_base = timed(lambda: torch_base_loop(x, budget), max(3, args.repeats // 3), warmup=1)
        row("torch per-class topk loop (BASE)", shape, dtype, t_base, floor)
        row("alscale select_balanced", shape, dtype,
            timed(lambda: alscale.select_balanced(x, budget), args.repeats), floor, t_base)
        t_base_w = timed(lambda: torch_base_loop(x, budget, inv), max(3, args.repeats // 3), warmup=1)
        row("alscale select_balanced (W)", shape, dtype,
            timed(lambda: alscale.select_balanced(x, budget, weight=weight), args.repeats), floor, t_base_w)
        weight_dev = weight.to(dev)
        row("alscale select_balanced (W on device)", shape, dtype,
            timed(lambda: alscale.select_balanced(x, budget, weight=weight_dev), args.repeats), floor, t_base_w)
        row("alscale select_boundary (W on device)", shape, dtype,
            timed(lambda: alscale.select_boundary(x, budget, weight=weight_dev), args.repeats), floor)
        if args.profile and dtype == "float32":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                alscale.select_balanced(x, budget, weight=weight_dev)
                torch.cuda.synchronize()
            with open(args.profile, "w") as f:
                f.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))
        if not args.quick:  # full-scale identity with the CPU kernel
            xc = x.cpu()
            for kw, label in [({}, ""), ({"weight": weight_dev}, " (W on device)")]:
                cpu_kw = {"weight": weight} if kw else {}
                same = np.array_equal(alscale.select_balanced(x, budget, **kw).cpu().numpy(),
                                      alscale.select_balanced(xc, budget, **cpu_kw).numpy())
                print(f"check select_balanced{label} {shape} {dtype} vs CPU: {'identical' if same else 'DIFFERENT'}")
            del xc
        del weight_dev
        del x
        torch.cuda.empty_cache()

    # ---- 2b. the head on the device alone (a tiny pool), and the worst case (every score tied) ----
    for c_head in (1000, 20_000):
        w_dev = torch.randn(c_head, 2048, device=dev, dtype=torch.float32)
        tiny = torch.randn(1024, c_head, device=dev)
        row("head norms on device (1024-row pool)", f"{c_head}x2048", "float32",
            timed(lambda: alscale.select_balanced(tiny, 1, weight=w_dev), 3, warmup=1))
        del w_dev, tiny
        torch.cuda.empty_cache()
    tied = torch.zeros(n, 1000, device=dev)
    tied[:, 0] = 1.0
    floor_t = timed(lambda: tied.clone(), args.repeats)
    row("alscale select_balanced (all tied)", f"{n}x1000", "float32",
        timed(lambda: alscale.select_balanced(tied, budget), 3, warmup=1), floor_t)
    same = np.array_equal(alscale.select_balanced(tied, budget).cpu().numpy(),
                          alscale.select_balanced(tied.cpu(), budget).numpy())
    print(f"check select_balanced all tied {n}x1000 vs CPU: {'identical' if same else 'DIFFERENT'}")
    del tied
    torch.cuda.empty_cache()

    # ---- 3. Open Images shape: 9M rows (bf16), B = 100,000 and 1,000,000, in chunks of 1M rows
    # for the scores; BASE on the whole pool at once where it fits ----
    n_oi = 300_000 if args.quick else 9_000_000
    c_oi = args.oi_classes
    x = torch.empty(n_oi, c_oi, dtype=torch.bfloat16, device=dev)
    for s in range(0, n_oi, 1_000_000):
        x[s:s + 1_000_000] = (torch.randn(min(1_000_000, n_oi - s), c_oi, device=dev) * 3).to(torch.bfloat16)
    shape = f"{n_oi}x{c_oi}"
    floor = timed(lambda: x.clone(), 3, warmup=1)
    row("copy (floor)", shape, "bfloat16", floor, floor)

    def chunked_margin():
        return torch.cat([alscale.margin_scores(x[s:s + 1_000_000]) for s in range(0, n_oi, 1_000_000)])

    row("alscale margin_scores (1M chunks)", shape, "bfloat16", timed(chunked_margin, 3, warmup=1), floor)
    for b in (100_000, 1_000_000):
        b = min(b, n_oi // 2)
        row(f"alscale select_margin B={b}", shape, "bfloat16", timed(lambda: alscale.select_margin(x, b), 3, warmup=1), floor)
        fits = n_oi * c_oi * 8 * 3 < 0.8 * torch.cuda.mem_get_info()[0]  # the loop's float64 N x C temporaries
        t_base = timed(lambda: torch_base_loop(x, b), 1, warmup=0) if fits else None
        row(f"alscale select_balanced B={b}", shape, "bfloat16",
            timed(lambda: alscale.select_balanced(x, b), 3, warmup=1), floor, t_base)
        if args.full_checks or args.quick:
            same = np.array_equal(alscale.select_balanced(x, b).cpu().numpy(),
                                  alscale.select_balanced(x.cpu(), b).numpy())
            print(f"check select_balanced B={b} {shape} vs CPU: {'identical' if same else 'DIFFERENT'}")
    del x
    torch.cuda.empty_cache()

    # ---- 4. kNN graph: 1M x 128 fp32, k = 20 (target <= 10 s on an H100) ----
    nk = 50_000 if args.quick else 1_000_000
    pts = torch.randn(nk, 128, device=dev)
    t0 = time.perf_counter()
    alscale.knn_graph(pts, 20)
    torch.cuda.synchronize()
    row("alscale knn_graph k=20 (wall)", f"{nk}x128", "float32", (time.perf_counter() - t0) * 1e3)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=name, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
