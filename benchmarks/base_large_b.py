"""BASE at the Cluster-Margin paper's batch sizes (issue 11): 2,000,000 x 600 float32 logits with
a 600 x 512 head, B = 10K, 100K, 300K and 1M, against one numpy pass over the logits (the floor,
measured in the same run). Prints, per B, the median of 3 calls of select_balanced(weight=W),
its ratio to the floor, the number of passes over the pool (from the same rule driven through
_core.BalancedState) and the worst-case bound on passes (every score tied), and the peak RSS.
Needs ~6 GB. Data, timer and memory measure: the harness (alscale.al.harness: ``gaussian``
logits and head, ``time_call`` medians, ``peak_rss`` = VmHWM of this process).

    python benchmarks/base_large_b.py [--rows N] [--budgets 10000,100000,...] [--json FILE]
"""
import argparse, json

import alscale
from alscale import _core
from alscale._backend.arrays import inverse_norms
from alscale.al.harness import gaussian, peak_rss, time_call


def median_time(f, repeat=3):
    return time_call(f, repeat, warmup=0)[0].median


def passes(L, inv, budget):
    C = L.shape[1]
    state = _core.BalancedState(C, budget, _core.default_extra(C, budget))
    n = 0
    while True:
        state.update(L, False, 0, None, None, inv, 0)
        n += 1
        if state.advance():
            return n, _core.BalancedState(C, budget, _core.default_extra(C, budget)).passes_bound() \
                if hasattr(state, "passes_bound") else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--classes", type=int, default=600)
    ap.add_argument("--budgets", default="10000,100000,300000,1000000")
    ap.add_argument("--json")
    a = ap.parse_args()
    L = gaussian(a.rows, a.classes, seed=0)
    W = gaussian(a.classes, 512, seed=1)
    inv = inverse_norms(W, a.classes)
    floor = median_time(lambda: L.sum())
    rows = []
    print(f"{a.rows:,} x {a.classes} float32; floor (one numpy pass) {floor:.3f} s")
    for B in (int(b) for b in a.budgets.split(",")):
        t = median_time(lambda: alscale.select_balanced(L, B, weight=W))
        n, bound = passes(L, inv, B)
        rows.append({"budget": B, "seconds": t, "x_floor": t / floor, "passes": n, "worst_case_passes": bound})
        print(f"B={B:>9,}: {t:7.3f} s = {t / floor:5.2f}x the floor; passes {n} (worst case {bound})", flush=True)
    peak = peak_rss() / 2**30
    print(f"peak RSS {peak:.2f} GiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"floor": floor, "rows": rows, "peak_rss_gib": peak}, f, indent=1)


if __name__ == "__main__":
    main()
