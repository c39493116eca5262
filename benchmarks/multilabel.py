"""Multi-label uncertainty (``multilabel=True``) against its floors, on the harness
(alscale.al.harness): each row in its own fresh process (its peak memory its own), timed
``--repeats`` times after one warm-up call (min, median, max; CPU seconds beside them), the load
average before and after, one table; ``--json`` writes the file of ``alscale bench --json``.

    python benchmarks/multilabel.py logits [--rows 1281167] [--classes 1000] [--budget 10000] [--softmax]
    python benchmarks/multilabel.py embeddings [--rows 400000] [--dims 256] [--classes 20000] [--budget 100000]
    python benchmarks/multilabel.py cluster-margin [--rows 2000000] [--classes 100] [--budget 200000]

logits:         N x C float32 logits in memory (default the ImageNet shape), the harness's
                ``gaussian`` with scale 3 and shift -2 (most classes absent, as in a multi-label
                head): the floor ``L.sum()`` (one numpy pass, one thread), the multi-label margin
                (mean and min) as scores and as ``select_margin(..., multilabel=True)``; with
                ``--softmax`` also the single-label ``select_margin``, with ``--numpy`` plain
                numpy (``numpy_select``, checked against alscale's picks: only rows tied with the
                cut may differ; benchmarks/test_bench_multilabel.py times the same).
embeddings:     N x D float32 embeddings (``gaussian``) and a C x D head (``gaussian`` / 16, bias
                -3; default C = 20,000, the Open Images head): the floor, one chunked torch GEMM
                pass over ``logits_from_embeddings``, and ``select_margin(logits_from_embeddings(E,
                W, b), B, multilabel=True)``. Needs torch.
cluster-margin: Cluster-Margin's selection step (k_m = 10 B lowest-margin rows, round-robin over
                given cluster ids: 2M rows in 20,000 clusters) with the softmax margin and with the
                multi-label margin (mean and min); the multi-label rows are compared with the
                single-label one (``x alscale`` = multi / single; the target is <= 2).

The rows run one after the other (before this script was on the harness they were interleaved in
one process); the machine may be shared: compare rows of one run, and read the load average.
"""
from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import numpy as np

import alscale
from alscale.al.harness import Case, DataSpec, Suite, gaussian, run_script

PARTS = ("logits", "embeddings", "cluster-margin")
DEFAULTS = {  # rows, classes, budget
    "logits": (1_281_167, 1000, 10_000),
    "embeddings": (400_000, 20_000, 100_000),
    "cluster-margin": (2_000_000, 100, 200_000),
}
CLUSTERS = 20_000


def suite_name(part: str, **params: int) -> str:
    """The suite's name carries its parameters (the child process rebuilds the suite from it)."""
    return " ".join([f"multilabel-{part}"] + [f"{k}={int(v)}" for k, v in sorted(params.items())])


def _parse(name: str) -> tuple[str, dict]:
    head, *rest = name.split()
    part = head.removeprefix("multilabel-")
    if part not in PARTS:
        raise ValueError(f"unknown suite {name!r}; parts: {', '.join(PARTS)}")
    return part, {k: int(v) for k, v in (item.split("=", 1) for item in rest)}


def _logits_spec(rows: int, classes: int) -> DataSpec:
    return DataSpec.of("gaussian", nbytes=rows * classes * 4, n=rows, dim=classes, seed=0, scale=3.0, shift=-2.0)


def _floor(d: dict):
    return d["x"].sum


def numpy_select(logits: np.ndarray, budget: int, reduction: str) -> np.ndarray:
    """The multi-label margin as plain numpy writes it: ``|tanh(z/2)|`` (an N x C float32
    temporary) reduced over the classes, then ``argsort``."""
    m = np.abs(np.tanh(logits * np.float32(0.5)))
    score = m.mean(axis=1, dtype=np.float64) if reduction == "mean" else m.min(axis=1)
    return np.argsort(score, kind="stable")[:budget]


def swapped_beyond_the_cut(logits: np.ndarray, ours: np.ndarray, theirs: np.ndarray, reduction: str) -> np.ndarray:
    """Rows in one selection only whose alscale margin is not within 1e-6 of the cut (numpy's
    float32 tanh and mean round differently: only rows tied with the cut may swap). Empty when
    the two selections agree."""
    scores = np.asarray(alscale.margin_scores(logits, multilabel=True, reduction=reduction))
    swapped = np.setxor1d(ours, theirs)
    cut = scores[ours].max()
    return swapped[np.abs(scores[swapped] - cut) > 1e-6 * max(1.0, cut)]


def check_numpy(data: dict, ours: dict, theirs: dict, *, reduction: str) -> tuple[bool, str]:
    bad = swapped_beyond_the_cut(data["x"], ours["0"], theirs["0"], reduction)
    swapped = np.setxor1d(ours["0"], theirs["0"]).size // 2
    return not bad.size, (f"{bad.size} rows differ beyond the cut's rounding" if bad.size else
                          f"same rows but {swapped} tied at the cut" if swapped else "same rows")


