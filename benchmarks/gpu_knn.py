"""The exact kNN graph on a lent GPU (issue 12 targets: 1M x 128, k = 20 in <= 2 s; 9M x 64,
k = 10 in <= 60 s): the tensor-core kernel (cuda/knn_tc.cu, TF32 and bf16 candidates) beside
today's float32 kernel and torch's blocked ``normalize; mm; topk``, with an identity check
against the CPU kernel on sampled rows.

    python benchmarks/gpu_knn.py              # 1M x 128 and 9M x 64 (predicted 4-6 minutes on an H200)
    python benchmarks/gpu_knn.py --quick      # 50K x 128 and 200K x 64: build + checks smoke test
    python benchmarks/gpu_knn.py --baselines  # also today's fp32 kernel and torch (1M only: ~35 s)
    python benchmarks/gpu_knn.py --cpu-windows  # no GPU: the candidate windows the bound gives

Each row is printed as JSON (and written to --json): kernel milliseconds (CUDA events, median of
--repeats after a warm-up, on unit rows already on the device; one run without warm-up at 9M), the rows that fell back to the
exact kernel, the peak device memory of the call (the stream-ordered pool's high-water mark, read
through cuda-bindings where it is installed, plus torch's allocations), and the identity with
the CPU kernel (alscale._core.knn_cells on the sampled query rows against every point). The wall
time of ``alscale.knn_graph`` on device points (host normalisation included) is a row of its own.
Not collected by pytest (its name is not test_*.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu import ensure_built, timed  # noqa: E402  (benchmarks/gpu.py: build if needed; CUDA-event medians)

PRECISION_CODES = {"bf16": 0, "tf32": 1}


def pool_high_water(reset: bool = False):
    """Bytes high-water mark of the device's default stream-ordered pool (cudaMallocAsync: the
    kernels' own buffers), or None where cuda-bindings is missing or refuses."""
    try:
        import torch
        from cuda.bindings import runtime as rt

        err, pool = rt.cudaDeviceGetDefaultMemPool(torch.cuda.current_device())
        if err != rt.cudaError_t.cudaSuccess:
            return None
        attr = rt.cudaMemPoolAttr.cudaMemPoolAttrUsedMemHigh
        if reset:
            rt.cudaMemPoolSetAttribute(pool, attr, rt.cuuint64_t(0))
            return 0
        err, value = rt.cudaMemPoolGetAttribute(pool, attr)
        return int(value) if err == rt.cudaError_t.cudaSuccess else None
    except Exception:  # a measurement aid only: never stop the benchmark for it
        return None


