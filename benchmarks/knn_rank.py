"""The ranking of every list's centroid that "lists" does for every point (``knn_rank_lists``):
CPU seconds per call at several probe counts, this build against another in the same run.

    python benchmarks/knn_rank.py [--n 2000000] [--queries 20000] [--probes 1,48,192] \
        [--repeat 3] [--against OLD_TREE/python]

The lists are trained as "lists" trains them (``knn._trained_lists``, 64 points a list) on
heavily overlapping 64-d blobs (the harness's generator, N/100 centres, noise 0.8: 2M points give
the 31,247 lists of BENCHMARKS.md's 2M runs); ``--queries`` of the points are ranked on one
thread, each probe count ``--repeat`` times, the builds alternating (``--against``: another
checkout's ``python`` folder holding its own compiled ``_core``, run in a child process on the
same saved data). Prints, per build and probe count, the min and median CPU seconds
(``process_time``: the load moves it least) and G multiply-adds a second, the load average, and
whether both builds gave the same ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
from alscale import _core
x, c = np.load(sys.argv[1]), np.load(sys.argv[2])
times = {}
for p in map(int, sys.argv[3].split(",")):
    ts = []
    for _ in range(int(sys.argv[4])):
        t = time.process_time()
        r = _core.knn_rank_lists(x, c, p, num_threads=1)
        ts.append(time.process_time() - t)
    times[p] = ts
    np.save(f"{sys.argv[5]}-{p}.npy", r)
print(json.dumps(times))
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--queries", type=int, default=20_000)
    p.add_argument("--probes", default="1,48,192")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two builds")
    p.add_argument("--against", default=None, help="another build's python folder")
    a = p.parse_args(argv)
    import faiss

    from alscale import knn
    from alscale.al.harness import blobs

    x, _ = blobs(a.n, 64, max(1, a.n // 100), 0.8, seed=0)
    unit = knn._unit_points(x)
    del x
    centroids = knn._trained_lists(faiss, unit, 64)
    rng = np.random.default_rng(0)
    q = unit[np.sort(rng.choice(a.n, min(a.queries, a.n), replace=False))]
    del unit
    here = os.path.dirname(os.path.dirname(os.path.abspath(knn.__file__)))
    builds = {"this": here} | ({"against": a.against} if a.against else {})
    runs: dict = {b: {} for b in builds}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/q.npy", q)
        np.save(f"{tmp}/c.npy", centroids)
        load = [os.getloadavg()[0]]
        for _ in range(a.rounds):
            for name, path in builds.items():
                env = {**os.environ, "PYTHONPATH": path}
                out = subprocess.run([sys.executable, "-c", CHILD, f"{tmp}/q.npy", f"{tmp}/c.npy", a.probes,
                                      str(a.repeat), f"{tmp}/{name}"], env=env, capture_output=True, text=True,
                                     check=True)
                for probes, ts in json.loads(out.stdout).items():
                    runs[name].setdefault(int(probes), []).extend(ts)
        load.append(os.getloadavg()[0])
        same = {pp: bool(np.array_equal(np.load(f"{tmp}/this-{pp}.npy"), np.load(f"{tmp}/against-{pp}.npy")))
                for pp in runs["this"]} if a.against else {}
    mac = q.shape[0] * centroids.shape[0] * q.shape[1]
    print(f"{q.shape[0]:,} queries x {centroids.shape[0]:,} lists x {q.shape[1]}, one thread; "
          f"load {load[0]:.2f} -> {load[1]:.2f}")
    for name in builds:
        for probes, ts in sorted(runs[name].items()):
            lo, med = min(ts), statistics.median(ts)
            print(f"{name:8s} probes {probes:4d}: min {lo:.3f} s  median {med:.3f} s  "
                  f"({mac / lo / 1e9:.1f} G multiply-adds/s at the min)" + (
                      f"  same ranks: {same[probes]}" if name == "this" and same else ""), flush=True)


if __name__ == "__main__":
    main()
