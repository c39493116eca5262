"""Benchmarks of alscale's selection kernels against the baselines the papers use.

Shared by ``alscale bench`` (the ``imagenet`` suite of :mod:`alscale.al.suites`, and
:func:`run_bench`, the single shape of ``alscale bench`` without ``--suite``) and the
pytest-benchmark suite in ``benchmarks/``. The data (:func:`make_data`, ImageNet-like logits),
the timer and the machine description come from the one harness, :mod:`alscale.al.harness`.

The baselines:

- the floor: ``logits.sum()``, one numpy pass over the same array (see BENCHMARKS.md);
- :func:`official_base`: the BASE rule as the paper's authors run it (a Python loop over the
  classes, each building the class's scores for every row with ``torch.where`` and sorting all
  of them with ``torch.sort``), computed from the logits and the head's inverse pairwise norms
  1 / ||w_p - w_c|| (the library's, so both sides see the same distances);
- :func:`official_boundary`: MASE as the authors run it (one ``torch.sort`` of the distances);
- :func:`numpy_select_margin`: margin sampling the usual numpy way (softmax, ``np.partition``
  for the top two probabilities, ``np.argpartition`` for the budget).

Each returns the indices that alscale must return, so the suite also checks correctness.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any, Callable, Optional, TextIO

import numpy as np

# The public API, from the parent package (already initialised whenever this module is imported).
from .. import select_balanced, select_boundary, select_margin
from . import harness
from .harness import SIZES, BenchData, BenchSize, _resolve_size, make_data

__all__ = [
    "SIZES",
    "BenchData",
    "BenchSize",
    "compare_selections",
    "floor_sum",
    "machine_info",
    "make_data",
    "min_distances",
    "numpy_margin_scores",
    "numpy_select_margin",
    "official_base",
    "official_boundary",
    "run_bench",
    "time_call",
]


_SCORE_CHUNK_ROWS = 16_384


def _threads(threads: int) -> int:
    return threads if threads > 0 else (os.cpu_count() or 1)


def floor_sum(logits: np.ndarray) -> float:
    """The floor every CPU kernel is compared with: one numpy reduction over the input."""
    return float(logits.sum())


# --------------------------------------------------------------------------------------------
# The authors' BASE / MASE rules, in torch, from the logits and the head's inverse norms.
# --------------------------------------------------------------------------------------------


def _inverse_norms(weight: Any, num_classes: int):
    """(C, C) float64 tensor of 1 / ||w_p - w_c||, +inf on the diagonal and wherever the norm is
    0, as the library computes it (this is the one line that names the library's function);
    ``weight=None``: all ones off the diagonal (the plain logit gap)."""
    import torch

    from .._backend.arrays import inverse_norms

    inv = inverse_norms(weight, num_classes, table=True)
    if inv is None:
        inv = np.ones((num_classes, num_classes))
        np.fill_diagonal(inv, np.inf)
    return torch.from_numpy(inv)


def _predictions(logits_t):
    import torch

    pred = torch.argmax(logits_t, dim=1)
    top = torch.gather(logits_t, 1, pred[:, None]).squeeze(1).to(torch.float64)
    return pred, top


def _class_distances(logits_t, pred, top, inv, cls: int):
    """r_cls for every row: (l_p - l_cls) / ||w_p - w_cls|| (float64), +inf where p == cls or
    the norm is 0."""
    import torch

    inv_c = inv[:, cls][pred]
    gap = top - logits_t[:, cls].to(torch.float64)
    return torch.where(torch.isinf(inv_c), torch.inf, gap * inv_c)


def min_distances(logits: Any, weight: Any = None, *, _state=None):
    """min_c r_c for every row (float64 torch tensor): the distance to the nearest boundary."""
    import torch

    logits_t = torch.as_tensor(logits)
    n, c = logits_t.shape
    if _state is None:
        pred, top = _predictions(logits_t)
        inv = _inverse_norms(weight, c)
    else:
        pred, top, inv = _state
    out = torch.empty(n, dtype=torch.float64)
    for a in range(0, n, _SCORE_CHUNK_ROWS):
        b = min(a + _SCORE_CHUNK_ROWS, n)
        inv_rows = inv[pred[a:b]]
        r = (top[a:b, None] - logits_t[a:b].to(torch.float64)) * inv_rows
        r = torch.where(torch.isinf(inv_rows), torch.inf, r)
        out[a:b] = r.min(dim=1).values
    return out


def official_base(logits: Any, budget: int, *, weight: Any = None) -> np.ndarray:
    """BASE the way the paper's code runs it (``BASESampler.query``): for each class c in order,
    ``torch.where`` builds every row's score for c (r_c, or the row's min distance when it is
    predicted c), already-taken rows are set to +inf, all N scores are sorted with
    ``torch.sort`` and the first q_c untaken rows are taken.

    The per-class distances come from the logits and W Wᵀ (never an N×C×D tensor), in float64,
    and the sort is stable so that ties go to the smaller row index, as alscale's do (the
    authors' unstable sort breaks ties arbitrarily). Returns int64 row indices, class 0 first.
    """
    import torch

    logits_t = torch.as_tensor(logits)
    n, c = logits_t.shape
    pred, top = _predictions(logits_t)
    inv = _inverse_norms(weight, c)
    mind = min_distances(logits_t, _state=(pred, top, inv))

    budget = min(int(budget), n)
    taken = torch.zeros(n, dtype=torch.bool)
    picks = []
    taken_idx = torch.empty(0, dtype=torch.int64)
    for cls in range(c):
        q = budget // c + int(cls < budget % c)
        if q == 0:
            continue
        score = torch.where(pred == cls, mind, _class_distances(logits_t, pred, top, inv, cls))
        score[taken_idx] = torch.inf
        order = torch.sort(score, stable=True).indices
        head = order[: q + taken_idx.numel()]
        head = head[~taken[head]][:q]  # the first q untaken (taken rows sort last, at +inf)
        taken[head] = True
        picks.append(head)
        taken_idx = torch.cat([taken_idx, head])
    if not picks:
        return np.empty(0, dtype=np.int64)
    return torch.cat(picks).numpy().astype(np.int64, copy=False)


def official_boundary(logits: Any, budget: int, *, weight: Any = None) -> np.ndarray:
    """MASE the way the paper's code runs it: the ``budget`` rows with the smallest min distance
    (stable ``torch.sort``, so ties go to the smaller row index)."""
    import torch

    mind = min_distances(logits, weight)
    budget = min(int(budget), mind.numel())
    return torch.sort(mind, stable=True).indices[:budget].numpy().astype(np.int64, copy=False)


def base_scores_for_class(logits: Any, weight: Any, cls: int, rows: Any) -> np.ndarray:
    """The BASE score of ``rows`` for class ``cls`` (float64), as :func:`official_base` sees it."""
    import torch

    logits_t = torch.as_tensor(logits)
    rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    sub = logits_t[rows_t]
    pred, top = _predictions(sub)
    inv = _inverse_norms(weight, sub.shape[1])
    mind = min_distances(sub, _state=(pred, top, inv))
    score = torch.where(pred == cls, mind, _class_distances(sub, pred, top, inv, cls))
    return score.numpy()


# --------------------------------------------------------------------------------------------
# Margin sampling, the usual numpy way.
# --------------------------------------------------------------------------------------------


def numpy_margin_scores(logits: np.ndarray) -> np.ndarray:
    """p(1) - p(2) per row from a float32 softmax, computed in row chunks (float32 (N,))."""
    n, c = logits.shape
    out = np.empty(n, dtype=np.float32)
    for a in range(0, n, _SCORE_CHUNK_ROWS):
        b = min(a + _SCORE_CHUNK_ROWS, n)
        x = np.asarray(logits[a:b], dtype=np.float32)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        if c == 1:
            out[a:b] = e[:, 0]
        else:
            top2 = np.partition(e, c - 2, axis=1)[:, c - 2 :]
            out[a:b] = top2[:, 1] - top2[:, 0]
    return out


def numpy_select_margin(logits: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` rows with the smallest margin: softmax, ``np.argpartition``, then a sort of
    the selected (by score, then row index). Rows tied at the cut go to the smaller row index,
    as alscale's do (``np.argpartition`` alone would take an arbitrary subset of them)."""
    scores = numpy_margin_scores(logits)
    budget = min(int(budget), scores.size)
    if budget <= 0:
        return np.empty(0, dtype=np.int64)
    idx = np.argpartition(scores, budget - 1)[:budget]
    cut = scores[idx].max()
    below = np.flatnonzero(scores < cut)
    idx = np.concatenate([below, np.flatnonzero(scores == cut)[: budget - below.size]])
    return idx[np.lexsort((idx, scores[idx]))].astype(np.int64)