def logits_suite(name: str, rows: int, classes: int, budget: int, softmax: int = 0, numpy: int = 0) -> Suite:
    cases = [Case("floor", "floor: L.sum() (numpy, one thread)", "floor", "L", _floor)]
    for red in ("mean", "min"):
        cases.append(Case("margin_scores", f"margin_scores(multilabel=True, reduction={red!r})", "alscale", "L",
                          lambda d, red=red: partial(alscale.margin_scores, d["x"], multilabel=True, reduction=red)))
    for red in ("mean", "min"):
        group = f"select_margin B={budget:,}, {red}"
        cases.append(Case(group, f"select_margin(multilabel=True, reduction={red!r})", "alscale", "L",
                          lambda d, red=red: partial(alscale.select_margin, d["x"], budget, multilabel=True,
                                                     reduction=red)))
        if numpy:
            cases.append(Case(group, "numpy |tanh(z/2)|, reduced, argsort", "peer", "L",
                              lambda d, red=red: partial(numpy_select, d["x"], budget, red),
                              check=partial(check_numpy, reduction=red), memory=rows * classes * 8))
    if softmax:
        cases.append(Case(f"select_margin B={budget:,}, single-label", "select_margin (softmax)", "alscale", "L",
                          lambda d: partial(alscale.select_margin, d["x"], budget)))
    return Suite(name, f"multi-label margin on {rows:,} x {classes:,} float32 logits",
                 {"L": _logits_spec(rows, classes)}, cases)


def _head(classes: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The C x D head (``gaussian`` / 16) and its bias -3 (most classes absent)."""
    return gaussian(classes, dims, seed=1, scale=1 / 16), np.full(classes, -3.0, np.float32)


def _pool(d: dict, classes: int):
    return alscale.logits_from_embeddings(d["x"], *_head(classes, d["x"].shape[1]))


def _gemm_pass(d: dict, classes: int):
    pool = _pool(d, classes)

    def run() -> float:
        s = 0.0
        for chunk in pool:
            s += float(chunk[0, 0])
        return s

    return run


def embeddings_suite(name: str, rows: int, classes: int, budget: int, dims: int) -> Suite:
    cases = [Case("floor", "floor: one chunked torch GEMM pass", "floor", "E",
                  partial(_gemm_pass, classes=classes), needs=("torch",))]
    for red in ("mean", "min"):
        cases.append(Case(f"select_margin B={budget:,}", f"select_margin(logits_from_embeddings(E, W, b), "
                          f"multilabel=True, reduction={red!r})", "alscale", "E",
                          lambda d, red=red: partial(alscale.select_margin, _pool(d, classes), budget,
                                                     multilabel=True, reduction=red),
                          needs=("torch",), memory=classes * dims * 8))
    data = {"E": DataSpec.of("gaussian", nbytes=rows * dims * 4, n=rows, dim=dims, seed=0)}
    return Suite(name, f"multi-label margin from {rows:,} x {dims} embeddings, {classes:,} classes", data, cases)


def _clusters(rows: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, CLUSTERS, rows)


def cluster_margin_suite(name: str, rows: int, classes: int, budget: int) -> Suite:
    group = f"select_cluster_margin B={budget:,}, k_m={10 * budget:,}"
    cases = [Case("floor", "floor: L.sum() (numpy, one thread)", "floor", "L", _floor),
             Case(group, "single-label (softmax margin)", "alscale", "L",
                  lambda d: partial(alscale.select_cluster_margin, d["x"], _clusters(rows), budget, seed=0))]
    for red in ("mean", "min"):
        cases.append(Case(group, f"multi-label margin, {red}", "peer", "L",
                          lambda d, red=red: partial(alscale.select_cluster_margin, d["x"], _clusters(rows), budget,
                                                     seed=0, multilabel=True, reduction=red)))
    return Suite(name, f"Cluster-Margin's selection over {rows:,} x {classes:,} logits in {CLUSTERS:,} clusters",
                 {"L": _logits_spec(rows, classes)}, cases,
                 notes=["x alscale of the multi-label rows: their median / the single-label row's (target <= 2)"])


def build_suite(name: str, scale: float = 1.0) -> Suite:
    """The suite a name of :func:`suite_name` describes (what the harness's child process calls)."""
    part, params = _parse(name)
    make = {"logits": logits_suite, "embeddings": embeddings_suite, "cluster-margin": cluster_margin_suite}[part]
    return make(name, **params)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=PARTS)
    ap.add_argument("--rows", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--dims", type=int, default=256, help="embeddings: their width")
    ap.add_argument("--budget", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--softmax", action="store_true", help="logits: also time the single-label select_margin")
    ap.add_argument("--numpy", action="store_true",
                    help="logits: also time plain numpy (|tanh(z/2)| reduced, argsort: N x C float32 temporaries)")
    ap.add_argument("--json", help="write the run as `alscale bench --json` does")
    a = ap.parse_args(argv)
    rows, classes, budget = (given or default for given, default in zip((a.rows, a.classes, a.budget),
                                                                          DEFAULTS[a.part]))
    params = {"rows": rows, "classes": classes, "budget": budget}
    if a.part == "logits":
        params.update(softmax=int(a.softmax), numpy=int(a.numpy))
    elif a.part == "embeddings":
        params["dims"] = a.dims
    suite = build_suite(suite_name(a.part, **params))
    here = os.path.dirname(os.path.abspath(__file__))
    return run_script(suite, module="multilabel", sys_path=[here], repeat=a.repeats, json_path=a.json,
                      argv=sys.argv if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
