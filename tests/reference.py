"""Plain numpy references for every alscale selection rule.

Written from the rules in docs/algorithms.md and the API contract, for clarity rather than speed.
The BASE / MASE (boundary) references use exactly the float64 operations of the contract,
so their indices must match alscale's bit for bit:

* logits are converted to float64 (float16 / bfloat16 / float32 values are exact in it);
* p = first argmax of the row; d_c = l_p - l_c;
* G = W64 W64ᵀ summed in lane order (lane_sum); n2 = (diag(G)[:, None] + diag(G)[None, :]) - 2.0 * G;
  inv = 1 / sqrt(n2), and +inf on the diagonal, where n2 <= 0, or where the two weight
  rows are exactly equal (weight=None: inv = 1 off the diagonal);
* r_c = d_c * inv[p, c], a NaN product (0 * inf) counting as +inf, so r_p = +inf;
* boundary score = min_c r_c (+inf when C == 1); the BASE score of a row for class c is
  r_c, except for rows predicted c, whose score is their boundary score.

Nothing here imports alscale.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "to_float64",
    "to_numpy",
    "exclude_mask",
    "available_rows",
    "topk_smallest",
    "topk_largest",
    "softmax",
    "margin_scores",
    "confidence_scores",
    "entropy_scores",
    "inverse_norms",
    "ratios",
    "boundary_scores",
    "balanced_scores",
    "select_margin",
    "select_confidence",
    "select_entropy",
    "exp_nonpos",
    "expm1_nonpos",
    "sigmoid_values",
    "multilabel_scores",
    "multilabel_scores_float64",
    "select_multilabel",
    "select_boundary",
    "select_balanced",
    "quotas",
    "linkage_from_merges",
    "condensed_float32",
    "upgma_float32",
    "graph_hac_merges",
    "graph_hac",
    "flat_labels",
    "knn_cosine",
    "round_robin_keys",
    "cluster_round_robin",
    "select_cluster_margin",
    "adjusted_rand_index",
    "lane_sum",
    "select_coreset",
    "gradient_factors",
    "select_badge",
    "balanced_random",
    "partitions",
]


# --------------------------------------------------------------------------- conversions


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def to_numpy(x) -> np.ndarray:
    """A numpy copy of an array-like or CPU torch tensor (dtype kept when numpy has it)."""
    if _is_torch(x):
        import torch

        t = x.detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: exact in float32
            t = t.to(torch.float32)
        return t.numpy().copy()
    return np.array(x, copy=True)


def to_float64(x) -> np.ndarray:
    """The float64 values of logits / weight, exactly (every 16/32-bit float fits)."""
    if _is_torch(x):
        import torch

        return x.detach().cpu().to(torch.float64).numpy().copy()
    return np.asarray(x).astype(np.float64)


def exclude_mask(exclude, n: int) -> np.ndarray:
    """Boolean (n,) mask of the excluded rows.

    ``exclude`` is None, a boolean mask of length n, or integer indices in [-n, n)
    (negative ones counted from the end, duplicates allowed).
    """
    mask = np.zeros(n, dtype=bool)
    if exclude is None:
        return mask
    e = to_numpy(exclude)
    if e.dtype == np.bool_:
        if e.shape != (n,):
            raise ValueError(f"exclude mask has shape {e.shape}, expected ({n},)")
        return e.copy()
    e = e.astype(np.int64).reshape(-1)
    for i in e:
        if not -n <= i < n:
            raise ValueError(f"exclude index {i} out of range for {n} rows")
        mask[i % n] = True
    return mask


def available_rows(n: int, exclude) -> np.ndarray:
    """Ascending indices of the rows that are not excluded."""
    return np.flatnonzero(~exclude_mask(exclude, n)).astype(np.int64)


# --------------------------------------------------------------------------- top-k rules


def topk_smallest(scores, budget: int, exclude=None) -> np.ndarray:
    """The ``budget`` non-excluded rows with the smallest score, ascending by (score, row).

    Budget past the available rows is clipped. +inf scores sort last (by row).
    """
    scores = np.asarray(scores, dtype=np.float64)
    rows = available_rows(scores.shape[0], exclude)
    order = rows[np.argsort(scores[rows], kind="stable")]  # stable: ties -> smaller row
    return order[: min(int(budget), rows.size)].astype(np.int64)


def topk_largest(scores, budget: int, exclude=None) -> np.ndarray:
    """The ``budget`` non-excluded rows with the largest score, descending; ties -> smaller row."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = available_rows(scores.shape[0], exclude)
    order = rows[np.argsort(-scores[rows], kind="stable")]
    return order[: min(int(budget), rows.size)].astype(np.int64)


