"""The suites of ``alscale bench --suite NAME``, on the one harness (:mod:`alscale.al.harness`).

Each suite is built at the papers' shapes; ``scale`` multiplies N (and B with it; the classes,
dimensions and the points per cluster stay). Every suite has a floor (one numpy pass over its
input, or the unavoidable part of the work, named in its row) and, where one exists, a peer that
computes the same rule, whose picks are checked against alscale's.

========== ====================================================================================
imagenet   the BASE paper: 1,281,167 × 1000 fp32 logits (D = 2048 head), B = 10K: BASE, MASE,
           margin, confidence, entropy; peers: the official BASE torch loop, the MASE torch
           sort, numpy margin, torch softmax + topk; floor ``L.sum()``.
openimages the Cluster-Margin paper: a 9M × 256 pool of embeddings as a memmap, a 20K-class
           linear head, B = 100K and 1M: margin (single- and multi-label) from the embeddings
           through ``alscale.logits_from_embeddings``, Cluster-Margin on given clusters; peers:
           a chunked torch GEMM pass with the same rule, numpy margins + a Python round-robin;
           floor: the numpy GEMM pass alone (chunks of ``z Wᵀ + b``).
hac        exact UPGMA (20K × 64, euclidean and cosine) vs fastcluster and scipy (floor: scipy's
           pdist, the distances alone); graph HAC at 1M × 64 (floor ``x.sum()``).
knn        the kNN graph (k = 10, 200K points) at recall 0.95 vs faiss IVF-Flat and HNSW tuned to
           the same recall, on separated blobs, overlapping blobs (64-d, 20K centres at full
           size, noise 0.8) and Fashion-MNIST pixels (60K × 784).
bayes      BALD over T = 20 MC samples (100K × 1000) vs numpy and baal; BatchBALD vs baal.
coldstart  TypiClust and ProbCover on 1M × 128 blobs, B = 1000 (no peer runs the same rule at
           this size: BENCHMARKS.md's paper-code comparisons come from benchmarks/coldstart.py).
========== ====================================================================================
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import Any, Callable, Optional

import numpy as np

from .. import (
    bald_scores,
    confidence_scores,
    entropy_scores,
    hac_average,
    knn_graph,
    logits_from_embeddings,
    margin_scores,
    select_bald,
    select_balanced,
    select_batchbald,
    select_boundary,
    select_cluster_margin,
    select_confidence,
    select_entropy,
    select_margin,
    select_probcover,
    select_typiclust,
)
from .bench import compare_selections, numpy_select_margin, official_base, official_boundary
from .harness import HARD_BLOBS, BenchSize, Case, DataSpec, Suite

__all__ = ["SUITES", "build_suite", "describe"]

_CHUNK_BYTES = 256 << 20  # the peers' row chunks: the same bytes as alscale's chunk sources
_TORCH_BYTES = 500 << 20  # what importing torch adds to a process


def _chunk_rows(row_bytes: int) -> int:
    return max(1, _CHUNK_BYTES // max(1, row_bytes))


def _rows(n: int, scale: float, least: int = 2) -> int:
    return max(least, int(round(n * scale)))


def _g(x: int) -> str:
    return f"{x:,}"


# ============================================================================================
# Checks (run in the peer's process, after its timing and peak memory are taken)
# ============================================================================================


def check_identical(data: dict, ours: dict, theirs: dict):
    a, b = ours["0"], theirs["0"]
    if a.shape == b.shape and np.array_equal(a, b):
        return True, "identical indices"
    same = np.array_equal(np.sort(a), np.sort(b))
    return False, "same set, other order" if same else f"{np.setdiff1d(a, b).size} rows differ"


def check_base(budget: int):
    def check(data: dict, ours: dict, theirs: dict):
        same, verdict = compare_selections(ours["0"], theirs["0"], logits=data["logits"], weight=data["weight"],
                                           budget=budget)
        return same or "a float tie" in verdict, verdict

    return check


def check_same_rule(scores: Callable[[dict, np.ndarray], np.ndarray], *, largest: bool = False,
                    atol: float = 1e-6):
    """Same rows as alscale, or rows that differ only where alscale's own scores are within
    ``atol`` of the budget's cut (float32 near-ties broken by another rounding).
    ``scores(data, rows)``: alscale's scores of those rows alone (row scores do not depend on the
    other rows, so the check never makes another pass over the pool)."""

    def check(data: dict, ours: dict, theirs: dict):
        a, b = ours["0"].astype(np.int64), theirs["0"].astype(np.int64)
        if a.shape != b.shape:
            return False, f"{a.size} vs {b.size} rows"
        if np.array_equal(a, b):
            return True, "identical indices"
        diff = np.setxor1d(a, b)
        if diff.size == 0:
            return True, "same set, order differs"
        picked = np.asarray(scores(data, np.sort(a)), dtype=np.float64)
        cut = picked.max() if not largest else picked.min()
        s = np.asarray(scores(data, diff), dtype=np.float64)
        far = diff[np.abs(s - cut) > atol]
        if far.size:
            return False, f"{diff.size // 2} rows differ, {far.size} beyond near-ties at the cut"
        return True, f"same but {diff.size // 2} rows tied at the cut (|score - cut| <= {atol:g})"

    return check


# ============================================================================================
# Peers
# ============================================================================================


def torch_select(logits: Any, budget: int, rule: str, *, weight=None, bias=None, multilabel=False) -> Any:
    """What one writes with torch: chunk by chunk (``z Wᵀ + b`` first when ``weight`` is given,
    i.e. a chunked GEMM pass over embeddings), softmax (or sigmoid) and the rule's score, then
    ``torch.topk`` over the N scores. Written with care: the chunk's logits and probabilities go
    into two buffers reused from chunk to chunk (``out=`` and in-place ops), as alscale's chunk
    source does, so neither side pays for fresh pages per chunk."""
    import torch

    x = logits
    n = x.shape[0]
    c = x.shape[1] if weight is None else weight.shape[0]
    w = None if weight is None else torch.from_numpy(np.asarray(weight)).T.contiguous()
    b = None if bias is None else torch.from_numpy(np.asarray(bias))
    step = _chunk_rows(4 * c)
    scores = torch.empty(n, dtype=torch.float32)
    gemm = probs = None
    for a in range(0, n, step):
        t = torch.from_numpy(np.ascontiguousarray(x[a : a + step]))
        rows = t.shape[0]
        if w is not None:
            if gemm is None:
                gemm = torch.empty((min(step, n), c), dtype=torch.float32)
            out = gemm[:rows]
            t = torch.addmm(b, t, w, out=out) if b is not None else torch.mm(t, w, out=out)
        if multilabel:  # |2 sigmoid - 1| = |tanh(t / 2)|, mean over classes; in place on our own buffer
            u = t if w is not None else t.clone()
            scores[a : a + step] = u.mul_(0.5).tanh_().abs_().mean(dim=1)
            continue
        if probs is None:
            probs = torch.empty((min(step, n), c), dtype=torch.float32)
        p = torch.softmax(t, dim=1, out=probs[:rows])
        if rule == "margin":
            top = p.topk(min(2, c), dim=1).values
            s = top[:, 0] - top[:, 1] if c > 1 else top[:, 0]
        elif rule == "confidence":
            s = p.max(dim=1).values
        else:
            s = torch.special.entr(p, out=p).sum(dim=1)
        scores[a : a + step] = s
    return torch.topk(scores, min(int(budget), n), largest=rule == "entropy", sorted=True).indices


def numpy_gemm_pass(z: Any, weight: np.ndarray, bias: np.ndarray) -> float:
    """The openimages floor: ``z Wᵀ + b`` chunk by chunk (the logits alone, nothing selected)."""
    wt = np.ascontiguousarray(weight.T)
    step = _chunk_rows(4 * weight.shape[0])
    total = 0.0
    buf = None
    for a in range(0, z.shape[0], step):
        chunk = np.asarray(z[a : a + step])
        if buf is None or buf.shape[0] != chunk.shape[0]:
            buf = np.empty((chunk.shape[0], wt.shape[1]), dtype=np.float32)
        np.matmul(chunk, wt, out=buf)
        buf += bias
        total += float(buf[0, 0])
    return total


def numpy_cluster_margin(z: Any, weight, bias, clusters: np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """Cluster-Margin with numpy and a Python loop: margins chunk by chunk (GEMM + softmax into
    one buffer reused from chunk to chunk; the two largest probabilities by ``argmax`` and ``max``),
    the k_m = min(10 B, N) smallest, grouped by cluster, clusters by size ascending, round-robin
    taking a random candidate of each (the paper's rule; its random draws are not alscale's)."""
    n = z.shape[0]
    margins = np.empty(n, dtype=np.float32)
    wt = np.ascontiguousarray(weight.T)
    step = _chunk_rows(4 * weight.shape[0])
    buf = np.empty((min(step, n), wt.shape[1]), dtype=np.float32)
    for a in range(0, n, step):
        chunk = np.asarray(z[a : a + step])
        rows = np.arange(chunk.shape[0])
        lg = buf[: rows.size]
        np.matmul(chunk, wt, out=lg)
        lg += bias
        lg -= lg.max(axis=1, keepdims=True)
        np.exp(lg, out=lg)
        lg /= lg.sum(axis=1, keepdims=True)
        top = lg.argmax(axis=1)
        first = lg[rows, top]
        lg[rows, top] = -np.inf  # the second largest is the largest of the others
        margins[a : a + step] = first - lg.max(axis=1) if lg.shape[1] > 1 else first
    km = min(10 * budget, n)
    return round_robin(np.argsort(margins, kind="stable")[:km], clusters, budget, seed)


def round_robin(rows: np.ndarray, clusters: np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """Cluster-Margin's round-robin in Python: the candidate ``rows`` grouped by their cluster,
    clusters by candidate count ascending (then index), each group shuffled (numpy Generator of
    ``seed``), one candidate of each cluster in turn until ``budget`` are taken."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for r in np.asarray(rows).tolist():
        groups.setdefault(int(clusters[r]), []).append(r)
    order = sorted(groups, key=lambda c: (len(groups[c]), c))
    for c in order:
        rng.shuffle(groups[c])
    out: list = []
    turn = 0
    while len(out) < min(budget, len(rows)):
        for c in order:
            if turn < len(groups[c]) and len(out) < budget:
                out.append(groups[c][turn])
        turn += 1
    return np.array(out, dtype=np.int64)


