"""BASE's claim where the paper makes it (issue 22, item 4): class-imbalanced pools.

Fashion-MNIST's pool made long-tailed as the official BASE code makes CIFAR-10 (class c keeps
floor(n_max · ratio^(c/(C-1))) of its rows, :meth:`alscale.al.datasets.Dataset.long_tailed`),
the test split left balanced (1,000 images a class), the loop's convex linear probe on the
pixels trained with and without the class-weighted cross-entropy; eight strategies, five seeds.
A seed's initial labels (random from the long-tailed pool, as the BASE code draws them) are the
same for every strategy, so differences between strategies are paired.

    python benchmarks/imbalanced.py run [--out DIR] [--ratios 0.01,0.1] [--seeds 5] ...
    python benchmarks/imbalanced.py report [--out DIR]

``run`` runs every (ratio, weighting, seed, strategy) in that order — ratio 0.01 first — and
writes each finished run's JSON atomically to DIR/runs/ (its records, seconds, the load average
before and after, the peak RSS so far); every round is checkpointed in DIR/checkpoints/, so a
killed ``run`` started again with the same arguments skips the finished runs and resumes the
interrupted one from its last round (the loop's checkpoint checks the settings). ``report``
prints the Markdown tables of BENCHMARKS.md from DIR/runs/.

Metrics (the test split is balanced, so the test accuracy is also the balanced accuracy, the
mean of the per-class accuracies): test accuracy; the mean accuracy of the three rarest classes
of the pool (7 Sneaker, 8 Bag, 9 Ankle boot); the worst class's accuracy; the labels of those
three classes in the labeled set.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from alscale.al import harness
from alscale.al.datasets import FASHION_CLASSES, load_fashion_mnist
from alscale.al.loop import ActiveLearningLoop, write_json_atomic
from alscale.al.train import linear_probe
from alscale.strategies import get

STRATEGIES = ("random", "balanced-random", "margin", "confidence", "mase", "base", "badge", "cluster-margin")
RARE = (7, 8, 9)  # the three smallest classes of the long-tailed pool


def _floats(text: str) -> list:
    return [float(t) for t in text.split(",") if t.strip()]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("run", "report"))
    p.add_argument("--out", default="imbalanced-results", help="folder of runs/ and checkpoints/")
    p.add_argument("--ratios", type=_floats, default=[0.01, 0.1], help="long-tail ratios (default 0.01,0.1)")
    p.add_argument("--weightings", default="plain,weighted", help="plain, weighted or both (default)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pool-size", type=int, default=60_000,
                   help="random pool subset taken before the long tail (default 60,000: the whole pool, n_max 6,000)")
    p.add_argument("--initial", type=int, default=100)
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--csv", default=None, metavar="PATH", help="report: every round of every run as one CSV")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="report: a PNG of test accuracy and the 3 rarest classes' accuracy vs labels")
    return p.parse_args(argv)


def run_name(ratio: float, weighting: str, strategy: str, seed: int) -> str:
    return f"lt{ratio:g}-{weighting}-{strategy}-seed{seed}"


def run(a: argparse.Namespace) -> None:
    out = Path(a.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "machine.json", {"machine": harness.machine_info(), "argv": sys.argv})
    full = load_fashion_mnist(a.data_dir)
    base_pool = full.subset(a.pool_size, seed=0) if a.pool_size < len(full) else full
    weightings = a.weightings.split(",")
    strategies = a.strategies.split(",")
    todo = [(r, w, s, seed) for r in a.ratios for w in weightings for seed in range(a.seeds) for s in strategies]
    print(f"{len(todo)} runs; {os.cpu_count()} cores; load {os.getloadavg()}", flush=True)
    t_all = time.perf_counter()
    for ratio in a.ratios:
        data = base_pool.long_tailed(ratio, seed=0)
        counts = np.bincount(data.y, minlength=data.num_classes).tolist()
        print(f"# {data.name}: pool {len(data)} rows, class sizes {counts}", flush=True)
        for weighting in weightings:
            for seed in range(a.seeds):
                for strategy in strategies:
                    name = run_name(ratio, weighting, strategy, seed)
                    target = out / "runs" / f"{name}.json"
                    if target.is_file():
                        continue
                    load_before = os.getloadavg()
                    t0 = time.perf_counter()
                    loop = ActiveLearningLoop.resume(
                        out / "checkpoints" / f"{name}.json", data, get(strategy),
                        linear_probe(num_threads=1, class_weighted=weighting == "weighted"),
                        initial=a.initial, budget=a.budget, rounds=a.rounds, seed=seed)
                    records = loop.run()
                    seconds = time.perf_counter() - t0
                    write_json_atomic(target, {
                        "ratio": ratio, "weighting": weighting, "strategy": strategy, "seed": seed,
                        "pool_class_sizes": counts, "config": loop.config(), "records": records,
                        "seconds_this_session": seconds, "load_before": load_before, "load_after": os.getloadavg(),
                        "peak_rss_bytes": harness.peak_rss(),
                    })
                    last = records[-1]
                    print(f"{name}: {seconds:6.1f} s, acc {100 * last['test_accuracy']:.2f} %, rare-3 "
                          f"{100 * np.mean([last['per_class_accuracy'][c] for c in RARE]):.2f} %, "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"done in {time.perf_counter() - t_all:.0f} s", flush=True)


# ---------------------------------------------------------------------------------- report
def metrics_of(record: dict) -> dict:
    per = record["per_class_accuracy"]
    return {"acc": 100 * record["test_accuracy"], "rare": 100 * float(np.mean([per[c] for c in RARE])),
            "worst": 100 * min(per), "rare_labels": sum(record["class_counts"][c] for c in RARE)}


def summary(records: list) -> dict:
    """The run's metrics at the last round and their mean over rounds 1..R (after a selection)."""
    last = metrics_of(records[-1])
    later = [metrics_of(r) for r in records[1:]] or [last]
    return {**{f"{k}_final": v for k, v in last.items()},
            **{f"{k}_mean": float(np.mean([m[k] for m in later])) for k in ("acc", "rare", "worst")}}