# --------------------------------------------------------------------------- uncertainty


def softmax(logits) -> np.ndarray:
    """Numerically stable float64 softmax over each row."""
    x = to_float64(logits)
    with np.errstate(over="ignore"):  # l - max may overflow to -inf for huge logits: exp -> 0
        e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def margin_scores(logits) -> np.ndarray:
    """p(1) - p(2), the two largest softmax probabilities (p(2) = 0 with one class)."""
    p = np.sort(softmax(logits), axis=1)
    if p.shape[1] == 1:
        return p[:, -1] - 0.0
    return p[:, -1] - p[:, -2]


def confidence_scores(logits) -> np.ndarray:
    """Largest softmax probability."""
    return softmax(logits).max(axis=1)


def entropy_scores(logits) -> np.ndarray:
    """-sum p log p (natural log), with 0 log 0 = 0."""
    p = softmax(logits)
    out = np.zeros(p.shape[0])
    for i in range(p.shape[0]):
        q = p[i][p[i] > 0]
        out[i] = -np.sum(q * np.log(q))
    return out


def select_margin(logits, budget, exclude=None) -> np.ndarray:
    return topk_smallest(margin_scores(logits), budget, exclude)


def select_confidence(logits, budget, exclude=None) -> np.ndarray:
    return topk_smallest(confidence_scores(logits), budget, exclude)


def select_entropy(logits, budget, exclude=None) -> np.ndarray:
    return topk_largest(entropy_scores(logits), budget, exclude)


# --------------------------------------------------------------------------- multi-label


# The multi-label kernel's arithmetic (csrc/rowmath_common.hpp, csrc/multilabel.cpp), repeated
# operation by operation in numpy so that its scores are matched bit for bit: every step is an
# IEEE +, -, *, / or compare in the compute type (float32 for 16/32-bit logits, float64 for
# float64 logits), with numpy's correctly rounded operations and no FMA.