def check_cluster_counts(data: dict, ours: dict, theirs: dict):
    """Cluster-Margin's picks are random within a cluster, but how many each cluster gives is the
    rule's (round-robin over the k_m candidates' clusters): those counts must agree."""
    clusters = _given_clusters(data["x"].shape[0])
    a = np.bincount(clusters[ours["0"]], minlength=clusters.max() + 1)
    b = np.bincount(clusters[theirs["0"]], minlength=clusters.max() + 1)
    if np.array_equal(a, b):
        return True, f"same picks per cluster ({int((a > 0).sum())} clusters)"
    return False, f"picks per cluster differ in {int((a != b).sum())} clusters (near-tie candidates?)"


def _given_clusters(n: int) -> np.ndarray:
    """Cluster-Margin's given clusters on the openimages pool: n / 100 random clusters (seed 1)."""
    return np.random.default_rng(1).integers(0, max(1, n // 100), n)


def numpy_bald_update(x: np.ndarray, acc: np.ndarray, ent: np.ndarray) -> None:
    """One MC sample into plain numpy BALD sums: float32 softmax, ``acc += p``, ``ent -= Σ p log p``."""
    p = x - x.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    acc += p
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(p)
    lp *= p
    ent -= np.nansum(lp, axis=1)


def numpy_bald_scores(acc: np.ndarray, ent: np.ndarray, samples: int) -> np.ndarray:
    """BALD = H(mean p) - mean H(p) from the sums of :func:`numpy_bald_update`."""
    q = acc / samples
    with np.errstate(divide="ignore", invalid="ignore"):
        hq = -np.nansum(q * np.log(q), axis=1)
    return hq - ent / samples


def numpy_bald(samples: np.ndarray, budget: int) -> np.ndarray:
    """BALD the plain numpy way (:func:`numpy_bald_update` per sample), then ``np.argpartition``
    and a sort of the B largest (ties to the smaller row)."""
    t, n, c = samples.shape
    acc = np.zeros((n, c), dtype=np.float32)
    ent = np.zeros(n, dtype=np.float64)
    for x in samples:
        numpy_bald_update(x, acc, ent)
    return _top(numpy_bald_scores(acc, ent, t), budget, largest=True)


def baal_bald(samples: np.ndarray, budget: int) -> np.ndarray:
    """baal's ``BALD.compute_score`` on the probabilities (N, C, T), row chunks (as baal's
    ``ActiveLearningLoop`` feeds it batches), then the B best."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from baal.active.heuristics import BALD

    h = BALD()
    t, n, c = samples.shape
    score = np.empty(n, dtype=np.float64)
    step = _chunk_rows(4 * c * t)
    for a in range(0, n, step):
        x = samples[:, a : a + step]
        p = np.exp(x - x.max(axis=2, keepdims=True))
        p /= p.sum(axis=2, keepdims=True)
        score[a : a + step] = h.compute_score(np.moveaxis(p, 0, 2))
    return _top(score, budget, largest=True)


def baal_probabilities(samples: np.ndarray) -> np.ndarray:
    """Logits (T, N, C) as the float64 probabilities (N, C, T) that baal's heuristics take."""
    x = samples.astype(np.float64)
    p = np.exp(x - x.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    return np.ascontiguousarray(np.moveaxis(p, 0, 2))


def baal_batchbald_picks(probabilities: np.ndarray, budget: int, configs: int) -> np.ndarray:
    """baal's BatchBALD (greedy, T x configs/T sampled label configurations, torch seed 0) on
    probabilities (N, C, T); the picks are the rows with the best step scores."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from baal.active.heuristics import BatchBALD

    torch.manual_seed(0)
    t = probabilities.shape[2]
    h = BatchBALD(num_samples=max(1, budget - 1), num_draw=max(1, configs // t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = h.compute_score(probabilities)
    return np.argsort(-scores, kind="stable")[:budget]


def baal_batchbald(samples: np.ndarray, budget: int, configs: int) -> np.ndarray:
    """baal's BatchBALD from the logits (T, N, C): the probabilities, then the greedy loop."""
    return baal_batchbald_picks(baal_probabilities(samples), budget, configs)


def _top(score: np.ndarray, budget: int, *, largest: bool) -> np.ndarray:
    s = -score if largest else score
    budget = min(int(budget), s.size)
    idx = np.argpartition(s, budget - 1)[:budget] if budget < s.size else np.arange(s.size)
    return idx[np.lexsort((idx, s[idx]))].astype(np.int64)


# --------------------------------------------------------------------------- kNN peers


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-30))


def sampled_recall(x: np.ndarray, idx: np.ndarray, k: int, queries: int = 500) -> float:
    """recall@k of a kNN graph ``idx`` (N, k) against exact cosine neighbours of ``queries``
    sampled points (numpy brute force, the point itself excluded)."""
    unit = _unit(x)
    n = unit.shape[0]
    q = np.sort(np.random.default_rng(7).choice(n, min(queries, n), replace=False))
    hits = 0
    for s in range(0, q.size, 256):
        qq = q[s : s + 256]
        sim = unit[qq] @ unit.T
        sim[np.arange(qq.size), qq] = -np.inf
        truth = np.argpartition(-sim, k, axis=1)[:, :k]
        for t, got in zip(truth, idx[qq]):
            hits += len(set(t.tolist()) & set(got.tolist()))
    return hits / (q.size * k)


def faiss_knn(x: np.ndarray, k: int, kind: str, target: float) -> Callable[[], np.ndarray]:
    """Set-up of a faiss peer at the recall ``target`` (untimed): the smallest nprobe (IVF-Flat,
    nlist = N/512, at least 1) or efSearch (HNSW, M = 16, efConstruction 40) whose graph reaches
    ``target`` on sampled queries; returns the timed call: build the index, add, search k + 1,
    drop the point itself."""
    import faiss

    unit = _unit(x)
    n, d = unit.shape

    def build(setting: int):
        if kind == "ivf":
            nlist = max(1, n // 512)
            quant = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(unit[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)])
            index.add(unit)
            index.nprobe = setting
        else:
            index = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 40
            index.add(unit)
            index.hnsw.efSearch = setting
        return index

    def graph(index) -> np.ndarray:
        _, nb = index.search(unit, k + 1)
        return _drop_self(nb, np.arange(n))

    ladder = (1, 2, 4, 8, 16, 32, 64, 128) if kind == "ivf" else (16, 32, 64, 128, 256, 512)
    chosen = ladder[-1]
    index = build(ladder[0])
    for setting in ladder:
        if kind == "ivf":
            index.nprobe = setting
        else:
            index.hnsw.efSearch = setting
        _, nb = index.search(unit[: min(n, 2000)], k + 1)
        if _recall_rows(unit, _drop_self(nb, np.arange(nb.shape[0])), k) >= target:
            chosen = setting
            break
    del index
    return lambda: graph(build(chosen))


def _drop_self(nb: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(m, k + 1) neighbour lists to (m, k): the row itself dropped where it was found, else the
    last neighbour (the first occurrence only)."""
    found = nb == rows[:, None]
    first = found & (np.cumsum(found, axis=1) == 1)
    first[~found.any(axis=1), -1] = True
    return nb[~first].reshape(nb.shape[0], nb.shape[1] - 1).astype(np.int64, copy=False)


def _recall_rows(unit: np.ndarray, idx: np.ndarray, k: int) -> float:
    """recall@k of the first rows' neighbours ``idx`` (queries = those rows)."""
    q = np.arange(idx.shape[0])
    sim = unit[q] @ unit.T
    sim[q, q] = -np.inf
    truth = np.argpartition(-sim, k, axis=1)[:, :k]
    return float(np.mean([len(set(t.tolist()) & set(g.tolist())) / k for t, g in zip(truth, idx)]))


def check_recall(k: int, target: float):
    def check(data: dict, ours: dict, theirs: dict):
        x = data["x"]
        ra, rb = sampled_recall(x, ours["0"], k), sampled_recall(x, theirs["0"], k)
        ok = rb >= target - 0.03 and ra >= target - 0.03
        return ok, f"recall@{k}: alscale {ra:.3f}, this {rb:.3f} (target {target})"

    return check


# --------------------------------------------------------------------------- HAC peers


def check_tree(data: dict, ours: dict, theirs: dict):
    """The same dendrogram: the merge heights agree (rtol 1e-4) and the cophenetic distances
    correlate above 0.9999 (ties may merge in another order)."""
    from scipy.cluster.hierarchy import cophenet

    a, b = ours["linkage"], theirs["0"]
    if a.shape != b.shape:
        return False, f"linkage shapes {a.shape} vs {b.shape}"
    heights = np.allclose(np.sort(a[:, 2]), np.sort(b[:, 2]), rtol=1e-4, atol=1e-6)
    corr = float(np.corrcoef(cophenet(a), cophenet(b))[0, 1]) if a.shape[0] > 1 else 1.0
    ok = bool(heights and corr > 0.9999)
    return ok, f"heights {'equal' if heights else 'DIFFER'}, cophenetic correlation {corr:.6f}"


# ============================================================================================
# The suites
# ============================================================================================

IMAGENET = BenchSize("imagenet", n=1_281_167, c=1000, d=2048, budget=10_000)


def imagenet(scale: float = 1.0) -> Suite:
    sz = IMAGENET.scaled(scale)
    n, c, d, B = sz.n, sz.c, sz.d, sz.budget
    data = {"logits": DataSpec.of("logits", nbytes=n * c * 4 + c * d * 4 + 16 * n, n=n, c=c, d=d, budget=B, seed=0)}
    slow = 1 if n >= 100_000 else None  # the torch loops run once at large sizes
    work = 64 * n  # a few O(N) arrays
    torch_work = _TORCH_BYTES + 3 * min(_CHUNK_BYTES, n * c * 4) + 48 * n
    L = "logits"
    cases = [
        Case(f"floor: {_g(n)} x {_g(c)} fp32 logits", "logits.sum() (numpy, 1 pass)", "floor", L, lambda dd: dd[L].sum),
    ]

    def grp(name: str) -> str:
        return f"{name} (N={_g(n)} C={_g(c)} B={_g(B)})"

    g = grp("balanced: BASE")
    cases += [
        Case(g, "alscale.select_balanced", "alscale", L,
             lambda dd: partial(select_balanced, dd[L], B, weight=dd["weight"]), memory=work),
        Case(g, "official BASE loop (torch)", "peer", L, lambda dd: partial(_official_base, dd[L], B, dd["weight"]),
             repeat=slow, warmup=0 if slow else 1, needs=("torch",), check=check_base(B),
             memory=torch_work + 16 * n * 8),
    ]
    g = grp("boundary: MASE")
    cases += [
        Case(g, "alscale.select_boundary", "alscale", L,
             lambda dd: partial(select_boundary, dd[L], B, weight=dd["weight"]), memory=work),
        Case(g, "official MASE sort (torch)", "peer", L,
             lambda dd: partial(_official_boundary, dd[L], B, dd["weight"]), repeat=slow, warmup=0 if slow else 1,
             needs=("torch",), check=check_identical, memory=torch_work + 8 * n * 8),
    ]
    for rule, fn, scores, largest in (("margin", select_margin, margin_scores, False),
                                      ("confidence", select_confidence, confidence_scores, False),
                                      ("entropy", select_entropy, entropy_scores, True)):
        g = grp(rule)
        chk = check_same_rule(lambda dd, rows, s=scores: s(dd[L][rows]), largest=largest, atol=1e-5)
        cases.append(Case(g, f"alscale.select_{rule}", "alscale", L, lambda dd, f=fn: partial(f, dd[L], B),
                          memory=work))
        if rule == "margin":
            cases.append(Case(g, "numpy softmax + argpartition", "peer", L,
                              lambda dd: partial(numpy_select_margin, dd[L], B), repeat=3 if slow else None,
                              check=chk, memory=3 * min(_CHUNK_BYTES, n * c * 4) + 16 * n))
        cases.append(Case(g, "torch softmax + topk", "peer", L,
                          lambda dd, r=rule: partial(torch_select, dd[L], B, r), needs=("torch",), check=chk,
                          memory=torch_work))
    return Suite("imagenet", "BASE paper: ImageNet selection", data, cases, scale)


def _official_base(logits, budget, weight):
    return official_base(logits, budget, weight=weight)


def _official_boundary(logits, budget, weight):
    return official_boundary(logits, budget, weight=weight)


OPENIMAGES = {"n": 9_000_000, "dim": 256, "classes": 20_000, "budgets": (100_000, 1_000_000)}


def multilabel_supported() -> bool:
    """Whether ``select_margin`` takes ``multilabel=`` (being added on another branch)."""
    return "multilabel" in inspect.signature(select_margin).parameters


def openimages(scale: float = 1.0) -> Suite:
    n = _rows(OPENIMAGES["n"], scale, least=4)
    dim, c = OPENIMAGES["dim"], OPENIMAGES["classes"]
    budgets = sorted({min(n, max(1, round(b * scale))) for b in OPENIMAGES["budgets"]})
    head = c * dim * 4 + c * 4
    data = {"pool": DataSpec.of("embeddings", nbytes=2 * head + 8 * n, mapped_bytes=n * dim * 4,
                                n=n, dim=dim, classes=c, seed=0)}
    P = "pool"
    chunk = min(_chunk_rows(4 * c), n) * c * 4  # one chunk of logits

    # From 100K rows on (scale 0.011 and up) a call is a GEMM pass of seconds over tens of
    # chunks, its own warm-up after the first chunk: no warm-up call, at most 3 timed calls for
    # alscale and the floor, one for each peer (as the imagenet suite's slow peers).
    big = n >= 100_000
    ours = {"repeat": 3, "warmup": 0} if big else {}
    peer = {"repeat": 1, "warmup": 0} if big else {}

    def pool(dd):
        return logits_from_embeddings(dd["x"], dd["weight"], dd["bias"])

    def margins(dd, rows, **kw):
        return margin_scores(logits_from_embeddings(dd["x"][rows], dd["weight"], dd["bias"]), **kw)

    cases = [Case(f"floor: {_g(n)} x {dim} embeddings (memmap) -> {_g(c)} classes",
                  "numpy GEMM pass (z Wᵀ + b in chunks)", "floor", P,
                  lambda dd: partial(numpy_gemm_pass, dd["x"], dd["weight"], dd["bias"]), memory=2 * chunk, **ours)]
    ml = multilabel_supported()
    for B in budgets:
        g = f"margin from embeddings (N={_g(n)} D={dim} C={_g(c)} B={_g(B)})"
        cases += [
            Case(g, "alscale.select_margin(logits_from_embeddings)", "alscale", P,
                 lambda dd, B=B: partial(select_margin, pool(dd), B), memory=3 * chunk + 16 * n, **ours),
            Case(g, "torch chunked GEMM + softmax + topk", "peer", P,
                 lambda dd, B=B: partial(torch_select, dd["x"], B, "margin", weight=dd["weight"], bias=dd["bias"]),
                 needs=("torch",), check=check_same_rule(margins, atol=1e-6), memory=_TORCH_BYTES + 4 * chunk + 8 * n,
                 **peer),
        ]
        g = f"multi-label margin, mean (N={_g(n)} C={_g(c)} B={_g(B)})"
        skip = None if ml else "select_margin has no multilabel= yet (branch multilabel)"
        cases += [
            Case(g, "alscale.select_margin(multilabel=True)", "alscale", P,
                 lambda dd, B=B: partial(select_margin, pool(dd), B, multilabel=True), skip=skip,
                 memory=3 * chunk + 16 * n, **ours),
            Case(g, "torch chunked GEMM + sigmoid + topk", "peer", P,
                 lambda dd, B=B: partial(torch_select, dd["x"], B, "margin", weight=dd["weight"], bias=dd["bias"],
                                         multilabel=True),
                 skip=skip, needs=("torch",), check=check_same_rule(partial(margins, multilabel=True), atol=1e-6),
                 memory=_TORCH_BYTES + 4 * chunk + 8 * n, **peer),
        ]
    B = budgets[0]
    g = f"cluster-margin on given clusters (N={_g(n)} C={_g(c)} B={_g(B)}, k_m=10B, N/100 clusters)"
    cases += [
        Case(g, "alscale.select_cluster_margin", "alscale", P,
             lambda dd: partial(select_cluster_margin, pool(dd), _given_clusters(dd["x"].shape[0]), B, seed=0),
             memory=3 * chunk + 40 * n, **ours),
        Case(g, "numpy margins + Python round-robin", "peer", P,
             lambda dd: partial(numpy_cluster_margin, dd["x"], dd["weight"], dd["bias"],
                                _given_clusters(dd["x"].shape[0]), B),
             check=check_cluster_counts, memory=2 * chunk + 200 * n, **peer),
    ]
    return Suite("openimages", "Cluster-Margin paper: Open Images selection from embeddings", data, cases, scale,
                 notes=([f"at N >= 100,000 a call is a GEMM pass of seconds: the floor and alscale's rows are timed "
                         f"{ours['repeat']} times, each peer once, none after a warm-up call"] if big else []) + [
                        "peak MiB counts the pages of the embeddings' memmap a process keeps mapped (file-backed, "
                        "reclaimable); alscale's chunk source releases them chunk by chunk, the peers do not",
                        "the Cluster-Margin peer's random draws are not alscale's: its check compares the picks "
                        "per cluster, which the rule fixes"])


HAC_EXACT_N = 20_000
HAC_GRAPH_N = 1_000_000


def hac(scale: float = 1.0) -> Suite:
    n = _rows(HAC_EXACT_N, scale, least=50)
    m = _rows(HAC_GRAPH_N, scale, least=200)
    d = 64
    data = {
        "exact": DataSpec.of("blobs", nbytes=n * d * 12, n=n, dim=d, centres=max(2, n // 20), noise=0.3, seed=0),
        "graph": DataSpec.of("blobs", nbytes=m * d * 4 + 8 * m, n=m, dim=d, centres=max(2, m // 100), noise=0.15,
                             seed=0),
    }
    pair = n * (n - 1) // 2 * 8
    cases = []
    for metric in ("euclidean", "cosine"):
        g = f"exact UPGMA, {metric} (N={_g(n)} D={d})"
        floor = f"scipy pdist, {metric} (the distances alone)"
        cases += [
            Case(g, floor, "floor", "exact", lambda dd, mt=metric: partial(_pdist, dd["x"], mt), memory=pair + n * d * 8),
            Case(g, "alscale.hac_average", "alscale", "exact",
                 lambda dd, mt=metric: partial(hac_average, dd["x"], metric=mt, n_clusters=10), floor=floor,
                 memory=pair),
            Case(g, "fastcluster.linkage", "peer", "exact",
                 lambda dd, mt=metric: partial(_fastcluster, dd["x"], mt), floor=floor, needs=("fastcluster",),
                 check=check_tree, memory=2 * pair + n * d * 8),
            Case(g, "scipy linkage", "peer", "exact", lambda dd, mt=metric: partial(_scipy_linkage, dd["x"], mt),
                 floor=floor, check=check_tree, memory=2 * pair + n * d * 8),
        ]
    k = 10
    method = "faiss" if m > 200_000 else "exact"
    g = f"graph HAC, cosine (N={_g(m)} D={d} k={k}, kNN {method})"
    cases += [
        Case(f"floor: {_g(m)} x {d} blobs", "x.sum() (numpy, 1 pass)", "floor", "graph", lambda dd: dd["x"].sum),
        Case(g, f"alscale.hac_average(neighbors={k})", "alscale", "graph",
             lambda dd: partial(hac_average, dd["x"], neighbors=k, n_clusters=max(2, m // 100), knn_method=method),
             needs=("faiss",) if method == "faiss" else (), memory=m * k * 40 + m * d * 4),
    ]
    return Suite("hac", "average-linkage HAC: exact and on a kNN graph", data, cases, scale,
                 notes=["graph HAC has no peer at this size (scipy and fastcluster need the N² distances)"])


def _pdist(x, metric):
    from scipy.spatial.distance import pdist

    return pdist(x.astype(np.float64), metric).sum()


def _fastcluster(x, metric):
    import fastcluster

    return fastcluster.linkage(x.astype(np.float64), method="average", metric=metric)


def _scipy_linkage(x, metric):
    from scipy.cluster.hierarchy import linkage

    return linkage(x.astype(np.float64), "average", metric=metric)


KNN_N = 200_000
FASHION_N = 60_000


def knn(scale: float = 1.0) -> Suite:
    n = _rows(KNN_N, scale, least=300)
    f = _rows(FASHION_N, scale, least=300)
    d = 64
    k, target = 10, 0.95
    hard = dict(HARD_BLOBS, centres=max(2, round(HARD_BLOBS["centres"] * scale)))
    data = {
        "separated": DataSpec.of("blobs", nbytes=n * d * 4 + 8 * n, n=n, dim=d, centres=max(2, n // 100),
                                 noise=0.15, seed=0),
        "overlapping": DataSpec.of("blobs", nbytes=n * d * 4 + 8 * n, n=n, seed=0, **hard),
        "fashion-mnist": DataSpec.of("fashion-mnist", nbytes=f * 784 * 4 * 2, n=f),
    }
    import os

    from .datasets import DEFAULT_FASHION_MNIST_DIR

    no_fashion = None
    if not os.path.exists(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")):
        no_fashion = f"no Fashion-MNIST in {DEFAULT_FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)"
    cases = []
    for key, label, rows, dim in (("separated", "separated blobs, noise 0.15", n, d),
                                  ("overlapping", f"overlapping blobs, {hard['centres']:,} centres, noise 0.8", n, d),
                                  ("fashion-mnist", "Fashion-MNIST pixels", f, 784)):
        skip = no_fashion if key == "fashion-mnist" else None
        g = f"kNN graph k={k} recall {target}: {label} (N={_g(rows)} D={dim})"
        graph_mem = rows * k * 16 + rows * dim * 4
        cases += [
            Case(g, "x.sum() (numpy, 1 pass)", "floor", key, lambda dd: dd["x"].sum, skip=skip),
            Case(g, f"alscale.knn_graph(knn_method='faiss', recall={target})", "alscale", key,
                 lambda dd: (lambda: knn_graph(dd["x"], k, knn_method="faiss", recall=target)[0]),
                 needs=("faiss",), skip=skip, memory=graph_mem * 2),
            Case(g, "faiss IVF-Flat (nprobe tuned to the recall)", "peer", key,
                 lambda dd: faiss_knn(dd["x"], k, "ivf", target), needs=("faiss",), skip=skip,
                 check=check_recall(k, target), memory=graph_mem * 3),
            Case(g, "faiss HNSW M=16 (efSearch tuned to the recall)", "peer", key,
                 lambda dd: faiss_knn(dd["x"], k, "hnsw", target), needs=("faiss",), skip=skip,
                 check=check_recall(k, target), memory=graph_mem * 3 + rows * 16 * 8 * 2),
        ]
    return Suite("knn", "kNN graph at a recall vs faiss", data, cases, scale)


BAYES = {"samples": 20, "n": 100_000, "classes": 1000, "budget": 1000,
         "batchbald": {"n": 50_000, "classes": 10, "budget": 100, "configs": 200}}


def bayes(scale: float = 1.0) -> Suite:
    t, c = BAYES["samples"], BAYES["classes"]
    n = _rows(BAYES["n"], scale, least=20)
    B = max(1, min(n, round(BAYES["budget"] * scale)))
    bb = BAYES["batchbald"]
    m = _rows(bb["n"], scale, least=20)
    bB = max(2, min(m, round(bb["budget"] * scale)))
    data = {
        "mc": DataSpec.of("mc", nbytes=t * n * c * 4 + n * c * 4, samples=t, n=n, classes=c, seed=0),
        "mc-small": DataSpec.of("mc", nbytes=t * m * bb["classes"] * 4 + m * bb["classes"] * 4, samples=t, n=m,
                                classes=bb["classes"], seed=0),
    }
    g = f"BALD (T={t} N={_g(n)} C={_g(c)} B={_g(B)})"
    chk = check_same_rule(lambda dd, rows: bald_scores(dd["samples"][:, rows]), largest=True, atol=1e-5)
    cases = [
        Case(f"floor: MC samples T={t} N={_g(n)} C={_g(c)}", "samples.sum() (numpy, 1 pass)", "floor", "mc", lambda dd: dd["samples"].sum),
        Case(g, "alscale.select_bald", "alscale", "mc", lambda dd: partial(select_bald, dd["samples"], B),
             memory=n * c * 8),
        Case(g, "numpy softmax + mean p log p", "peer", "mc", lambda dd: partial(numpy_bald, dd["samples"], B),
             check=chk, memory=n * c * 12 + 16 * n),
        Case(g, "baal BALD.compute_score", "peer", "mc", lambda dd: partial(baal_bald, dd["samples"], B),
             needs=("baal", "torch"), check=chk, memory=_TORCH_BYTES + 4 * _CHUNK_BYTES),
    ]
    g = f"BatchBALD (T={t} N={_g(m)} C={bb['classes']} B={bB}, {bb['configs']} configurations)"
    baal_mem = m * bb["configs"] * bb["classes"] * 8 * 2 + t * m * bb["classes"] * 8 * 3
    cases += [
        Case(f"floor: MC samples T={t} N={_g(m)} C={bb['classes']}", "samples.sum() (numpy, 1 pass)", "floor",
             "mc-small", lambda dd: dd["samples"].sum),
        Case(g, "alscale.select_batchbald", "alscale", "mc-small",
             lambda dd: partial(select_batchbald, dd["samples"], bB, num_samples=bb["configs"], seed=0),
             repeat=3, memory=m * bb["configs"] * 16),
        Case(g, "baal BatchBALD (sampled configurations; picks not compared)", "peer", "mc-small",
             lambda dd: partial(baal_batchbald, dd["samples"], bB, bb["configs"]), repeat=1, warmup=0,
             needs=("baal", "torch"), memory=_TORCH_BYTES + baal_mem),
    ]
    return Suite("bayes", "Bayesian acquisition over MC samples", data, cases, scale)


COLDSTART = {"n": 1_000_000, "dim": 128, "centres": 1000, "noise": 0.5, "budget": 1000}


def coldstart(scale: float = 1.0) -> Suite:
    cs = COLDSTART
    n = _rows(cs["n"], scale, least=200)
    d = cs["dim"]
    B = max(2, min(n // 4, round(cs["budget"] * scale)))
    data = {"x": DataSpec.of("blobs", nbytes=n * d * 8 + 8 * n, n=n, dim=d, centres=max(2, round(cs["centres"] * scale)),
                             noise=cs["noise"], seed=0)}
    method = "faiss" if n > 50_000 else "exact"
    cases = [
        Case(f"floor: {_g(n)} x {d} blobs", "x.sum() (numpy, 1 pass)", "floor", "x", lambda dd: dd["x"].sum),
        Case(f"TypiClust (N={_g(n)} D={d} B={_g(B)})", "alscale.select_typiclust", "alscale", "x",
             lambda dd: partial(select_typiclust, dd["x"], B, seed=0), needs=("faiss",), memory=n * d * 4 + 200 * n),
        Case(f"ProbCover (N={_g(n)} D={d} B={_g(B)}, kNN {method})", "alscale.select_probcover", "alscale", "x",
             lambda dd: partial(select_probcover, dd["x"], B, num_classes=100, knn_method=method, seed=0),
             needs=("faiss",), memory=n * d * 4 + 20 * n * 24),
    ]
    return Suite("coldstart", "cold start: TypiClust and ProbCover", data, cases, scale,
                 notes=["no peer runs the same rule at this size; benchmarks/coldstart.py times the papers' code"])


SUITES: dict = {
    "imagenet": imagenet,
    "openimages": openimages,
    "hac": hac,
    "knn": knn,
    "bayes": bayes,
    "coldstart": coldstart,
}


def build_suite(name: str, scale: float = 1.0) -> Suite:
    """The suite ``name`` at ``scale`` (0 < scale; N and B times scale)."""
    try:
        make = SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; available: {', '.join(SUITES)}") from None
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return make(float(scale))


SUMMARY = {
    "imagenet": "1,281,167 x 1000 logits, B = 10K: BASE, MASE, margin, confidence, entropy vs the official BASE "
                "torch loop, the MASE torch sort, numpy margin, torch softmax + topk",
    "openimages": "9M x 256 embeddings (memmap) -> 20K classes, B = 100K and 1M: margin (single-, multi-label), "
                  "Cluster-Margin vs a chunked torch GEMM pass, numpy + Python round-robin",
    "hac": "exact UPGMA 20K x 64 vs fastcluster, scipy; graph HAC 1M x 64",
    "knn": "kNN graph k = 10 at recall 0.95 vs faiss IVF-Flat, HNSW: separated, overlapping, Fashion-MNIST",
    "bayes": "BALD T = 20, 100K x 1000 vs numpy, baal; BatchBALD vs baal",
    "coldstart": "TypiClust, ProbCover on 1M x 128 blobs, B = 1000",
}


def describe() -> list:
    """One line per suite: its name, what it runs at full size, its memory (and disk)."""
    out = []
    for name in SUITES:
        s = build_suite(name, 1.0)
        disk = s.disk_needed()
        extra = f", {disk / 2**30:.1f} GiB disk (a memmap in the temporary folder)" if disk else ""
        out.append(f"{name:<11} {SUMMARY[name]} [full size: ~{s.memory_needed() / 2**30:.1f} GiB memory{extra}]")
    return out


def run(
    names: list,
    *,
    scale: float = 1.0,
    repeat: int = 5,
    json_path: Optional[str] = None,
    compare: Optional[str] = None,
    threshold: float = 0.10,
    max_time: Optional[float] = 60.0,
    progress: Optional[bool] = None,
    file: Any = None,
    argv: Optional[list] = None,
) -> int:
    """Runs the suites ``names`` (``alscale bench --suite``): for each, the memory it needs is
    printed before it starts and a suite that will not fit the available memory (or its memmap
    the temporary folder's free disk) is refused; then its rows, its table; at the end the JSON
    and the comparison with an earlier run. Returns the exit status: 0, 1 when a check failed
    or a case broke, 2 when a suite was refused (alone: nothing ran)."""
    import shutil
    import sys
    import tempfile

    from . import harness

    file = sys.stdout if file is None else file
    old = harness.read_json(compare) if compare else None
    suites = [build_suite(name, scale) for name in names]
    runs: list = []
    failed = refused = 0
    for suite in suites:
        need, mapped = suite.memory_needed(), suite.disk_needed()
        avail = harness.available_memory()
        free_disk = shutil.disk_usage(tempfile.gettempdir()).free
        print(f"# suite {suite.name} at scale {scale:g}: needs ~{need / 2**30:.2f} GiB of memory (its largest case)"
              + (f" and {mapped / 2**30:.2f} GiB of disk in {tempfile.gettempdir()}" if mapped else "")
              + (f"; {avail / 2**30:.1f} GiB available (MemAvailable)" if avail is not None else ""),
              file=file, flush=True)
        short = None
        if avail is not None and need > avail:
            short = f"it needs ~{need / 2**30:.2f} GiB of memory, {avail / 2**30:.2f} GiB is available"
            fit = scale * avail / need * 0.8
        elif mapped > free_disk:
            short = f"its memmap needs {mapped / 2**30:.2f} GiB of disk, {free_disk / 2**30:.2f} GiB is free"
            fit = scale * free_disk / mapped * 0.8
        if short is not None:
            print(f"alscale bench: suite {suite.name} refused at scale {scale:g}: {short}; "
                  f"try --scale {_round_down(fit)}", file=sys.stderr, flush=True)
            runs.append({"suite": suite.name, "scale": scale, "refused": short, "memory_needed": need, "rows": []})
            refused += 1
            continue
        rows = harness.run_suite(suite, repeat=repeat, file=file, progress=progress, max_time=max_time)
        print("", file=file)
        own = [c for c in suite.cases if c.repeat is not None or c.warmup != 1]
        print(f"suite {suite.name} (scale {scale:g}, up to {repeat} timed run(s) per row after a warm-up"
              + (f", fewer where they pass {max_time:g} s" if max_time else "")
              + (f"; {len(own)} of its {len(suite.cases)} rows have their own limits" if own else "")
              + ")", file=file)
        print(harness.format_table(rows), file=file)
        for note in suite.notes:
            print(f"# note: {note}", file=file)
        print("", file=file, flush=True)
        bad = [r["method"] for r in rows if "error" in r or (r.get("check") or {}).get("ok") is False]
        if bad:
            print(f"alscale bench: {suite.name}: failed checks or errors: {', '.join(bad)}", file=sys.stderr)
            failed += 1
        runs.append({"suite": suite.name, "scale": scale, "repeat": repeat, "memory_needed": need,
                     "data": {k: v.to_json() for k, v in suite.data.items()}, "rows": rows})
    if json_path:
        harness.write_json(json_path, runs, argv=argv)
        print(f"# wrote {json_path}", file=file)
    if old is not None:
        text, regressions = harness.compare_runs(old, runs, threshold=threshold)
        print(f"# against {compare}", file=file)
        print(text, file=file, flush=True)
        if regressions:
            print(f"# {len(regressions)} regression(s) beyond {threshold:.0%}", file=file)
    if failed:
        return 1
    # --suite all: suites that do not fit are skipped, the others ran
    return 2 if refused and refused == len(suites) else 0


def _round_down(x: float) -> str:
    if x <= 0:
        return "0.001"
    p = 10 ** math.floor(math.log10(x))
    return f"{math.floor(x / p) * p:.3g}"