# --------------------------------------------------------------------------------------------
# Checking and timing.
# --------------------------------------------------------------------------------------------


def _as_numpy_indices(x: Any) -> np.ndarray:
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x, dtype=np.int64)


def compare_selections(
    ours: Any,
    reference: Any,
    *,
    logits: Optional[np.ndarray] = None,
    weight: Any = None,
    budget: Optional[int] = None,
) -> tuple[bool, str]:
    """(identical, a one-line verdict) for two BASE selections.

    When they differ and ``logits``/``budget`` are given, the first differing position is
    explained: which class it belongs to and both rows' scores for that class, so a float tie
    (relative difference near 1e-16) is told apart from a real disagreement.
    """
    a = _as_numpy_indices(ours)
    b = _as_numpy_indices(reference)
    if a.shape == b.shape and np.array_equal(a, b):
        return True, "identical indices"
    if a.shape != b.shape:
        return False, f"DIFFERENT lengths: {a.size} vs {b.size}"
    same_set = np.array_equal(np.sort(a), np.sort(b))
    pos = int(np.flatnonzero(a != b)[0])
    msg = f"differ from position {pos} of {a.size}" + (" (same set)" if same_set else "")
    if logits is None or budget is None:
        return False, msg
    c = logits.shape[1]
    q, extra = divmod(min(budget, logits.shape[0]), c)
    ends = np.cumsum([q + (k < extra) for k in range(c)])
    cls = int(np.searchsorted(ends, pos, side="right"))
    sa, sb = base_scores_for_class(logits, weight, cls, [a[pos], b[pos]])
    rel = abs(sa - sb) / max(abs(sa), abs(sb), np.finfo(np.float64).tiny)
    kind = "a float tie" if rel <= 1e-12 else "NOT a tie: a real disagreement"
    return False, (
        f"{msg}, class {cls}: row {a[pos]} (score {sa:.17g}) vs row {b[pos]} "
        f"(score {sb:.17g}), relative difference {rel:.1e}: {kind}"
    )