def exp_parts(x: np.ndarray, magic) -> tuple:
    """csrc/rowmath_common.hpp exp_parts: x = n ln2 + r (n rounded by adding ``magic``, which may
    carry the exponent bias) and e^r - 1 from the polynomial before its + 1; returns (t, e^r - 1),
    t = x / ln2 + magic, in x's dtype (float32 or float64)."""
    if x.dtype == np.float32:
        f = np.float32
        t = x * f(1.44269504088896341) + magic
        n = t - magic
        r = x - n * f(0.693359375)
        r = r + n * f(2.12194440e-4)
        y = np.full_like(x, f(1.9875691500e-4))
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
            y = y * r + f(c)
        return t, y * (r * r) + r
    f = np.float64
    t = x * f(1.4426950408889634) + magic
    n = t - magic
    r = x - n * f(6.93145751953125e-1)
    r = r - n * f(1.42860682030941723212e-6)
    rr = r * r
    p = np.full_like(x, f(1.26177193074810590878e-4))
    p = p * rr + f(3.02994407707441961300e-2)
    p = p * rr + f(9.99999999999999999910e-1)
    p = p * r
    q = np.full_like(x, f(3.00198505138664455042e-6))
    q = q * rr + f(2.52448340349684104192e-3)
    q = q * rr + f(2.27265548208155028766e-1)
    q = q * rr + f(2.00000000000000000009e0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return t, f(2.0) * (p / (q - p))


def exp_nonpos(x: np.ndarray) -> np.ndarray:
    """csrc/rowmath_common.hpp exp_nonpos (Cephes; exponent set through the bits) for x <= 0, in
    x's dtype (float32 or float64); 0 below -87 (float32) / -708 (float64)."""
    if x.dtype == np.float32:
        f, u = np.float32, np.uint32
        magic = f(12582912.0)
        t, em1 = exp_parts(x, magic)
        y = em1 + f(1.0)
        bits = ((t.view(u) - np.array(magic).view(u)) + u(127)) << u(23)
        with np.errstate(over="ignore", invalid="ignore"):
            out = y * bits.view(np.float32)
        return np.where(x < f(-87.0), f(0.0), out).astype(np.float32)
    f, u = np.float64, np.uint64
    magic = f(6755399441055744.0)
    t, em1 = exp_parts(x, magic)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = f(1.0) + em1
        bits = ((t.view(u) - np.array(magic).view(u)) + u(1023)) << u(52)
        out = y * bits.view(np.float64)
    return np.where(x < f(-708.0), f(0.0), out)


def expm1_nonpos(x: np.ndarray) -> np.ndarray:
    """csrc/rowmath_common.hpp expm1_nonpos: x raised to -88 (float32) / -709 (float64), exp_nonpos's
    reduction with the bias in the rounding constant, e^r - 1 taken before the polynomial's + 1,
    then 2^n (e^r - 1) + (2^n - 1), 2^n being t's low bits shifted into the exponent."""
    if x.dtype == np.float32:
        f, u = np.float32, np.uint32
        x = np.maximum(x, f(-88.0))
        t, y = exp_parts(x, f(12583039.0))
        p2 = (t.view(u) << u(23)).view(np.float32)
        return (y * p2 + (p2 - f(1.0))).astype(np.float32)
    f, u = np.float64, np.uint64
    x = np.maximum(x, f(-709.0))
    t, y = exp_parts(x, f(6755399441056767.0))
    p2 = (t.view(u) << u(52)).view(np.float64)
    return y * p2 + (p2 - f(1.0))


def sigmoid_values(z: np.ndarray, kind: str) -> np.ndarray:
    """Per-class multi-label values of logits z (float32 or float64, finite): from t = |z| and
    e = exp(-t), margin tanh(t/2) = -expm1(-t) / (2 + expm1(-t)), confidence 1 / (1 + e), entropy
    log1p(e) + t (e / (1 + e)) with log1p(e) as 2 atanh(s) = 2s (1 + s^2/3 + ...), s = e / (2 + e),
    to s^16/17 (float32) or s^36/37 (float64)."""
    f = z.dtype.type
    t = np.abs(z)
    with np.errstate(over="ignore", invalid="ignore"):
        e = exp_nonpos(-t)
        if kind == "margin":
            em = expm1_nonpos(-t)
            return (f(0) - em) / (f(2) + em)  # 0 - em: +0 (not -0) at t = 0
        if kind == "confidence":
            return f(1) / (f(1) + e)
        if kind == "entropy":
            terms = 8 if f is np.float32 else 18
            u = f(1) + e
            s = e / (u + f(1))
            s2 = s * s
            q = np.full_like(s, f(1.0 / (2 * terms + 1)))
            for k in range(terms - 1, -1, -1):
                q = q * s2 + f(1.0 / (2 * k + 1))
            return (s + s) * q + t * (e / u)
    raise AssertionError(kind)


def _lane_sum_fixed(values: np.ndarray) -> np.ndarray:
    """Row sums in float64 as the kernels' sum_lanes: class c into lane c % 8, each lane in class
    order, the lanes combined as ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7))."""
    v = np.asarray(values).astype(np.float64)
    acc = np.zeros((v.shape[0], 8))
    for c in range(v.shape[1]):
        acc[:, c % 8] = acc[:, c % 8] + v[:, c]
    return ((acc[:, 0] + acc[:, 4]) + (acc[:, 1] + acc[:, 5])) + ((acc[:, 2] + acc[:, 6]) + (acc[:, 3] + acc[:, 7]))


def multilabel_scores(logits, kind: str, reduction: str = "mean", float64: bool | None = None) -> np.ndarray:
    """Multi-label scores (N,) float64, bit for bit the kernel's: per class sigmoid_values in
    float32 (16/32-bit logits) or float64 (``float64`` True, or float64 input), then "mean" =
    the lane-order float64 sum / C, or "min" = the value of the class with the smallest |z|, the
    most uncertain one (the smallest margin / confidence, the largest entropy: all three are
    monotone in |z|). ``logits``: the exact values (any float dtype)."""
    if float64 is None:
        float64 = np.asarray(logits).dtype == np.float64
    x = to_float64(logits)
    if not np.isfinite(x).all():
        raise ValueError("logits contain NaN or inf")
    z = x if float64 else x.astype(np.float32)
    v = sigmoid_values(z, kind)
    if reduction == "mean":
        return _lane_sum_fixed(v) / float(v.shape[1])
    if reduction == "min":
        # the most uncertain class is the one with the smallest |z| (all three are monotone in
        # |z|): the kernel computes that one class's value
        return sigmoid_values(np.abs(z).min(axis=1, keepdims=True), kind)[:, 0].astype(np.float64)
    raise AssertionError(reduction)


def multilabel_scores_float64(logits, kind: str, reduction: str = "mean") -> np.ndarray:
    """The same scores from the textbook formulas in float64 (np.tanh, np.log1p), for accuracy
    checks only: p = σ(z), margin |2p - 1| = |tanh(z/2)|, confidence max(p, 1 - p), entropy
    -p log p - (1 - p) log(1 - p) (in its overflow-free form)."""
    t = np.abs(to_float64(logits))
    e = np.exp(-t)
    if kind == "margin":
        v = np.tanh(t / 2)
    elif kind == "confidence":
        v = 1.0 / (1.0 + e)
    else:
        v = np.log1p(e) + t * e / (1.0 + e)
    if reduction == "mean":
        return v.mean(axis=1)
    return v.max(axis=1) if kind == "entropy" else v.min(axis=1)


def select_multilabel(logits, budget, kind: str, reduction: str = "mean", exclude=None,
                      float64: bool | None = None) -> np.ndarray:
    """select_margin / select_confidence / select_entropy with multilabel=True: the reference
    top-k (smallest first; entropy largest first; ties to the smaller row) of multilabel_scores."""
    scores = multilabel_scores(logits, kind, reduction, float64)
    topk = topk_largest if kind == "entropy" else topk_smallest
    return topk(scores, budget, exclude)


# --------------------------------------------------------------------------- BASE / MASE


def inverse_norms(weight, num_classes: int) -> np.ndarray:
    """(C, C) matrix inv[p, c] = 1 / ||w_p - w_c||, +inf where that norm is (taken as) 0."""
    C = num_classes
    if weight is None:
        inv = np.ones((C, C))
        np.fill_diagonal(inv, np.inf)
        return inv
    W = to_float64(weight)
    assert W.ndim == 2 and W.shape[0] == C, W.shape
    # Weights beyond 2^+-400 are scaled by a power of two first (exact: no overflow in G).
    top = np.abs(W).max(initial=0.0)
    scale = float(2.0 ** -np.floor(np.log2(top))) if (top > 2.0**400 or 0 < top < 2.0**-400) else 1.0
    W = W * scale
    # G in csrc/lanedot.hpp's order (lane_sum below), not BLAS's: reproducible bit for bit.
    G = lane_sum((W[:, None, :] * W[None, :, :]).reshape(C * C, -1)).reshape(C, C)
    n2 = (np.diag(G)[:, None] + np.diag(G)[None, :]) - 2.0 * G
    # Where the Gram formula cancels (n2 <= 1e-6 (G_pp + G_cc): nearly or exactly equal rows),
    # the squared norm is computed directly from w_p - w_c, pair by pair.
    for p in range(C):
        for c in range(C):
            if p != c and n2[p, c] <= 1e-6 * (G[p, p] + G[c, c]):
                diff = W[p] - W[c]
                n2[p, c] = lane_sum((diff * diff)[None])[0]
    usable = n2 > 0
    np.fill_diagonal(usable, False)
    inv = np.full((C, C), np.inf)
    inv[usable] = scale / np.sqrt(n2[usable])
    return inv


def ratios(logits, inv) -> tuple[np.ndarray, np.ndarray]:
    """(r, p): r[i, c] = (l_p - l_c) * inv[p, c] with NaN -> +inf; p = first argmax."""
    x = to_float64(logits)
    N = x.shape[0]
    p = np.argmax(x, axis=1)
    with np.errstate(over="ignore"):  # l_p - l_c may overflow to +inf for huge logits
        d = x[np.arange(N), p][:, None] - x
    with np.errstate(invalid="ignore"):  # 0 * inf
        r = d * inv[p]
    r[np.isnan(r)] = np.inf
    return r, p


def boundary_scores(logits, weight=None) -> np.ndarray:
    """min over c of r_c (+inf when C == 1): MASE's score."""
    x = to_float64(logits)
    r, _ = ratios(x, inverse_norms(weight, x.shape[1]))
    return r.min(axis=1)


def balanced_scores(logits, weight=None) -> np.ndarray:
    """(N, C) BASE scores: r_c, except the predicted class's column holds the boundary score."""
    x = to_float64(logits)
    r, p = ratios(x, inverse_norms(weight, x.shape[1]))
    s = r.copy()
    s[np.arange(x.shape[0]), p] = r.min(axis=1)
    return s


def select_boundary(logits, budget, weight=None, exclude=None) -> np.ndarray:
    return topk_smallest(boundary_scores(logits, weight), budget, exclude)


def quotas(budget: int, num_classes: int) -> list[int]:
    """q_c = B // C + (c < B % C)."""
    return [budget // num_classes + (1 if c < budget % num_classes else 0) for c in range(num_classes)]


def select_balanced(logits, budget, weight=None, exclude=None) -> np.ndarray:
    """BASE: class 0..C-1 in turn take their q_c rows with the smallest (score, row)
    among the rows not excluded and not taken by earlier classes."""
    x = to_float64(logits)
    N, C = x.shape
    scores = balanced_scores(x, weight)
    taken = exclude_mask(exclude, N)
    B = min(int(budget), int(N - taken.sum()))
    picks = []
    for c, q in enumerate(quotas(B, C)):
        if q == 0:
            continue
        rows = np.flatnonzero(~taken)
        mine = rows[np.argsort(scores[rows, c], kind="stable")][:q]
        taken[mine] = True
        picks.append(mine)
    if not picks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(picks).astype(np.int64)


# --------------------------------------------------------------------------- HAC (issue 3)


def linkage_from_merges(n: int, merges) -> np.ndarray:
    """scipy's Z from merges (a, b, height) in execution order, slot a keeping the union.

    Heights are first made non-decreasing along every path to the root (max with the children's),
    then rows are stable-sorted by height and numbered as scipy does: points 0..n-1, row i
    creates cluster n+i, the smaller id first, size in the last column.
    """
    last = {}
    fixed = []
    for a, b, h in merges:
        h = max(h, last.get(a, -np.inf), last.get(b, -np.inf))
        last[a] = h
        fixed.append((a, b, h))
    order = sorted(range(len(fixed)), key=lambda i: fixed[i][2])  # sorted() is stable
    cluster_of = {p: p for p in range(n)}  # point -> current cluster id
    members = {p: [p] for p in range(n)}   # cluster id -> its points
    z = np.zeros((n - 1, 4))
    for r, i in enumerate(order):
        a, b, h = fixed[i]
        ia, ib = cluster_of[a], cluster_of[b]
        assert ia != ib
        pts = members.pop(ia) + members.pop(ib)
        z[r] = (min(ia, ib), max(ia, ib), h, len(pts))
        members[n + r] = pts
        for p in pts:
            cluster_of[p] = n + r
    return z


def condensed_float32(x, metric: str) -> np.ndarray:
    """The (n, n) float32 distance matrix exactly as alscale's kernel rounds it: cosine on rows
    normalised in float64 (divided by their largest |entry|, then by their norm) then rounded to
    float32, 1 - Σ_k u_k v_k accumulated in float32 in
    dimension order and clipped to [0, 2], below 2^-18 taken as 0; (sq)euclidean as
    Σ_k (u_k - v_k)² in float32."""
    a = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        a = a / np.abs(a).max(axis=1)[:, None]
        a = a / np.sqrt(np.einsum("ij,ij->i", a, a))[:, None]
    a = a.astype(np.float32)
    acc = np.zeros((a.shape[0], a.shape[0]), dtype=np.float32)
    for k in range(a.shape[1]):
        col = a[:, k]
        if metric == "cosine":
            acc += col[:, None] * col[None, :]
        else:
            t = col[:, None] - col[None, :]
            acc += t * t
    if metric == "cosine":
        d = np.clip(np.float32(1.0) - acc, np.float32(0.0), np.float32(2.0))
        d[d < np.float32(2.0**-18)] = 0  # float32 rounding of parallel rows: distance 0
        return d
    return np.sqrt(acc) if metric == "euclidean" else acc


def upgma_float32(x, metric: str) -> np.ndarray:
    """scipy's nearest-neighbour-chain UPGMA (same tie rules) over float32 distances, each
    Lance-Williams update (|a| d_ak + |b| d_bk) / (|a| + |b|) done in float64 and stored as float32:
    the arithmetic of alscale's exact kernel, so its Z must match bit for bit."""
    D = condensed_float32(x, metric)
    n = D.shape[0]
    size = np.ones(n, dtype=np.int64)
    chain: list = []
    merges = []
    for _ in range(n - 1):
        if not chain:
            chain.append(int(np.flatnonzero(size > 0)[0]))
        while True:
            c = chain[-1]
            row = np.where((size > 0) & (np.arange(n) != c), D[c], np.float32(np.inf))
            y = int(np.argmin(row))  # first minimum: the smallest index
            if size[y] == 0:  # every other cluster at +inf: take the first active one
                y = int(np.flatnonzero((size > 0) & (np.arange(n) != c))[0])
            current = row[y]
            if len(chain) > 1:
                prev = chain[-2]
                if not current < D[c, prev]:
                    y, current = prev, D[c, prev]
                if y == prev:
                    break
            chain.append(y)
        chain.pop()
        chain.pop()
        a, b = min(c, y), max(c, y)
        na, nb = float(size[a]), float(size[b])
        merges.append((b, a, float(current)))  # the union stays in slot b (scipy's choice)
        size[b] += size[a]
        size[a] = 0
        upd = ((na * D[a].astype(np.float64) + nb * D[b].astype(np.float64)) / (na + nb)).astype(np.float32)
        D[b, :] = upd
        D[:, b] = upd
        D[b, b] = 0.0
    return linkage_from_merges(n, merges)


def graph_hac_merges(n: int, u, v, s):
    """Brute-force graph average linkage, O(n³): the merges (a, b, height) in execution order.

    Undirected edges, the largest similarity of duplicates, self-loops and s <= 0 dropped;
    w(A, B) = W(A, B) / (|A| |B|) with W the summed edge similarity (W of a union = W_a + W_b).
    Each step merges the connected pair with the largest w, ties to the lexicographically
    smallest (representative a, representative b), a < b, representative = smallest point;
    the union keeps a. With no edge left, the clusters are merged in representative order at 1.
    """
    W = np.zeros((n, n))
    for a, b, w in zip(np.asarray(u).tolist(), np.asarray(v).tolist(), np.asarray(s, np.float32).tolist()):
        if a == b or not w > 0:
            continue
        W[a, b] = W[b, a] = max(W[a, b], w)
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    merges = []
    for _ in range(n - 1):
        act = np.flatnonzero(alive)
        sub = W[np.ix_(act, act)]
        sim = sub / np.outer(size[act], size[act])
        iu = np.triu_indices(act.size, 1)
        vals, connected = sim[iu], sub[iu] > 0
        if connected.any():
            best = vals[connected].max()
            first = np.flatnonzero(connected & (vals == best))[0]  # row-major: smallest pair
            a, b, h = act[iu[0][first]], act[iu[1][first]], max(0.0, 1.0 - best)  # similarities > 1: height 0
        else:
            a, b, h = act[0], act[1], 1.0
        merges.append((int(a), int(b), float(h)))
        W[a, :] += W[b, :]
        W[:, a] = W[a, :]
        W[a, a] = 0.0
        W[b, :] = 0.0
        W[:, b] = 0.0
        size[a] += size[b]
        alive[b] = False
    return merges


def graph_hac(n: int, u, v, s) -> np.ndarray:
    """scipy's Z of :func:`graph_hac_merges`."""
    return linkage_from_merges(n, graph_hac_merges(n, u, v, s))


def flat_labels(z, n: int, threshold=None, n_clusters=None) -> np.ndarray:
    """Labels at a cut of a sorted Z (fcluster "distance" / "maxclust"), numbered 0..K-1 by each
    cluster's smallest point."""
    z = np.asarray(z)
    if n_clusters is not None:
        if n_clusters >= n:
            threshold = -np.inf
        else:
            threshold = z[n - n_clusters - 1, 2]
    cluster_of = list(range(n))
    members = {p: [p] for p in range(n)}
    for r in range(n - 1):
        if not z[r, 2] <= threshold:
            break
        pts = members.pop(int(z[r, 0])) + members.pop(int(z[r, 1]))
        members[n + r] = pts
        for p in pts:
            cluster_of[p] = n + r
    numbering = {}
    return np.array([numbering.setdefault(c, len(numbering)) for c in cluster_of], dtype=np.int64)


def knn_among(x, k: int, candidates) -> tuple[np.ndarray, np.ndarray]:
    """For every row i of x: the k rows of candidates(i) (i itself dropped) with the largest dot
    product (float64 of the float32 rows), largest first, ties to the smaller row; -1 / 0 pad."""
    n = x.shape[0]
    idx = np.full((n, k), -1, dtype=np.int64)
    sim = np.zeros((n, k), dtype=np.float32)
    xd = x.astype(np.float64)
    for i in range(n):
        cand = candidates(i)
        cand = cand[cand != i]
        s = xd[cand] @ xd[i]
        order = np.lexsort((cand, -s))[:k]
        idx[i, : order.size] = cand[order]
        sim[i, : order.size] = s[order]
    return idx, sim


def knn_cosine(x, k: int):
    """Exact cosine kNN in float64 of the float32 unit rows: (indices, similarities), largest
    similarity first, ties to the smaller index, the point itself excluded."""
    a = np.asarray(x, dtype=np.float64)
    unit = (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int64), np.take_along_axis(sim, idx, axis=1)


# --------------------------------------------------------------------------- Cluster-Margin


def round_robin_keys(seed: int, rows) -> np.ndarray:
    """splitmix64 output for the state seed + (row + 1) * 0x9E3779B97F4A7C15 (uint64 wrap-around)."""
    rows = np.asarray(rows, dtype=np.int64).astype(np.uint64)
    z = np.uint64(seed % 2**64) + (rows + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def cluster_round_robin(candidates, clusters, budget: int, seed: int) -> np.ndarray:
    """Cluster-Margin's round-robin over the candidate rows (see alscale.select_cluster_margin)."""
    candidates = [int(r) for r in candidates]
    keys = dict(zip(candidates, round_robin_keys(seed, candidates).tolist()))
    groups: dict = {}
    for r in sorted(candidates, key=lambda r: (int(clusters[r]), keys[r], r)):
        groups.setdefault(int(clusters[r]), []).append(r)
    order = sorted(groups, key=lambda c: (len(groups[c]), c))
    take = min(int(budget), len(candidates))
    out: list = []
    turn = 0
    while len(out) < take:
        for c in order:
            if turn < len(groups[c]) and len(out) < take:
                out.append(groups[c][turn])
        turn += 1
    return np.array(out, dtype=np.int64)


def select_cluster_margin(scores, clusters, budget: int, seed: int, candidates=None, exclude=None) -> np.ndarray:
    """Cluster-Margin on given margin scores: the k_m smallest, then :func:`cluster_round_robin`."""
    n = len(scores)
    available = available_rows(n, exclude).size
    km = min(10 * budget, available) if candidates is None else candidates
    return cluster_round_robin(topk_smallest(scores, km, exclude), clusters, budget, seed)


def adjusted_rand_index(a, b) -> float:
    """Adjusted Rand index of two labelings (Hubert & Arabie), from the contingency table."""
    a = np.unique(np.asarray(a), return_inverse=True)[1]
    b = np.unique(np.asarray(b), return_inverse=True)[1]
    n = a.size
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    comb = lambda v: (v * (v - 1) / 2.0).sum()  # noqa: E731
    sum_ij, sum_a, sum_b = comb(table), comb(table.sum(axis=1)), comb(table.sum(axis=0))
    expected = sum_a * sum_b / comb(np.array([n]))
    top = (sum_a + sum_b) / 2.0
    return 1.0 if top == expected else float((sum_ij - expected) / (top - expected))
# --------------------------------------------------------------------------- Coreset, BADGE


def lane_sum(terms: np.ndarray) -> np.ndarray:
    """Row sums of (N, D) float64 terms as csrc/lanedot.hpp adds them: term j into lane j % 8,
    each lane in column order, lanes combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))."""
    terms = np.asarray(terms, dtype=np.float64)
    n, d = terms.shape
    acc = np.zeros((n, 8))
    for j in range(d):
        acc[:, j % 8] = acc[:, j % 8] + terms[:, j]
    return ((acc[:, 0] + acc[:, 1]) + (acc[:, 2] + acc[:, 3])) + ((acc[:, 4] + acc[:, 5]) + (acc[:, 6] + acc[:, 7]))


def select_coreset(embeddings, labeled, budget: int, exclude=None) -> np.ndarray:
    """Greedy k-center: start from the labeled rows as centers; pick the eligible row with the
    largest squared distance to its nearest center (ties -> smaller row), make it a center."""
    x = to_float64(embeddings)
    n = x.shape[0]
    centers = list(np.flatnonzero(exclude_mask(labeled, n)))
    eligible = ~exclude_mask(exclude, n)
    eligible[centers] = False
    mind = np.full(n, np.inf)
    for c in centers:
        mind = np.minimum(mind, lane_sum((x - x[c]) * (x - x[c])))
    out = []
    while len(out) < budget and eligible.any():
        rows = np.flatnonzero(eligible)
        pick = int(rows[np.argmax(mind[rows])])  # first maximum: the smaller row
        out.append(pick)
        eligible[pick] = False
        mind = np.minimum(mind, lane_sum((x - x[pick]) * (x - x[pick])))
    return np.array(out, dtype=np.int64)


def gradient_factors(logits, embeddings):
    """a = float32(softmax - onehot(first argmax)) with libm exp and column-order sums, and
    g2 = ||a||² ||z||² (lane sums), as csrc/badge.hpp defines them."""
    import math

    lg = to_float64(logits)
    z = to_float64(embeddings)
    n, c = lg.shape
    a = np.zeros((n, c), dtype=np.float32)
    for i in range(n):
        m = lg[i].max()
        arg = int(np.argmax(lg[i]))
        e = [math.exp(float(v - m)) for v in lg[i]]
        s = 0.0
        for v in e:
            s += v
        a[i] = np.array([e[k] / s - (1.0 if k == arg else 0.0) for k in range(c)], dtype=np.float64).astype(np.float32)
    a64 = a.astype(np.float64)
    g2 = lane_sum(a64 * a64) * lane_sum(z * z)
    return a64, z, g2


def select_badge(logits, embeddings, budget: int, uniforms, exclude=None) -> np.ndarray:
    """k-means++ seeding with the factorized gradient distance and inverse-CDF D² sampling."""
    a, z, g2 = gradient_factors(logits, embeddings)
    n = a.shape[0]
    eligible = ~exclude_mask(exclude, n)
    out = []
    if budget <= 0 or not eligible.any():
        return np.array(out, dtype=np.int64)
    rows = np.flatnonzero(eligible)
    pick = int(rows[np.argmax(g2[rows])])
    mind = np.full(n, np.inf)
    while True:
        out.append(pick)
        eligible[pick] = False
        if len(out) == budget or not eligible.any():
            break
        dist = (g2 + g2[pick]) - 2.0 * (lane_sum(a * a[pick]) * lane_sum(z * z[pick]))
        dist = np.where(dist > 0, dist, 0.0)
        mind = np.where(eligible, np.minimum(mind, dist), mind)
        w = np.where(eligible, mind, 0.0)
        cum = np.cumsum(w)
        total = cum[-1]
        if not total > 0:
            pick = int(np.flatnonzero(eligible)[0])
            continue
        hit = np.flatnonzero(cum > uniforms[len(out)] * total)
        pick = int(hit[0]) if hit.size else int(np.flatnonzero(w > 0)[-1])
    return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------- loop baselines


def balanced_random(labels, labeled, budget: int, rng) -> np.ndarray:
    """The balanced-random oracle: the unlabeled rows in the order rng.permutation gives them,
    dealt into per-class queues, then taken round-robin (class 0, 1, ... each pass), skipping
    empty queues, until ``budget`` rows are taken."""
    labels = np.asarray(labels)
    rows = np.flatnonzero(~np.asarray(labeled, dtype=bool))
    rows = rows[rng.permutation(rows.size)]
    queues = {}
    for r in rows.tolist():
        queues.setdefault(int(labels[r]), []).append(r)
    out = []
    depth = 0
    while len(out) < min(budget, rows.size):
        for c in sorted(queues):
            if depth < len(queues[c]) and len(out) < budget:
                out.append(queues[c][depth])
        depth += 1
    return np.array(out, dtype=np.int64)


def partitions(available, budget: int, parts: int, rng):
    """The partitioned baselines' split: the available rows permuted by rng, cut into ``parts``
    nearly equal consecutive pieces (np.array_split), part p with budget B // P + (p < B % P)."""
    order = np.asarray(available)[rng.permutation(len(available))]
    return [(np.sort(p), budget // parts + (1 if i < budget % parts else 0))
            for i, p in enumerate(np.array_split(order, parts))]


def grouped(labels, groups):
    """Rows grouped by label in the kernels' CSR layout: int64 offsets (groups + 1) and the rows,
    in row order within a group."""
    start = np.zeros(groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=groups), out=start[1:])
    return start, np.argsort(labels, kind="stable").astype(np.int64)
