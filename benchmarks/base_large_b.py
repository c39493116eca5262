"""BASE at the Cluster-Margin paper's batch sizes (issue 11): 2,000,000 x 600 float32 logits with
a 600 x 512 head, B = 10K, 100K, 300K and 1M, against one numpy pass over the logits (the floor)
and the first pass without sampled ceilings (``sample_stride=0``: the rule before them), all
timed in this process, interleaved call by call so that a loaded machine slows each alike.
Prints, per B, min and median of ``--repeat`` calls of each and their ratios to the floor, the
number of passes over the pool (from the same rule driven through _core.BalancedState), the
worst-case bound on passes (every score tied), whether the sampled ceilings held, the peak RSS
and the load average. Needs ~6 GB at the default size. Data and memory measure: the harness
(alscale.al.harness: ``gaussian`` logits and head, ``peak_rss`` = VmHWM of this process).

    python benchmarks/base_large_b.py [--rows N] [--budgets 10000,100000,...] [--repeat R] [--json FILE]
"""
import argparse, json, os, statistics, time

import numpy as np

from alscale import _core
from alscale._backend.arrays import inverse_norms
from alscale.al.harness import gaussian, peak_rss


def passes(L, inv, budget):
    C = L.shape[1]
    state = _core.BalancedState(C, budget, _core.default_extra(C, budget))
    n = 0
    while True:
        state.update(L, False, 0, None, None, inv, 0)
        n += 1
        if state.advance():
            return n, _core.BalancedState(C, budget, _core.default_extra(C, budget)).passes_bound()


def interleaved(calls: dict, repeat: int) -> dict:
    """Each call of ``calls`` once per round, ``repeat`` rounds: {name: [seconds]}."""
    times = {k: [] for k in calls}
    for _ in range(repeat):
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--classes", type=int, default=600)
    ap.add_argument("--budgets", default="10000,100000,300000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    L = gaussian(a.rows, a.classes, seed=0)
    W = gaussian(a.classes, 512, seed=1)
    inv = inverse_norms(W, a.classes)
    rows = []
    print(f"{a.rows:,} x {a.classes} float32, head {a.classes} x 512; min / median of {a.repeat} interleaved calls; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    for B in (int(b) for b in a.budgets.split(",")):
        got, was_sampled, held = _core.select_balanced_sampled_pass(L, False, B, None, inv, 0, _core.SAMPLE_STRIDE)
        same = bool(np.array_equal(got, _core.select_balanced(L, False, B, None, inv, 0, sample_stride=0)))
        t = interleaved({
            "floor": lambda: L.sum(),
            "sampled": lambda: _core.select_balanced(L, False, B, None, inv, 0),
            "unsampled": lambda: _core.select_balanced(L, False, B, None, inv, 0, sample_stride=0),
        }, a.repeat)
        fmin, fmed = min(t["floor"]), statistics.median(t["floor"])
        n, bound = passes(L, inv, B)
        row = {"budget": B, "passes": n, "worst_case_passes": bound, "sampled": was_sampled, "held": held,
               "identical": same, "load": os.getloadavg()[0], "floor_min": fmin, "floor_median": fmed}
        line = [f"B={B:>9,}: floor {fmin:.3f} / {fmed:.3f} s"]
        for k in ("sampled", "unsampled"):
            kmin, kmed = min(t[k]), statistics.median(t[k])
            row.update({f"{k}_min": kmin, f"{k}_median": kmed, f"{k}_x_floor_min": kmin / fmin,
                        f"{k}_x_floor_median": kmed / fmed})
            line.append(f"{k} {kmin:.3f} / {kmed:.3f} s = {kmin / fmin:5.2f}x / {kmed / fmed:5.2f}x the floor")
        rows.append(row)
        print("; ".join(line) + f"; passes {n} (worst case {bound}); ceilings "
              f"{'held' if held else 'did not hold' if was_sampled else 'not sampled'}; identical {same}; "
              f"load {row['load']:.2f}", flush=True)
    peak = peak_rss() / 2**30
    print(f"peak RSS {peak:.2f} GiB; load {os.getloadavg()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "peak_rss_gib": peak, "repeat": a.repeat}, f, indent=1)


if __name__ == "__main__":
    main()