def _ms(values: list) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def _diff(values: list) -> str:
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    wins = sum(v > 0 for v in values)
    return f"{'+' if m >= 0 else '−'}{abs(m):.2f} ± {sd:.2f} ({wins}/{len(values)})"


def report(a: argparse.Namespace) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((Path(a.out) / "runs").glob("*.json"))]
    if not runs:
        sys.exit(f"no runs in {a.out}/runs")
    table: dict = {}
    for r in runs:
        table.setdefault((r["ratio"], r["weighting"]), {}).setdefault(r["strategy"], {})[r["seed"]] = summary(r["records"])
    if a.csv:
        write_csv(a.csv, runs)
    if a.plot:
        write_plot(a.plot, runs)
    order = [s for s in STRATEGIES if any(s in v for v in table.values())]
    secs = sum(r["seconds_this_session"] for r in runs)
    loads = [x for r in runs for x in (r["load_before"][0], r["load_after"][0])]
    print(f"{len(runs)} runs, {secs:.0f} s of run time; 1-minute load average {min(loads):.2f}–{max(loads):.2f}; "
          f"peak RSS {max(r['peak_rss_bytes'] for r in runs) / 2**20:.0f} MiB; the 3 rarest classes: "
          f"{', '.join(FASHION_CLASSES[c] for c in RARE)}")
    cols = [("acc_final", "test acc. (= balanced)"), ("rare_final", "3 rarest classes"), ("worst_final", "worst class"),
            ("acc_mean", "test acc., mean over rounds"), ("rare_mean", "3 rarest, mean over rounds"),
            ("rare_labels_final", "labels of the 3 rarest")]
    for (ratio, weighting), by in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        first = next(iter(runs))
        sizes = next(r["pool_class_sizes"] for r in runs if r["ratio"] == ratio)
        print(f"\n#### Long tail {ratio:g}, {'class-weighted' if weighting == 'weighted' else 'plain'} loss "
              f"(pool {sum(sizes):,}: {', '.join(map(str, sizes))})\n")
        n_final = first["config"]["initial"] + first["config"]["budget"] * first["config"]["rounds"]
        print(f"At {n_final} labels, % (mean ± std over the seeds; best mean in bold):\n")
        print("| strategy | " + " | ".join(c[1] for c in cols) + " |")
        print("|---|" + "---:|" * len(cols))
        best = {k: max(statistics.mean(s[k] for s in by[st].values()) for st in order if st in by and st != "balanced-random")
                for k, _ in cols}
        for st in order:
            if st not in by:
                continue
            cells = []
            for k, _ in cols:
                vals = [s[k] for s in by[st].values()]
                cell = _ms(vals)
                if st != "balanced-random" and abs(statistics.mean(vals) - best[k]) < 1e-9 and k != "rare_labels_final":
                    cell = f"**{cell}**"
                cells.append(cell)
            print(f"| {st} ({len(by[st])} seeds) | " + " | ".join(cells) + " |")
        if "base" in by:
            print("\nBASE minus each strategy, same seed (points), mean ± std over the seeds (seeds where BASE is "
                  "ahead):\n")
            dcols = [("acc_final", "test acc."), ("rare_final", "3 rarest"), ("acc_mean", "test acc., mean over rounds"),
                     ("rare_mean", "3 rarest, mean over rounds")]
            print("| BASE vs | " + " | ".join(c[1] for c in dcols) + " |")
            print("|---|" + "---:|" * len(dcols))
            for st in order:
                if st == "base" or st not in by:
                    continue
                seeds = sorted(set(by[st]) & set(by["base"]))
                print(f"| {st} | " + " | ".join(_diff([by["base"][s][k] - by[st][s][k] for s in seeds])
                                               for k, _ in dcols) + " |")


