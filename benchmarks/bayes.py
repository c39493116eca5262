"""Benchmarks of the Bayesian family (alscale.bayesian); results in BENCHMARKS.md ("Bayesian").

One part per run (each its own process, so its peak RSS is its own):

    python benchmarks/bayes.py stream  [--n 100000 --classes 1000 --samples 20 --repeats 3]
        BALD over T MC samples of an N x C pool given as an iterable over T: each sample is
        generated on the fly (not timed), then timed: the floor, one numpy pass over it
        (``sample.sum()``), alscale's ``MCScores.update`` on it, and a plain numpy BALD
        accumulation (float32 softmax, sums of p and of p log p); at the end the scores.
        Medians over ``repeats`` walks of the T samples.
    python benchmarks/bayes.py fused   [--n 20000 ...]
        The same values as one (T, N, C) array: the fused kernel against the iterable.
    python benchmarks/bayes.py ratios  [--n 20000 --repeats 7 --threads 0]
        BALD over T samples as one (T, N, C) array and streamed through ``MCScores``, each repeat
        interleaved with the floor (``x.sum()``, one single-threaded numpy pass over the T·N·C
        values) in this process: min and median wall times and their ratios to the floor's, the
        CPU seconds per value, the load average and the peak RSS.
    python benchmarks/bayes.py batchbald [--n 50000 --classes 10 --samples 20 --budget 100 --configs 200]
    python benchmarks/bayes.py baal      [same]
        BatchBALD, B = budget, with ``configs`` label configurations (alscale: exact while they
        fit, then sampled; baal: T x num_draw sampled ones, num_draw = configs / T); baal needs
        N x configs x C float64 in memory, which bounds ``configs``.

On the harness (alscale.al.harness): the MC samples are its ``mc_sample_stream`` / ``mc_samples``
(a per-row signal 2·N(0, 1) shared by the samples plus per-sample N(0, 1) noise), the numpy BALD is
alscale.al.suites' (the peer of ``alscale bench --suite bayes``), peak RSS its ``peak_rss`` (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from alscale.al.harness import mc_sample_stream, mc_samples, peak_rss, time_call
from alscale.al.suites import numpy_bald_scores, numpy_bald_update


def peak_rss_gib() -> float:
    return peak_rss() / 2**30


def stream(args) -> dict:
    import alscale

    walks = {"floor": [], "alscale": [], "numpy": [], "scores": []}
    for rep in range(args.repeats):
        acc = alscale.MCScores(num_threads=args.threads)
        nacc = np.zeros((args.n, args.classes), dtype=np.float32) if args.numpy else None
        nent = np.zeros(args.n) if args.numpy else None
        tf = ta = tn = 0.0
        for x in mc_sample_stream(args.samples, args.n, args.classes, seed=args.seed):
            s = time.perf_counter(); x.sum(); tf += time.perf_counter() - s
            s = time.perf_counter(); acc.update(x); ta += time.perf_counter() - s
            if args.numpy:
                s = time.perf_counter(); numpy_bald_update(x, nacc, nent); tn += time.perf_counter() - s
        s = time.perf_counter(); bald = acc.scores("bald"); tsc = time.perf_counter() - s
        walks["floor"].append(tf)
        walks["alscale"].append(ta + tsc)
        walks["scores"].append(tsc)
        if args.numpy:
            s = time.perf_counter()
            nb = numpy_bald_scores(nacc, nent, args.samples)
            walks["numpy"].append(tn + time.perf_counter() - s)
            err = float(np.abs(nb - bald).max())
        del acc, nacc
    med = {k: float(np.median(v)) if v else None for k, v in walks.items()}
    out = {"part": "stream", "n": args.n, "classes": args.classes, "samples": args.samples, "repeats": args.repeats,
           "median_s": med, "ratio_alscale_to_floor": med["alscale"] / med["floor"],
           "ratio_numpy_to_floor": med["numpy"] / med["floor"] if med["numpy"] else None,
           "max_abs_diff_numpy_float32": err if args.numpy else None, "peak_rss_gib": peak_rss_gib()}
    return out


def fused(args) -> dict:
    import alscale

    x = mc_samples(args.samples, args.n, args.classes, seed=args.seed)

    def t(f):
        return time_call(f, args.repeats, warmup=0)[0].median

    floor = t(lambda: x.sum())
    a = t(lambda: alscale.bald_scores(x, num_threads=args.threads))
    b = t(lambda: alscale.bald_scores(list(x), num_threads=args.threads))
    same = alscale.bald_scores(x).tobytes() == alscale.bald_scores(list(x)).tobytes()
    return {"part": "fused", "n": args.n, "classes": args.classes, "samples": args.samples,
            "median_s": {"floor": floor, "fused_array": a, "iterable": b},
            "ratio_fused_to_floor": a / floor, "ratio_iterable_to_floor": b / floor, "same_bits": same,
            "peak_rss_gib": peak_rss_gib()}


def ratios(args) -> dict:
    import os

    import alscale

    x = mc_samples(args.samples, args.n, args.classes, seed=args.seed)
    samples = list(x)

    def streamed():
        acc = alscale.MCScores(num_threads=args.threads)
        for s in samples:
            acc.update(s)
        return acc.scores("bald")

    calls = {"floor": x.sum, "fused": lambda: alscale.bald_scores(x, num_threads=args.threads), "streamed": streamed}
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    for _ in range(args.repeats):
        for k, f in calls.items():
            c, s = time.process_time(), time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - s)
            cpu[k].append(time.process_time() - c)
    same = alscale.bald_scores(x).tobytes() == streamed().tobytes()
    fl = wall["floor"]
    out = {"part": "ratios", "n": args.n, "classes": args.classes, "samples": args.samples,
           "threads": args.threads, "repeats": args.repeats, "same_bits": same, "load": os.getloadavg()[0],
           "peak_rss_gib": peak_rss_gib()}
    for k in calls:
        v = wall[k]
        out[k] = {"min_s": min(v), "median_s": float(np.median(v)), "min_ratio": min(v) / min(fl),
                  "median_ratio": float(np.median(v) / np.median(fl)),
                  "cpu_ns_per_value": min(cpu[k]) / x.size * 1e9}
    return out


def pool(args) -> np.ndarray:
    """(T, N, C) float64 logits of a small MC-dropout-like pool (the harness's ``mc_samples``)."""
    return mc_samples(args.samples, args.n, args.classes, seed=args.seed).astype(np.float64)


def batchbald(args) -> dict:
    import alscale

    x = pool(args)
    s = time.perf_counter()
    picks = alscale.select_batchbald(x, args.budget, num_samples=args.configs, seed=0, num_threads=args.threads)
    t = time.perf_counter() - s
    return {"part": "batchbald", "n": args.n, "classes": args.classes, "samples": args.samples,
            "budget": args.budget, "configs": args.configs, "seconds": t, "picks": picks.tolist(),
            "bald_top": alscale.select_bald(x, args.budget).tolist(), "peak_rss_gib": peak_rss_gib()}


def baal(args) -> dict:
    from alscale.al.suites import baal_batchbald_picks, baal_probabilities

    pb = baal_probabilities(pool(args))  # (N, C, T), not timed
    s = time.perf_counter()
    picks = baal_batchbald_picks(pb, args.budget, args.configs)  # baal's greedy loop
    t = time.perf_counter() - s
    return {"part": "baal", "n": args.n, "classes": args.classes, "samples": args.samples, "budget": args.budget,
            "configs": args.samples * max(1, args.configs // args.samples), "seconds": t,
            "picks": sorted(picks.tolist()), "peak_rss_gib": peak_rss_gib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("stream", "fused", "ratios", "batchbald", "baal"))
    ap.add_argument("--n", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--configs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-numpy", dest="numpy", action="store_false", help="stream: skip the numpy BALD baseline")
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    args = ap.parse_args()
    defaults = {"stream": (100_000, 1000), "fused": (20_000, 1000), "ratios": (20_000, 1000), "batchbald": (50_000, 10), "baal": (50_000, 10)}
    args.n = args.n or defaults[args.part][0]
    args.classes = args.classes or defaults[args.part][1]
    result = {"stream": stream, "fused": fused, "ratios": ratios, "batchbald": batchbald, "baal": baal}[args.part](args)
    text = json.dumps(result)
    print(text if len(text) < 2000 else json.dumps({k: v for k, v in result.items() if k != "picks"}))
    if args.json:
        with open(args.json, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
