"""One exact average-linkage run, for side-by-side time and peak memory (run under /usr/bin/time -v).

    /usr/bin/time -v python benchmarks/hac_exact.py --lib alscale --n 20000
    /usr/bin/time -v python benchmarks/hac_exact.py --lib fastcluster --n 20000

Points: N(0, I_64) float32 (fastcluster and scipy get the float64 copy they convert to anyway).
Prints one JSON line with the linkage time (data generation excluded) and the peak RSS (the
harness's ``peak_rss``: VmHWM of this process; the points are the harness's ``gaussian`` rows).
``alscale bench --suite hac`` runs the same three side by side at N = 20,000 x scale, each case in
its own process, with the dendrograms checked against each other.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from alscale.al.harness import gaussian, peak_rss


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lib", choices=["alscale", "fastcluster", "scipy"], required=True)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--metric", default="euclidean")
    a = p.parse_args()
    x = gaussian(a.n, a.d, seed=0)
    if a.lib == "alscale":
        import alscale

        t = time.perf_counter()
        z = alscale.hac_average(x, metric=a.metric, n_clusters=100).linkage
    else:
        x64 = x.astype(np.float64)
        if a.lib == "fastcluster":
            import fastcluster

            t = time.perf_counter()
            z = fastcluster.linkage(x64, method="average", metric=a.metric)
        else:
            from scipy.cluster.hierarchy import linkage

            t = time.perf_counter()
            z = linkage(x64, "average", metric=a.metric)
    s = time.perf_counter() - t
    print(json.dumps({"lib": a.lib, "n": a.n, "d": a.d, "metric": a.metric, "seconds": round(s, 2),
                      "top_height": float(z[-1, 2]),
                      "peak_rss_gib": round(peak_rss() / 2**30, 2)}))


if __name__ == "__main__":
    main()