def write_csv(path: str, runs: list) -> None:
    """Every round of every run: the settings, the accuracies and each class's accuracy and labels."""
    import csv

    classes = len(runs[0]["pool_class_sizes"])
    cols = ["ratio", "weighting", "strategy", "seed", "round", "n_labeled", "test_accuracy", "rare3_accuracy",
            "worst_class_accuracy", "imbalance_ratio", *[f"acc_{c}" for c in range(classes)],
            *[f"labels_{c}" for c in range(classes)]]
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in sorted(runs, key=lambda r: (r["ratio"], r["weighting"], STRATEGIES.index(r["strategy"]), r["seed"])):
            for rec in r["records"]:
                per = rec["per_class_accuracy"]
                w.writerow([r["ratio"], r["weighting"], r["strategy"], r["seed"], rec["round"], rec["n_labeled"],
                            f"{rec['test_accuracy']:.4f}", f"{np.mean([per[c] for c in RARE]):.4f}",
                            f"{min(per):.4f}", f"{rec['imbalance_ratio']:.3f}", *[f"{a:.3f}" for a in per],
                            *rec["class_counts"]])
    os.replace(tmp, path)


def write_plot(path: str, runs: list) -> None:
    """One column per (ratio, weighting): test accuracy (top) and the 3 rarest classes' accuracy
    (bottom) vs labels, mean ± std over the seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from alscale.al.report import _axes_plot, summarize

    keys = sorted({(r["ratio"], r["weighting"]) for r in runs})
    fig = Figure(figsize=(4.2 * len(keys), 7.6), dpi=72)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(keys), squeeze=False)
    colors = {s: f"C{i}" for i, s in enumerate(STRATEGIES)}
    for j, (ratio, weighting) in enumerate(keys):
        records = [{**rec, "rare3": float(np.mean([rec["per_class_accuracy"][c] for c in RARE]))}
                   for r in runs if (r["ratio"], r["weighting"]) == (ratio, weighting) for rec in r["records"]]
        for i, key in enumerate(("test_accuracy", "rare3")):
            ax = axes[i][j]
            _axes_plot(ax, summarize(records, key), STRATEGIES, 100.0, colors)
            ax.set_title(f"long tail {ratio:g}, {'class-weighted' if weighting == 'weighted' else 'plain'} loss",
                         fontsize=9)
            ax.set_ylabel("test accuracy (%)" if i == 0 else "3 rarest classes' accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    a = parse()
    if a.what == "run":
        run(a)
    else:
        report(a)


if __name__ == "__main__":
    main()
