"""``alscale query`` (a project, BASE) against the library call on the same memmap.

    python benchmarks/query_memmap.py --dir /tmp/qbench                # 1,281,167 x 1000 float32 (5.1 GB file)
    python benchmarks/query_memmap.py --dir /tmp/qbench --n 20000 --c 100 --repeats 3

Writes DIR/logits.npy (random float32 logits: the harness's ``gaussian``, chunk by chunk) and a project DIR/project
with ``--labeled`` random ids taught, then runs, alternately and each in a fresh process:

- ``library``: ``alscale.select_balanced(np.load(logits, mmap_mode="r"), B, exclude=labeled)``
  with the labeled ids read from the project's labels.csv;
- ``query``: ``alscale query --project DIR/project --logits logits.npy --strategy base --budget B
  --out batch.csv`` (the CLI's main in-process: project lock and files, the selection, the
  scores of the B rows, the CSV and the history written atomically).

Each child reports the seconds of its call (after ``import alscale``) and its peak RSS
(``VmHWM``, Linux: the harness's ``peak_rss``); the parent prints the medians, the ratio query / library, and checks that both
pick the same ids. The first pair is a warm-up (page cache) and is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
import alscale
from alscale.project import ActiveLearner
method, d, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
if method == "library":
    logits = np.load(f"{d}/logits.npy", mmap_mode="r")
    labeled = ActiveLearner(f"{d}/project", create=False).labels.ids
    ids = alscale.select_balanced(logits, budget, exclude=labeled)
else:
    from alscale.cli import main
    assert main(["query", "--project", f"{d}/project", "--logits", f"{d}/logits.npy", "--strategy", "base",
                 "--budget", str(budget), "--seed", "0", "--pending", "query", "--overwrite", "--out", f"{d}/batch.csv"]) == 0
    ids = np.loadtxt(f"{d}/batch.csv", delimiter=",", skiprows=1, usecols=0, dtype=np.int64)
seconds = time.perf_counter() - t
# the harness's one memory measure: VmHWM, this process's own peak RSS
from alscale.al.harness import peak_rss
print(json.dumps({"seconds": seconds, "peak_mib": peak_rss() / 2**20,
                  "digest": int(np.asarray(ids, dtype=np.int64) @ np.arange(1, len(ids) + 1) % (2**61 - 1)),
                  "n": len(ids)}))
"""


def make(d: Path, n: int, c: int, labeled: int, seed: int) -> None:
    import numpy as np

    from alscale.al.harness import gaussian
    from alscale.project import ActiveLearner

    path = d / "logits.npy"
    if not path.exists() or np.load(path, mmap_mode="r").shape != (n, c):
        tmp = d / "logits.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, c))
        gaussian(n, c, seed=seed, out=out)  # the harness's i.i.d. normal rows, chunk by chunk
        out.flush()
        del out
        tmp.replace(path)
    project = d / "project"
    if not project.exists():
        rng = np.random.default_rng(seed + 1)
        ids = rng.choice(n, size=labeled, replace=False)
        ActiveLearner(project, strategy="base", pool_size=n, num_classes=c).teach(ids, rng.integers(0, c, labeled))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--n", type=int, default=1_281_167)
    ap.add_argument("--c", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--labeled", type=int, default=10_000, help="ids taught before the query (excluded)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    make(args.dir, args.n, args.c, args.labeled, args.seed)
    runs = {"library": [], "query": []}
    for r in range(args.repeats + 1):
        for method in runs:
            out = subprocess.run([sys.executable, "-c", CHILD, method, str(args.dir), str(args.budget)],
                                 capture_output=True, text=True, check=True)
            if r:  # the first pair warms the page cache
                runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
    lib, query = runs["library"], runs["query"]
    assert {x["digest"] for x in lib} == {x["digest"] for x in query}, "query and library picked different ids"
    med = {m: statistics.median(x["seconds"] for x in v) for m, v in runs.items()}
    peak = {m: max(x["peak_mib"] for x in v) for m, v in runs.items()}
    print(f"# {args.n} x {args.c} float32 memmap ({args.n * args.c * 4 / 2**30:.2f} GiB), BASE, B = {args.budget}, "
          f"{args.labeled} labeled; {args.repeats} runs each, alternating, after one warm-up pair")
    for m in runs:
        times = ", ".join(f"{x['seconds']:.2f}" for x in runs[m])
        print(f"{m:8s} median {med[m]:.3f} s  (runs: {times})  peak RSS {peak[m]:.0f} MiB")
    print(f"query / library: {med['query'] / med['library']:.3f}x; same ids: yes ({lib[0]['n']} ids)")


if __name__ == "__main__":
    main()
