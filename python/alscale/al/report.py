"""Results of ``alscale run``: the CSV, the JSON, the PNG plots and the printed table."""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, TextIO

import numpy as np

__all__ = ["CSV_COLUMNS", "MULTILABEL_CSV_COLUMNS", "accuracy_table", "plot", "summarize", "write_csv"]

CSV_COLUMNS = (
    "strategy", "seed", "round", "n_labeled", "test_accuracy",
    "empty_classes", "imbalance_ratio", "label_entropy",
    "batch_empty_classes", "batch_imbalance_ratio", "batch_label_entropy",
    "val_accuracy", "epochs", "train_seconds", "select_seconds",
)
#: The CSV of a multi-label run: test mAP instead of the accuracies, and the positive labels.
MULTILABEL_CSV_COLUMNS = (
    "strategy", "seed", "round", "n_labeled", "test_map", "positives",
    "empty_classes", "imbalance_ratio", "label_entropy",
    "batch_empty_classes", "batch_imbalance_ratio", "batch_label_entropy",
    "epochs", "train_seconds", "select_seconds",
)


def _metric(records: Sequence[dict]) -> str:
    """The test metric the records hold: ``test_map`` (multi-label runs) or ``test_accuracy``."""
    return "test_map" if records and "test_map" in records[0] else "test_accuracy"


def write_csv(path: Path, records: Iterable[dict]) -> None:
    """The records' CSV_COLUMNS (MULTILABEL_CSV_COLUMNS for a multi-label run's), written to a
    temporary file renamed over ``path``: a write cut short (Ctrl-C, a full disk) leaves the
    earlier file whole, or none."""
    records = list(records)
    columns = MULTILABEL_CSV_COLUMNS if _metric(records) == "test_map" else CSV_COLUMNS
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in records:
                w.writerow(r)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def summarize(records: Sequence[dict], key: str) -> Dict[str, Dict[int, tuple]]:
    """{strategy: {n_labeled: (mean, std over seeds, seeds)}} of ``key``."""
    groups: Dict[str, Dict[int, List[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[r["strategy"]][r["n_labeled"]].append(float(r[key]))
    out: Dict[str, Dict[int, tuple]] = {}
    for s, by_n in groups.items():
        out[s] = {}
        for n, v in sorted(by_n.items()):
            a = np.asarray(v)
            finite = a[np.isfinite(a)]
            mean = float(finite.mean()) if finite.size else float("nan")
            std = float(finite.std()) if finite.size else float("nan")
            out[s][n] = (mean, std, a.size)
    return out


def accuracy_table(records: Sequence[dict], strategies: Sequence[str], file: TextIO) -> None:
    """Test accuracy (%) per strategy at each label count — test mAP (%) for a multi-label run's
    records: mean ± std over seeds; the best mean at each label count is starred."""
    acc = summarize(records, _metric(records))
    counts = sorted({n for s in acc.values() for n in s})
    names = [s for s in strategies if s in acc]
    width = max(14, *(len(s) + 2 for s in names))
    print(f"{'labels':>8}" + "".join(s.rjust(width) + " " for s in names), file=file)
    for n in counts:
        means = {s: acc[s][n][0] for s in names if n in acc[s]}
        best = max((m for m in means.values() if not math.isnan(m)), default=float("nan"))
        cells = []
        for s in names:
            if s not in means:
                cells.append("-".rjust(width) + " ")
                continue
            cell = f"{100 * means[s]:.2f} ± {100 * acc[s][n][1]:.2f}"
            cells.append(cell.rjust(width) + ("*" if means[s] == best else " "))
        print(f"{n:>8}" + "".join(cells), file=file)


def _axes_plot(ax, stats: Dict[str, Dict[int, tuple]], strategies: Sequence[str], scale: float = 1.0,
               colors: Dict[str, str] | None = None) -> None:
    for s in strategies:
        if s not in stats:
            continue
        n = np.array(sorted(stats[s]))
        mean = np.array([stats[s][k][0] for k in n]) * scale
        std = np.array([stats[s][k][1] for k in n]) * scale
        line, = ax.plot(n, mean, marker="o", markersize=3, label=s, **({"color": colors[s]} if colors else {}))
        ax.fill_between(n, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("labeled examples")
    ax.grid(True, alpha=0.3)


def _minus_random(records: Sequence[dict], key: str) -> List[dict]:
    """The records with ``key`` minus the random strategy's at the same seed and label count
    (records without such a random record are left out)."""
    base = {(r["seed"], r["n_labeled"]): float(r[key]) for r in records if r["strategy"] == "random"}
    return [{**r, key: float(r[key]) - base[(r["seed"], r["n_labeled"])]} for r in records
            if r["strategy"] != "random" and (r["seed"], r["n_labeled"]) in base]


def plot(records: Sequence[dict], strategies: Sequence[str], out_dir: Path, title: str = "") -> List[Path]:
    """accuracy.png (test accuracy vs labels, mean ± std over seeds; a multi-label run's: map.png,
    test mAP, and beside it, when random ran, each strategy's mAP minus random's of the same
    seed, mean ± std over the seeds) and balance.png (imbalance ratio and normalized label
    entropy of the labeled set — of its positive labels, multi-label — vs labels). Uses the Agg
    canvas directly: no pyplot, no GUI backend."""
    metric = _metric(records)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    paired = metric == "test_map" and any(r["strategy"] == "random" for r in records)
    fig = Figure(figsize=(11, 4.4) if paired else (6.4, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 2)[0] if paired else fig.add_subplot()
    colors = {s: f"C{i % 10}" for i, s in enumerate(strategies)} if paired else None
    if paired:
        right = fig.axes[1]
        _axes_plot(right, summarize(_minus_random(records, metric), metric), [s for s in strategies if s != "random"],
                   100.0, colors)
        right.axhline(0.0, color=colors["random"], linewidth=1.0)
        right.set_ylabel("test mAP minus random's, same seed (points)")
    _axes_plot(ax, summarize(records, metric), strategies, 100.0, colors)
    what = "mAP" if metric == "test_map" else "accuracy"
    ax.set_ylabel(f"test {what} (%)")
    ax.set_title(title or f"{what} vs labels (mean ± std over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / ("map.png" if metric == "test_map" else "accuracy.png"))
    fig.savefig(paths[-1])

    fig = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    _axes_plot(ax1, summarize(records, "imbalance_ratio"), strategies)
    ax1.set_ylabel("imbalance ratio of the labeled set (max/min)")
    _axes_plot(ax2, summarize(records, "label_entropy"), strategies)
    ax2.set_ylabel("normalized label entropy (1 = balanced)")
    ax1.legend(fontsize=8)
    fig.suptitle(title or "class balance vs labels", fontsize=10)
    fig.tight_layout()
    paths.append(out_dir / "balance.png")
    fig.savefig(paths[-1])
    return paths