def time_call(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """(median seconds, all times, the last result) of ``repeats`` calls of ``fn`` (the harness's
    timer, :func:`alscale.al.harness.time_call`, without a warm-up)."""
    timing, result = harness.time_call(fn, repeats, warmup=0)
    return timing.median, timing.times, result


def machine_info() -> dict:
    """What BENCHMARKS.md needs to say about where a figure was measured (the harness's
    :func:`~alscale.al.harness.machine_info`, with torch's threads)."""
    import importlib

    importlib.import_module("torch")  # run_bench's baselines need it; its thread count is reported
    return harness.machine_info()


def _fmt_seconds(s: float) -> str:
    return f"{s:.4g}" if s >= 1e-4 else f"{s:.2e}"


def format_table(rows: list[dict]) -> str:
    """An aligned text table of :func:`run_bench` rows."""
    header = ("group", "method", "median s", "x floor", "runs", "notes")
    body = [
        (
            r["group"],
            r["method"],
            _fmt_seconds(r["median_s"]),
            f"{r['ratio_to_floor']:.2f}",
            str(r["repeats"]),
            r["notes"],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    right = {2, 3, 4}

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def run_bench(
    size: str = "imagenet",
    repeats: int = 5,
    official: bool = True,
    threads: int = 0,
    file: Optional[TextIO] = sys.stdout,
    *,
    seed: int = 0,
    data: Optional[BenchData] = None,
) -> list[dict]:
    """Time alscale's selection kernels against their baselines and print a table.

    Parameters
    ----------
    size : {"imagenet", "small"}
        "imagenet": N=1,281,167 rows, C=1000, D=2048, B=10,000, fp32 logits (5.1 GB; the
        machine needs ~6 GB free). "small": N=20,000, C=100, D=64, B=500.
    repeats : int
        Calls per method; the median is reported. At "imagenet" size the official BASE torch
        loop (~2 minutes) runs once whatever ``repeats`` is.
    official : bool
        Run the official BASE torch loop (the slow baseline).
    threads : int
        ``num_threads`` for alscale (0 = all cores); torch gets the same while it is timed.
    file : text stream or None
        Where progress lines (starting ``#``) and the table go; None prints nothing.
    seed, data
        Data seed, or ready-made data (then ``size`` and ``seed`` are ignored).

    Returns
    -------
    list of dict
        One per method: group, method, median_s, times_s, repeats, ratio_to_floor, notes and
        (for baselines) match, a bool saying whether alscale returned the same selection.
    """
    import torch

    def say(msg: str) -> None:
        if file is not None:
            print(msg, file=file, flush=True)

    if data is None:
        t0 = time.perf_counter()
        data = make_data(size, seed=seed, threads=threads)
        say(f"# data: {_describe(data)} generated in {time.perf_counter() - t0:.1f} s")
    else:
        say(f"# data: {_describe(data)}")
    logits, weight, budget = data.logits, data.weight, data.budget
    slow_once = data.size.name == "imagenet"
    nthreads = _threads(threads)
    torch_threads_before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    say(
        f"# threads: alscale {nthreads}, torch {torch.get_num_threads()}, numpy 1; "
        f"median of {repeats} run(s)"
    )

    rows: list[dict] = []

    warm_rows = min(1024, data.size.n)
    warm = data.logits[:warm_rows]
    warm_budget = min(budget, warm_rows // 2)

    def add(group, method, fn, reps, notes="", match=None, warmup=None):
        say(f"# timing {method} ...")
        if warmup is not None:  # first-call costs (lazy init, thread pools) are not the method's
            warmup()
        med, times, result = time_call(fn, reps)
        row = {
            "group": group,
            "method": method,
            "median_s": med,
            "times_s": times,
            "repeats": len(times),
            "ratio_to_floor": float("nan"),
            "notes": notes,
        }
        if match is not None:
            row["match"] = match
        rows.append(row)
        return row, result

    try:
        floor_row, _ = add("floor", "logits.sum() (numpy, 1 pass)", lambda: logits.sum(), repeats)

        # -- balanced (BASE) -----------------------------------------------------------------
        bal_row, ours = add(
            "balanced",
            "alscale.select_balanced",
            lambda: select_balanced(logits, budget, weight=weight, num_threads=threads),
            repeats,
            warmup=lambda: select_balanced(
                warm, warm_budget, weight=weight, num_threads=threads
            ),
        )
        if official:
            reps = 1 if slow_once else repeats
            row, ref = add(
                "balanced",
                "official BASE rule (torch loop)",
                lambda: official_base(logits, budget, weight=weight),
                reps,
                warmup=lambda: official_base(warm, warm_budget, weight=weight),
            )
            same, verdict = compare_selections(
                ours, ref, logits=logits, weight=weight, budget=budget
            )
            row["match"] = same
            row["notes"] = _versus(bal_row, row) + "; " + verdict + (
                "; 1 run (too slow to repeat)" if slow_once and repeats > 1 else ""
            )

        # -- boundary (MASE) -----------------------------------------------------------------
        mase_row, ours = add(
            "boundary",
            "alscale.select_boundary (MASE)",
            lambda: select_boundary(logits, budget, weight=weight, num_threads=threads),
            repeats,
            warmup=lambda: select_boundary(
                warm, warm_budget, weight=weight, num_threads=threads
            ),
        )
        row, ref = add(
            "boundary",
            "official MASE rule (torch sort)",
            lambda: official_boundary(logits, budget, weight=weight),
            1 if slow_once else repeats,
            warmup=lambda: official_boundary(warm, warm_budget, weight=weight),
        )
        same = np.array_equal(_as_numpy_indices(ours), ref)
        row["match"] = same
        row["notes"] = _versus(mase_row, row) + (
            "; identical indices" if same else "; DIFFERENT indices"
        )

        # -- margin --------------------------------------------------------------------------
        mar_row, ours = add(
            "margin",
            "alscale.select_margin",
            lambda: select_margin(logits, budget, num_threads=threads),
            repeats,
            warmup=lambda: select_margin(warm, warm_budget, num_threads=threads),
        )
        row, ref = add(
            "margin",
            "numpy softmax + argpartition",
            lambda: numpy_select_margin(logits, budget),
            min(repeats, 3) if slow_once else repeats,
            warmup=lambda: numpy_select_margin(warm, warm_budget),
        )
        ours_np = _as_numpy_indices(ours)
        same_set = np.array_equal(np.sort(ours_np), np.sort(ref))
        row["match"] = same_set
        if np.array_equal(ours_np, ref):
            verdict = "identical indices"
        elif same_set:
            verdict = "same set, order differs (float32 softmax rounding)"
        else:
            differ = int(np.setdiff1d(ours_np, ref).size)
            verdict = f"sets differ in {differ} rows (float32 near-ties?)"
        row["notes"] = _versus(mar_row, row) + "; " + verdict
    finally:
        torch.set_num_threads(torch_threads_before)

    floor = floor_row["median_s"]
    for r in rows:
        r["ratio_to_floor"] = r["median_s"] / floor if floor > 0 else float("nan")
    floor_row["notes"] = f"{data.nbytes / 1e9:.2f} GB fp32 logits"
    if file is not None:
        say("")
        print(format_table(rows), file=file, flush=True)
    return rows


def _describe(data: BenchData) -> str:
    s = data.size
    return (
        f"{s.name}: N={s.n:,} C={s.c:,} D={s.d:,} B={s.budget:,}, "
        f"{data.nbytes / 1e9:.2f} GB fp32 logits, seed {data.seed}"
    )


def _versus(ours: dict, baseline: dict) -> str:
    speedup = baseline["median_s"] / ours["median_s"]
    if speedup >= 1:
        return f"alscale {speedup:.1f}x faster"
    return f"alscale {1 / speedup:.1f}x SLOWER"


def write_json(
    path: str, rows: list[dict], *, size: str, repeats: int, threads: int, seed: int
) -> None:
    """Write the rows with the problem size and the machine to ``path``."""
    payload = {
        "size": asdict(_resolve_size(size)),
        "repeats": repeats,
        "threads": threads,
        "seed": seed,
        "machine": machine_info(),
        "rows": rows,
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, allow_nan=True)
        f.write("\n")