def points(n: int, d: int, kind: str, seed: int):
    """Device float32 points: "gauss" (isotropic) or "clustered" (n/100 centres, noise 0.3: the
    near neighbours of real embeddings, where the candidate windows are widest)."""
    import torch

    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, d, device="cuda", generator=g)
    if kind == "clustered":
        centres = torch.randn(max(1, n // 100), d, device="cuda", generator=g)
        x = centres[torch.randint(0, centres.shape[0], (n,), device="cuda", generator=g)] + 0.3 * x
    return x


def cpu_rows(unit_host, rows, k: int, parts: int = 4):
    """The CPU kernel's neighbours of the sampled rows among all points, with knn_cells: the
    sampled rows in ``parts`` cells (threads) that each probe every cell, the other points in one
    cell that probes none (no work). Memory: each part gathers all points twice (n d 8 bytes)."""
    import numpy as np

    from alscale import _core

    n = unit_host.shape[0]
    groups = np.array_split(np.asarray(rows, dtype=np.int64), parts)
    rest = np.setdiff1d(np.arange(n), rows)
    cell_rows = np.concatenate([*groups, rest]).astype(np.int64)
    cell_start = np.cumsum([0] + [len(g) for g in groups] + [len(rest)]).astype(np.int64)
    cells = parts + 1
    probe_start = np.array([c * cells for c in range(parts)] + [parts * cells] * 2, dtype=np.int64)
    probes = np.tile(np.arange(cells, dtype=np.int64), parts)
    idx, sim = _core.knn_cells(unit_host, k, cell_start, cell_rows, probe_start, probes, parts)
    return idx[rows], sim[rows]


def torch_blocked(unit, k: int, block: int = 16384):
    """Today's torch baseline: mm against every point, block by block, then topk."""
    import torch

    out = []
    for s in range(0, unit.shape[0], block):
        sim = unit[s : s + block] @ unit.T
        sim[torch.arange(sim.shape[0], device=sim.device), torch.arange(s, s + sim.shape[0], device=sim.device)] = -2
        out.append(torch.topk(sim, k, dim=1).indices)
    return torch.cat(out)


def cpu_windows(n: int, d: int, k: int, kind: str, queries: int, chunk: int = 1 << 18):
    """On the CPU (no GPU needed): for ``queries`` rows of the benchmark's point set (generated
    here chunk by chunk with torch on the CPU, normalised as alscale does), the number of
    candidates the bound keeps, #{j != i: s^_ij >= RD(k-th largest s^ - 2 E)}, with s^ the
    exact dot product of the rounded operands (float64 sums of exact products), E = eps
    ("global") or the kernel's per-row E_i ("row"). Two passes over the points (k-th largest
    and rho_max, then the counts); memory O(chunk d + queries k)."""
    import numpy as np
    import torch

    from alscale import _core
    from alscale._backend.arrays import unit_rows

    g = torch.Generator().manual_seed(12345)
    centres = torch.randn(max(1, n // 100), d, generator=g) if kind == "clustered" else None

    def block(c):
        gc = torch.Generator().manual_seed(1000 + c)
        rows = min(chunk, n - c * chunk)
        x = torch.randn(rows, d, generator=gc)
        if centres is not None:
            x = centres[torch.randint(0, centres.shape[0], (rows,), generator=gc)] + 0.3 * x
        return torch.from_numpy(unit_rows(x.double().numpy()))  # float32

    def rounded(u, precision):  # bf16 RNE / TF32 RNA on the float32 bits (int32: |u| <= 1, no carry into the sign)
        b = u.view(torch.int32)
        r = (b + 0x7FFF + ((b >> 16) & 1)) & -65536 if precision == "bf16" else (b + 0x1000) & -8192
        return r.view(torch.float32).double()

    q_unit = block(0)[:queries]
    out = {}
    for precision in ("bf16", "tf32"):
        q = rounded(q_unit, precision)
        chunks = -(-n // chunk)
        top = torch.full((queries, k), -np.inf, dtype=torch.float64)
        ss_max = 0.0
        for c in range(chunks):
            u = block(c)
            r = rounded(u, precision)
            ss_max = max(ss_max, float(((r - u.double()) ** 2).sum(dim=1).max()))  # rho_max = rho(largest ss)
            s = q @ r.T
            if c == 0:
                s[torch.arange(queries), torch.arange(queries)] = -np.inf  # the query itself
            top = torch.topk(torch.cat([top, s], dim=1), k, dim=1).values
        kth = top[:, -1].numpy().astype(np.float32)
        rho_max = _core.knn_rounding_norm(ss_max, d)
        q_ss = ((q - q_unit.double()) ** 2).sum(dim=1).numpy()
        two = {"global": np.full(queries, 2.0 * _core.knn_candidate_bound(d, precision), dtype=np.float32),
               "row": np.array([2.0 * _core.knn_row_bound(_core.knn_rounding_norm(float(v), d), rho_max, d, precision)
                                for v in q_ss], dtype=np.float32)}
        # RD(kth - 2E) up to one float lower (conservative for a count)
        taus = {b: torch.from_numpy(np.nextafter(kth - t, np.float32(-np.inf)).astype(np.float64)) for b, t in two.items()}
        counts = {b: torch.zeros(queries, dtype=torch.int64) for b in taus}
        for c in range(chunks):
            s = q @ rounded(block(c), precision).T
            if c == 0:
                s[torch.arange(queries), torch.arange(queries)] = -np.inf
            for b, tau in taus.items():
                counts[b] += (s >= tau[:, None]).sum(dim=1)
        for b, cnt in counts.items():
            out[f"{precision} {b}"] = cnt.numpy()
    return out


def list_limit(k: int) -> int:
    """Candidates a row may keep before the kernel hands it to the fallback: cap - cap/4 with
    cap = knn_tc_capacity(k) (cuda/knn_tc.cu; restated so that --cpu-windows needs no GPU build)."""
    cap = min(256, max(128, -(-4 * k // 32) * 32))
    return cap - cap // 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=256, help="rows checked against the CPU kernel per run")
    ap.add_argument("--baselines", action="store_true", help="also today's fp32 kernel and torch mm+topk (first shape)")
    ap.add_argument("--kinds", default="gauss,clustered")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--cpu-windows", type=int, metavar="QUERIES", default=0,
                    help="no GPU: the candidate windows of QUERIES sampled rows at the benchmark shapes")
    ap.add_argument("--shape", action="append", metavar="N,D,K", help="instead of the default shapes (repeatable)")
    args = ap.parse_args()
    shapes = [(50_000, 128, 20), (200_000, 64, 10)] if args.quick else [(1_000_000, 128, 20), (9_000_000, 64, 10)]
    if args.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape]
    if args.cpu_windows:
        import numpy as np

        rows = []
        for n, d, k in shapes:
            for kind in args.kinds.split(","):
                t = time.perf_counter()
                w = cpu_windows(n, d, k, kind, args.cpu_windows)
                for precision, c in w.items():
                    rows.append(dict(what=f"candidate window {precision} bound", n=n, d=d, k=k, data=kind, queries=len(c),
                                     mean=round(float(c.mean()), 1), median=float(np.median(c)),
                                     p99=float(np.percentile(c, 99)), max=int(c.max()), list_limit=list_limit(k),
                                     over_limit=float((c > list_limit(k)).mean()), seconds=round(time.perf_counter() - t, 1)))
                    print(json.dumps(rows[-1]), flush=True)
        if args.json:
            with open(args.json + ".tmp", "w") as f:
                json.dump(dict(device="cpu", rows=rows), f, indent=1)
            os.replace(args.json + ".tmp", args.json)
        return
    ensure_built()

    import numpy as np
    import torch

    import alscale
    from alscale import _cuda
    from alscale._backend.arrays import unit_rows

    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible: nothing to benchmark")
    name = torch.cuda.get_device_name()
    print(f"device: {name}; torch {torch.__version__}; alscale {alscale.__version__}", flush=True)
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731
    rows = []

    def emit(**row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    for shape_no, (n, d, k) in enumerate(shapes):
        for kind in args.kinds.split(","):
            x = points(n, d, kind, seed=shape_no)
            host = unit_rows(x.double().cpu().numpy())  # alscale's normalisation, as the CPU path
            unit = torch.from_numpy(host).cuda()
            del x
            sample = np.random.default_rng(shape_no).choice(n, size=min(args.samples, n), replace=False)
            t = time.perf_counter()
            ref_idx, ref_sim = cpu_rows(host, sample, k)
            cpu_s = time.perf_counter() - t
            idx = torch.empty(n * k, dtype=torch.int64, device="cuda")
            sim = torch.empty(n * k, dtype=torch.float32, device="cuda")
            kernels = list(PRECISION_CODES) + (["fp32"] if args.baselines and shape_no == 0 else [])
            for precision in kernels:
                fell = []

                def run():
                    if precision == "fp32":
                        _cuda.knn_exact(unit.data_ptr(), n, d, k, idx.data_ptr(), sim.data_ptr(), stream(), unit.device.index)
                    else:
                        fell.append(_cuda.knn_tc(unit.data_ptr(), n, d, k, PRECISION_CODES[precision], idx.data_ptr(),
                                                 sim.data_ptr(), stream(), unit.device.index))

                idx.fill_(-7)
                sim.fill_(float("nan"))
                torch.cuda.reset_peak_memory_stats()
                pool_high_water(reset=True)
                once = precision == "fp32" or n >= 4_000_000  # a run of seconds to a minute: no warm-up, once
                ms = timed(run, 1 if once else args.repeats, warmup=0 if once else 1)
                pool = pool_high_water()
                gi = idx.view(n, k)[torch.from_numpy(sample).cuda()].cpu().numpy()
                gs = sim.view(n, k)[torch.from_numpy(sample).cuda()].cpu().numpy()
                same = bool(np.array_equal(gi, ref_idx) and gs.tobytes() == ref_sim.tobytes())
                written = bool((idx >= 0).all().item() and not torch.isnan(sim).any().item())
                flops = 2.0 * n * n * d
                emit(what=f"knn_tc {precision}" if precision != "fp32" else "knn_exact fp32 (today)", n=n, d=d, k=k,
                     data=kind, ms=round(ms, 2), tflops=round(flops / ms / 1e9, 1), fallback_rows=fell[-1] if fell else None,
                     identical_on_sampled_rows=same, sampled_rows=len(sample), all_written=written,
                     peak_pool_bytes=pool, peak_torch_bytes=torch.cuda.max_memory_allocated(), cpu_check_s=round(cpu_s, 1))
            if args.baselines and shape_no == 0 and kind == "gauss":
                for tf32 in (False, True):
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    ms = timed(lambda: torch_blocked(unit, k), 1, warmup=0)
                    emit(what=f"torch mm+topk ({'tf32' if tf32 else 'fp32'})", n=n, d=d, k=k, data=kind, ms=round(ms, 2))
                torch.backends.cuda.matmul.allow_tf32 = False
            del idx, sim
            if kind == args.kinds.split(",")[0]:  # the whole call on device points, host normalisation included
                xd = unit.clone()
                torch.cuda.synchronize()
                t = time.perf_counter()
                alscale.knn_graph(xd, k)
                torch.cuda.synchronize()
                emit(what="alscale.knn_graph wall (auto)", n=n, d=d, k=k, data=kind,
                     ms=round((time.perf_counter() - t) * 1e3, 1))
                del xd
            del unit
            torch.cuda.empty_cache()

    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(device=name, rows=rows), f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
