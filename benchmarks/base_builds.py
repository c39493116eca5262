"""BASE at a large budget (or any selection kernel, ``--kernels``), two builds of alscale side by
side: each build (a folder to put on PYTHONPATH, e.g. a copy of ``python/`` with its ``_core``
module) runs in a worker process of its own, both on the same logits (the harness's
``gaussian``, seed 0, in the worker's own memory as ``base_large_b.py`` has them) and head, and
the calls alternate old, new, old, ...
with each worker's floor (one numpy pass, ``L.sum()``) in the same rounds, so that a loaded
machine slows both alike. Prints per budget min and median of ``--repeat`` rounds for each
build and its ratio to the floor, the new/old ratios of the min, the lower quartile and the
median (wall and CPU time), whether the picks are identical, each worker's peak RSS and the
load average. Needs twice the logits' memory (1.2 GB per worker at 500,000 x 600).

    python benchmarks/base_builds.py --old OLD_DIR --new NEW_DIR [--rows N] [--budgets B1,B2]
        [--repeat R] [--threads T] [--kernels base,margin,...]

Kernels: ``base`` (``_core.select_balanced`` with the head's inverse norms made once, the
default), ``base_w`` and ``mase_w`` (``select_balanced`` / ``select_boundary`` given the head
weight: its inverse norms in every call, as ``kernel_ratios.py`` times them), ``margin``,
``confidence``, ``entropy``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import hashlib, json, sys, time
import numpy as np
from alscale import _core
from alscale._backend.arrays import inverse_norms
from alscale.al.harness import gaussian, peak_rss
import alscale
rows, classes, threads = (int(a) for a in sys.argv[1:4])
L = gaussian(rows, classes, seed=0)
W = gaussian(classes, 512, seed=1).astype(np.float64)
inv = inverse_norms(W, classes)
kernels = {
    "base": lambda b: _core.select_balanced(L, False, b, None, inv, threads),
    "base_w": lambda b: alscale.select_balanced(L, b, weight=W, num_threads=threads),
    "mase_w": lambda b: alscale.select_boundary(L, b, weight=W, num_threads=threads),
    "margin": lambda b: alscale.select_margin(L, b, num_threads=threads),
    "confidence": lambda b: alscale.select_confidence(L, b, num_threads=threads),
    "entropy": lambda b: alscale.select_entropy(L, b, num_threads=threads),
}
print("ready", flush=True)
for line in sys.stdin:
    cmd, budget = line.split()
    t0, c0 = time.perf_counter(), time.process_time()
    if cmd == "floor":
        L.sum()
        digest = ""
    else:
        got = kernels[cmd](int(budget))
        digest = hashlib.sha1(np.asarray(got).tobytes()).hexdigest()
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "picks": digest,
                      "peak_rss": peak_rss()}), flush=True)
"""


KERNELS = ("base", "base_w", "mase_w", "margin", "confidence", "entropy")  # WORKER's `kernels`


def quartile(values, f):
    return sorted(values)[int(f * (len(values) - 1))]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="folder with the old build's alscale package")
    ap.add_argument("--new", required=True, help="folder with the new build's alscale package")
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--classes", type=int, default=600)
    ap.add_argument("--budgets", default="2500,250000")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="num_threads of the calls (0: all cores)")
    ap.add_argument("--kernels", default="base", help=f"comma-separated, of {', '.join(KERNELS)} (default base)")
    a = ap.parse_args(argv)
    kernels = a.kernels.split(",")
    unknown = sorted(set(kernels) - set(KERNELS))
    if unknown:
        raise SystemExit(f"unknown kernel(s) {unknown}")
    workers = {}
    for name, path in (("old", a.old), ("new", a.new)):
        env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=str(a.threads or os.cpu_count()))
        workers[name] = subprocess.Popen([sys.executable, "-c", WORKER, str(a.rows), str(a.classes), str(a.threads)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    for name, w in workers.items():
        if w.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {name} worker did not start (is {getattr(a, name)} an alscale build?)")

    def call(name, cmd, budget=0):
        workers[name].stdin.write(f"{cmd} {budget}\n")
        workers[name].stdin.flush()
        return json.loads(workers[name].stdout.readline())

    for name in workers:
        call(name, "floor")  # pages touched once before timing
    print(f"{a.rows:,} x {a.classes} float32, head {a.classes} x 512, num_threads={a.threads}; min / median of "
          f"{a.repeat} interleaved rounds; load {os.getloadavg()}", flush=True)
    for kernel, budget in ((k, int(b)) for k in kernels for b in a.budgets.split(",")):
        runs = {k: [] for k in ("floor old", "old", "floor new", "new")}
        for _ in range(a.repeat):
            for k in runs:
                runs[k].append(call(k.split()[-1], "floor" if k.startswith("floor") else kernel, budget))
        wall = {k: [r["wall"] for r in v] for k, v in runs.items()}
        cpu = {k: [r["cpu"] for r in v] for k, v in runs.items()}
        floor = wall["floor old"] + wall["floor new"]
        fmin, fmed = min(floor), statistics.median(floor)
        line = [f"B={budget:,}: floor {fmin:.3f} / {fmed:.3f} s"]
        if kernel != "base" or len(kernels) > 1:
            line[0] = f"{kernel} " + line[0]
        for k in ("old", "new"):
            kmin, kmed = min(wall[k]), statistics.median(wall[k])
            line.append(f"{k} {kmin:.3f} / {kmed:.3f} s = {kmin / fmin:.2f}x / {kmed / fmed:.2f}x the floor")
        for label, t in (("wall", wall), ("cpu", cpu)):
            line.append(f"new/old {label}: min {min(t['new']) / min(t['old']):.3f}, lower quartile "
                        f"{quartile(t['new'], .25) / quartile(t['old'], .25):.3f}, median "
                        f"{statistics.median(t['new']) / statistics.median(t['old']):.3f}")
        picks = {r["picks"] for k in ("old", "new") for r in runs[k]}
        line.append("picks identical" if len(picks) == 1 else "PICKS DIFFER")
        print("; ".join(line) + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    rss = {name: call(name, "floor")["peak_rss"] / 2**30 for name in workers}
    print(f"peak RSS: old worker {rss['old']:.2f} GiB, new worker {rss['new']:.2f} GiB; load {os.getloadavg()}")
    for w in workers.values():
        w.stdin.close()
        w.wait()
        w.stdout.close()


if __name__ == "__main__":
    main()
