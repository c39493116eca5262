"""Cold start: TypiClust and ProbCover against numpy references written from the papers (and
their official code), ProbCover's greedy kernel against the paper's edge-list greedy, the kNN
approximation against the exact rule, threads, degenerate shapes and bad input."""

from __future__ import annotations

import doctest
import sys
from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
from alscale import _core
from alscale import coldstart as cs
from alscale._backend.arrays import unit_rows
from hypotheses import SEEDS, examples

# --------------------------------------------------------------------------- references


def unit64(x) -> np.ndarray:
    """The kernels' float32 unit rows, in float64."""
    a = np.asarray(x, dtype=np.float64)
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)


def ref_typiclust(x, clusters, labeled, budget: int, k: int):
    """TypiClust's selection loop (avihu111/TypiClust pycls/al/typiclust.py, select_samples) on
    unit rows: clusters of more than 5 points sorted by (labeled count, -size) — ties here by
    smallest row — visited round-robin (i % len), each giving argmax typicality = 1 / mean
    squared distance to its min(k, m // 2) nearest others among its m remaining points. Where
    the code stops (an exhausted cluster; no cluster of more than 5), alscale's documented
    extension: exhausted clusters are skipped, small clusters served after the large ones.
    Returns the picks and, per pick, every candidate's mean cosine similarity (the score)."""
    u = unit64(x)
    clusters = np.asarray(clusters)
    n = len(clusters)
    labels = clusters.copy()
    labels[labeled] = -1
    ids = np.unique(clusters)
    rows = {c: np.flatnonzero(clusters == c) for c in ids}
    size = {c: rows[c].size for c in ids}
    nlab = {c: int(labeled[rows[c]].sum()) for c in ids}
    key = {c: (size[c] <= 5, nlab[c], -size[c], rows[c][0]) for c in ids}
    order = sorted(ids, key=lambda c: key[c])
    picks, scores = [], []
    for phase in (False, True):
        ring = deque(c for c in order if (size[c] <= 5) == phase and (labels == c).any())
        while ring and len(picks) < budget:
            c = ring.popleft()  # the code's clusters_df.iloc[i % len(clusters_df)]
            idx = np.flatnonzero(labels == c)
            kk = min(k, idx.size // 2)
            if kk == 0:
                score = np.zeros(idx.size)
            else:
                sim = u[idx] @ u[idx].T
                np.fill_diagonal(sim, -np.inf)
                score = np.sort(sim, axis=1)[:, ::-1][:, :kk].mean(axis=1)  # = 1 - mean sq. distance / 2
            best = idx[int(np.argmax(score))]
            picks.append(best)
            scores.append(dict(zip(idx.tolist(), score)))
            labels[best] = -1
            if (labels == c).any():
                ring.append(c)
    return np.array(picks, dtype=np.int64), scores


def ref_balls(x, delta: float) -> list[np.ndarray]:
    """ProbCover's δ-graph (construct_graph): an edge x -> y when ‖x - y‖ < δ, on unit rows."""
    u = unit64(x)
    d = np.sqrt(np.maximum(((u[:, None, :] - u[None, :, :]) ** 2).sum(-1), 0.0))
    return [np.flatnonzero(row < delta) for row in d]


def ref_greedy(n: int, balls: list, labeled, budget: int) -> np.ndarray:
    """ProbCover's select_samples: edges (x, y); the labeled rows' y covered; each step the row
    with the most edges to uncovered y (np.argmax: the smaller row), its y covered. Stops when
    every degree is 0 (the code then draws at random)."""
    xs = np.concatenate([np.full(len(b), i) for i, b in enumerate(balls)]).astype(np.int64)
    ys = np.concatenate([np.asarray(b) for b in balls]).astype(np.int64)
    covered = np.unique(ys[np.isin(xs, np.flatnonzero(labeled))])
    keep = ~np.isin(ys, covered)
    xs, ys = xs[keep], ys[keep]
    picks = []
    for _ in range(budget):
        degrees = np.bincount(xs, minlength=n)
        if degrees.max() == 0:
            break
        cur = int(degrees.argmax())
        new = ys[xs == cur]
        keep = ~np.isin(ys, new)
        xs, ys = xs[keep], ys[keep]
        picks.append(cur)
    return np.array(picks, dtype=np.int64)


def ref_purity_delta(x, clusters, alpha: float) -> float:
    """The largest δ (among the pairwise distances, and 2) whose balls are pure for at least a
    fraction α of the points, by brute force over the candidates."""
    u = unit64(x)
    d = np.sqrt(np.maximum(((u[:, None, :] - u[None, :, :]) ** 2).sum(-1), 0.0))
    clusters = np.asarray(clusters)
    same = clusters[:, None] == clusters[None, :]
    best = 0.0
    for delta in np.unique(np.append(d, 2.0)):
        pure = ~((d < delta) & ~same).any(axis=1)
        if pure.mean() >= alpha:
            best = max(best, float(delta))
    return min(best, 2.0)


# --------------------------------------------------------------------------- data


def blobs(seed: int, n: int, d: int, centers: int, dupes: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)) * 3
    x = c[rng.integers(0, centers, n)] + rng.normal(size=(n, d))
    if dupes and n > 2:  # exact duplicates and exact ties
        src = rng.integers(0, n, n // 3)
        x[rng.integers(0, n, n // 3)] = x[src]
    x[np.all(x == 0, axis=1)] = 1.0
    return x


def labeled_mask(seed: int, n: int, fraction: float) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return rng.random(n) < fraction


def first_difference(a: np.ndarray, b: np.ndarray) -> int:
    m = min(a.size, b.size)
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if diff.size else m


# --------------------------------------------------------------------------- TypiClust


@given(seed=SEEDS, n=st.integers(1, 60), d=st.integers(1, 6), centers=st.integers(1, 8), k=st.integers(1, 25),
       budget=st.integers(0, 70), frac=st.sampled_from([0.0, 0.1, 0.5, 1.0]), dupes=st.booleans())
@examples(0.5)
def test_typiclust_matches_reference(seed, n, d, centers, k, budget, frac, dupes):
    x = blobs(seed, n, d, centers, dupes)
    rng = np.random.default_rng(seed + 2)
    clusters = rng.integers(0, centers, n)
    lab = labeled_mask(seed, n, frac)
    got = alscale.select_typiclust(x, budget, labeled=lab, neighbors=k, clusters=clusters)
    want, scores = ref_typiclust(x, clusters, lab, min(budget, int((~lab).sum())), k)
    assert got.dtype == np.int64 and got.size == want.size == min(budget, int((~lab).sum()))
    assert not lab[got].any() and np.unique(got).size == got.size
    i = first_difference(got, want)
    if i < got.size:  # only a float32 near-tie may order differently (then the states part)
        assert got[i] in scores[i], "picked from another cluster than the reference"
        assert abs(scores[i][int(got[i])] - scores[i][int(want[i])]) < 1e-5


@given(seed=SEEDS, m=st.integers(2, 80), d=st.integers(2, 16), k=st.integers(1, 25))
@examples(0.3)
def test_typicality_matches_the_papers_faiss_code(seed, m, d, k):
    """The official get_nn/calculate_typicality: faiss IndexFlatL2 (squared distances), k + 1
    neighbours with the first (the point itself) dropped, argmax of 1 / (mean + 1e-5)."""
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(seed)
    u = unit_rows(rng.normal(size=(m, d)))
    kk = min(k, m // 2)
    index = faiss.IndexFlatL2(d)
    index.add(u)
    dist, _ = index.search(u, kk + 1)
    paper = 1 / (dist[:, 1:].mean(axis=1) + 1e-5)
    got = cs._most_typical(u, k, 0)
    assert paper[got] >= paper.max() * (1 - 1e-5)  # the paper's best, up to float32 near-ties


def test_typiclust_ties_go_to_the_smaller_row_and_labeled_clusters_wait():
    x = np.array([[1.0, 0.0]] * 8 + [[0.0, 1.0]] * 6 + [[-1.0, 0.0]] * 3)
    clusters = np.array([0] * 8 + [1] * 6 + [2] * 3)
    got = alscale.select_typiclust(x, 4, clusters=clusters)
    np.testing.assert_array_equal(got, [0, 8, 1, 9])  # large clusters round-robin, then cluster 2 (small) waits
    got = alscale.select_typiclust(x, 3, labeled=[0], clusters=clusters)
    np.testing.assert_array_equal(got, [8, 1, 9])  # cluster 1 has no label: first, although smaller
    got = alscale.select_typiclust(x, 100, clusters=clusters)
    assert sorted(got.tolist()) == list(range(17)) and got[-3:].tolist() == [14, 15, 16]


def test_typiclust_with_faiss_kmeans():
    rng = np.random.default_rng(0)
    dirs = np.eye(3)
    sizes = (80, 40, 30)
    x = np.concatenate([dirs[c] + 0.05 * rng.normal(size=(m, 3)) for c, m in enumerate(sizes)])
    # one cluster (B = 1, no labels): the most typical point overall, in the largest (densest) blob
    got = alscale.select_typiclust(x, 1, seed=3)
    assert got[0] < 80 and got.tolist() == ref_typiclust(x, np.zeros(150, int), np.zeros(150, bool), 1, 20)[0].tolist()
    # the k-means is faiss's with a seed: the same picks as the selection on those clusters
    got = alscale.select_typiclust(x, 6, labeled=[1, 2], seed=3)
    unit = unit_rows(x)
    seed = np.random.default_rng(3).integers(2**31 - 1)
    want = cs.typiclust_picks(unit, cs.kmeans_labels(unit, 8, seed), np.isin(np.arange(150), [1, 2]), 6, 20)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(alscale.select_typiclust(x, 6, labeled=[1, 2], seed=3), got)


def test_typiclust_threads_and_torch():
    x = blobs(5, 400, 8, 6, True)
    clusters = np.random.default_rng(1).integers(0, 30, 400)
    a = alscale.select_typiclust(x, 25, clusters=clusters, num_threads=1)
    b = alscale.select_typiclust(x, 25, clusters=clusters, num_threads=2)
    np.testing.assert_array_equal(a, b)
    c = alscale.select_typiclust(x, 25, seed=4, num_threads=1)
    d = alscale.select_typiclust(x, 25, seed=4, num_threads=2)
    np.testing.assert_array_equal(c, d)
    t = alscale.select_typiclust(torch.from_numpy(x), 25, clusters=clusters)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
    np.testing.assert_array_equal(t.numpy(), a)


def test_typiclust_degenerate_shapes():
    assert alscale.select_typiclust(np.ones((1, 3)), 5, seed=0).tolist() == [0]
    assert alscale.select_typiclust(np.ones((4, 1)), 0, seed=0).size == 0
    assert alscale.select_typiclust(np.ones((4, 2)), 3, labeled=[0, 1, 2, 3], seed=0).size == 0
    got = alscale.select_typiclust(np.ones((7, 2)), 10, seed=0)
    assert sorted(got.tolist()) == list(range(7))  # all duplicates: every row, once


# --------------------------------------------------------------------------- ProbCover greedy


@st.composite
def ball_graphs(draw):
    n = draw(st.integers(1, 40))
    balls = []
    for i in range(n):
        others = draw(st.lists(st.integers(0, n - 1), max_size=8, unique=True))
        balls.append(np.array([i] + [j for j in others if j != i], dtype=np.int64))
    labeled = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return n, balls, labeled, draw(st.integers(0, n + 3))


@given(ball_graphs(), st.sampled_from([0, 1, 2]))
@examples(1.0)
def test_coverage_kernel_matches_the_papers_greedy(graph, threads):
    n, balls, labeled, budget = graph
    indptr = np.concatenate([[0], np.cumsum([len(b) for b in balls])]).astype(np.int64)
    members = np.concatenate(balls).astype(np.int64)
    covered = np.zeros(n, np.uint8)
    covered[np.concatenate([balls[i] for i in np.flatnonzero(labeled)] + [np.zeros(0, np.int64)])] = 1
    b = min(budget, int((~labeled).sum()))
    got, cov = _core.max_coverage(indptr, members, covered, (~labeled).astype(np.uint8), b, threads)
    want = ref_greedy(n, balls, labeled, b)
    np.testing.assert_array_equal(got, want)
    expect = covered.copy()
    for p in got:
        expect[balls[p]] = 1
    np.testing.assert_array_equal(cov, expect)


def test_coverage_kernel_refuses_malformed_graphs():
    ok = dict(covered=np.zeros(2, np.uint8), candidate=np.ones(2, np.uint8), budget=1)
    for indptr, members, what in [
        ([0, 1, 3], [0, 1], "indptr must run"),
        ([0, 3, 2], [0, 1], "non-decreasing"),
        ([0, 1, 2], [0, 5], "out of range"),
        ([0, 2, 2], [0, 0], "twice"),
    ]:
        with pytest.raises(ValueError, match=what):
            _core.max_coverage(np.array(indptr, np.int64), np.array(members, np.int64), **ok)
    with pytest.raises(ValueError, match="one entry per row"):
        _core.max_coverage(np.array([0, 1, 2], np.int64), np.array([0, 1], np.int64), np.zeros(3, np.uint8),
                           np.ones(2, np.uint8), 1)


# --------------------------------------------------------------------------- ProbCover


@given(seed=SEEDS, n=st.integers(1, 40), d=st.integers(1, 5), centers=st.integers(1, 6),
       budget=st.integers(0, 45), frac=st.sampled_from([0.0, 0.2, 1.0]), dupes=st.booleans(),
       q=st.floats(0.02, 0.98))
@examples(0.5)
def test_probcover_exact_matches_reference(seed, n, d, centers, budget, frac, dupes, q):
    x = blobs(seed, n, d, centers, dupes)
    u = unit64(x)
    dist = np.sqrt(np.maximum(((u[:, None] - u[None]) ** 2).sum(-1), 0.0))
    # δ between two distinct pairwise distances, away from both (float32 vs float64 rounding)
    values = np.unique(np.round(dist, 6))
    gaps = [(a + b) / 2 for a, b in zip(values[:-1], values[1:]) if b - a > 1e-4]
    delta = gaps[int(q * len(gaps))] if gaps else 0.5
    lab = labeled_mask(seed, n, frac)
    b = min(budget, int((~lab).sum()))
    got = alscale.select_probcover(x, budget, labeled=lab, delta=delta, seed=seed)
    greedy = ref_greedy(n, ref_balls(x, delta), lab, b)
    assert got.size == b and not lab[got].any() and np.unique(got).size == b
    np.testing.assert_array_equal(got[: greedy.size], greedy)
    rest = np.flatnonzero(~lab & ~np.isin(np.arange(n), greedy))
    fill = np.random.default_rng(seed).choice(rest, b - greedy.size, replace=False) if b > greedy.size else []
    np.testing.assert_array_equal(got[greedy.size:], fill)


@given(seed=SEEDS, n=st.integers(2, 30), d=st.integers(1, 5), centers=st.integers(1, 5),
       alpha=st.sampled_from([0.5, 0.8, 0.95, 1.0]), dupes=st.booleans())
@examples(0.5)
def test_probcover_delta_is_the_purity_rule(seed, n, d, centers, alpha, dupes):
    x = blobs(seed, n, d, centers, dupes)
    clusters = np.random.default_rng(seed).integers(0, centers, n)
    got = alscale.probcover_delta(x, clusters=clusters, purity=alpha)
    want = ref_purity_delta(x, clusters, alpha)
    assert abs(got**2 - want**2) < 1e-5, (got, want)
    # the kNN version: a lower bound, the same with every other point as a neighbour
    for k in (1, 3, n - 1):
        approx = alscale.probcover_delta(x, clusters=clusters, purity=alpha, neighbors=min(k, n - 1))
        assert approx**2 <= want**2 + 1e-5
    full = alscale.probcover_delta(x, clusters=clusters, purity=alpha, neighbors=n - 1)
    assert abs(full**2 - want**2) < 1e-5
    # a graph with missing neighbours (-1, as faiss marks them) is still a lower bound
    idx, sim = alscale.knn_graph(x, min(4, n - 1))
    idx[::2, -1] = -1
    holes = alscale.probcover_delta(x, clusters=clusters, purity=alpha, graph=(idx, sim))
    assert holes**2 <= want**2 + 1e-5


@given(seed=SEEDS, n=st.integers(2, 40), k=st.integers(1, 8), q=st.floats(0.05, 0.95), dupes=st.booleans())
@examples(0.5)
def test_knn_balls_are_the_exact_balls_truncated_to_k_plus_1(seed, n, k, q, dupes):
    x = blobs(seed, n, 3, 3, dupes)
    k = min(k, n - 1)
    u = unit64(x)
    dist = np.sqrt(np.maximum(((u[:, None] - u[None]) ** 2).sum(-1), 0.0))
    values = np.unique(np.round(dist, 6))
    gaps = [(a + b) / 2 for a, b in zip(values[:-1], values[1:]) if b - a > 1e-4]
    delta = gaps[int(q * len(gaps))] if gaps else 0.5
    exact = ref_balls(x, delta)
    idx, dd = cs._neighbours(unit_rows(x), k, "exact", 0)
    indptr, members = cs.balls(idx, dd, delta)
    for i in range(n):
        ball = members[indptr[i]:indptr[i + 1]]
        assert ball[0] == i and set(ball) <= set(exact[i])
        if exact[i].size <= k + 1:
            assert set(ball) == set(exact[i])
        else:
            assert ball.size == k + 1  # truncated: its k + 1 nearest
            nearest = np.sort(dist[i, exact[i]])[k]
            assert dist[i, ball].max() <= nearest + 1e-5


def test_probcover_covers_each_blob_once_and_labeled_balls_first():
    rng = np.random.default_rng(0)
    dirs = np.eye(3)
    x = np.concatenate([dirs[c] + 0.02 * rng.normal(size=(30 + 10 * c, 3)) for c in range(3)])
    got = alscale.select_probcover(x, 3, delta=0.5)
    assert sorted(np.searchsorted([30, 70, 120], got, side="right")) == [0, 1, 2]
    assert np.searchsorted([30, 70, 120], got[0], side="right") == 2  # the biggest blob first
    got = alscale.select_probcover(x, 2, labeled=[75], delta=0.5)
    assert sorted(np.searchsorted([30, 70, 120], got, side="right")) == [0, 1]
    # δ by the purity rule with faiss k-means into 3 clusters: one pick per blob
    got = alscale.select_probcover(x, 3, num_classes=3, seed=1)
    assert sorted(np.searchsorted([30, 70, 120], got, side="right")) == [0, 1, 2]


def test_probcover_threads_graph_and_torch():
    x = blobs(3, 500, 6, 8, True)
    for nb in (None, 10):
        a = alscale.select_probcover(x, 40, num_classes=8, neighbors=nb, seed=2, num_threads=1)
        b = alscale.select_probcover(x, 40, num_classes=8, neighbors=nb, seed=2, num_threads=2)
        np.testing.assert_array_equal(a, b)
    graph = alscale.knn_graph(x, 10)
    c = alscale.select_probcover(x, 40, num_classes=8, graph=graph, seed=2)
    np.testing.assert_array_equal(a, c)
    shuffled = np.random.default_rng(0).permuted(np.arange(10)[None].repeat(500, 0), axis=1)
    g2 = (np.take_along_axis(graph[0], shuffled, 1), np.take_along_axis(graph[1], shuffled, 1))
    np.testing.assert_array_equal(alscale.select_probcover(x, 40, num_classes=8, graph=g2, seed=2), a)
    t = alscale.select_probcover(torch.from_numpy(x), 40, num_classes=8, neighbors=10, seed=2)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), a)


def test_probcover_budget_beyond_the_pool_and_degenerate_shapes():
    x = blobs(0, 12, 2, 2, False)
    got = alscale.select_probcover(x, 100, labeled=[0, 1], delta=0.1, seed=0)
    assert sorted(got.tolist()) == list(range(2, 12))
    assert alscale.select_probcover(np.ones((1, 2)), 3, delta=1.0).tolist() == [0]
    assert alscale.select_probcover(np.ones((1, 2)), 3, num_classes=1, seed=0).tolist() == [0]
    assert alscale.select_probcover(x, 0, delta=0.3).size == 0
    assert alscale.probcover_delta(np.ones((5, 2)), clusters=[0] * 5) == 2.0  # one cluster: every ball pure


# --------------------------------------------------------------------------- input rules


@pytest.mark.parametrize("call, error, match", [
    (lambda: alscale.select_typiclust(np.ones(3), 1, seed=0), ValueError, "2-D"),
    (lambda: alscale.select_typiclust(np.array([[1.0], [np.nan]]), 1, seed=0), ValueError, "NaN"),
    (lambda: alscale.select_typiclust(np.array([[1.0, 0], [0, 0]]), 1, seed=0), ValueError, "row 1 has zero norm"),
    (lambda: alscale.select_typiclust(np.ones((3, 2)), -1), ValueError, "budget"),
    (lambda: alscale.select_typiclust(np.ones((3, 2)), 1, neighbors=0), ValueError, "neighbors must be at least 1"),
    (lambda: alscale.select_typiclust(np.ones((3, 2)), 1, labeled=[5]), ValueError, "labeled"),
    (lambda: alscale.select_typiclust(np.ones((3, 2)), 1, clusters=[0, 1]), ValueError, "clusters"),
    (lambda: alscale.select_typiclust(np.ones((3, 2)), 1, clusters=[0, -1, 1]), TypeError, "clusters"),
    (lambda: alscale.select_typiclust(np.ones((3, 2)), 1, clusters=[0.0, 1.0, 1.0]), TypeError, "clusters"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1), ValueError, "num_classes"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=0), ValueError, "delta"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=float("nan")), ValueError, "delta"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=True), TypeError, "delta"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, num_classes=2, purity=1.5), ValueError, "purity"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, num_classes=2, purity="x"), TypeError, "purity"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, num_classes=0), ValueError, "num_classes"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0, neighbors=0), ValueError, "neighbors"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0, neighbors=1, knn_method="x"), ValueError,
     "knn method"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0, graph=np.ones((3, 1))), TypeError, "tuple"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0, graph=(np.ones((2, 1), int), np.ones((2, 1)))),
     ValueError, "N = 3"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0, graph=(np.full((3, 1), 3), np.ones((3, 1)))),
     ValueError, "indices must lie"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0, graph=(np.array([[0], [0], [0]]), np.ones((3, 1)))),
     ValueError, "own neighbour"),
    (lambda: alscale.select_probcover(np.ones((3, 2)), 1, delta=1.0,
                                      graph=(np.array([[1], [0], [0]]), np.full((3, 1), np.nan))), ValueError, "finite"),
])
def test_bad_input_is_refused_with_a_message(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_missing_faiss_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        alscale.select_typiclust(np.ones((3, 2)), 1)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        alscale.probcover_delta(np.ones((3, 2)), num_classes=2)
    assert alscale.select_typiclust(np.eye(3), 1, clusters=[0, 0, 1]).size == 1  # no k-means: no faiss


def test_docstring_examples():
    result = doctest.testmod(cs, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


# --------------------------------------------------------------------------- the loop's strategies


def test_strategies_select_unlabeled_rows_and_keep_delta():
    from alscale.strategies import PoolView, get

    z = blobs(1, 300, 5, 4, False).astype(np.float32)
    lab = np.zeros(300, bool)
    lab[:10] = True
    for name in ("typiclust", "probcover"):
        s = get(name)
        assert s.needs == frozenset({"embeddings"})
        got = s.select(PoolView(labeled=lab, embeddings=z, num_classes=4), 20, np.random.default_rng(0))
        assert got.size == 20 and not lab[got].any() and np.unique(got).size == 20
    p = get("probcover")
    a = p.select(PoolView(labeled=lab, embeddings=z, num_classes=4), 5, np.random.default_rng(0))
    state = p.state()
    assert state["delta"] > 0
    q = get("probcover")
    q.load_state(state)
    b = q.select(PoolView(labeled=lab, embeddings=z, num_classes=4), 5, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="delta"):
        q.load_state({"delta": -1.0})
    with pytest.raises(ValueError, match="num_classes"):  # neither delta nor the classes of its purity rule
        get("probcover").select(PoolView(labeled=lab, embeddings=z), 5, np.random.default_rng(0))
    # with delta known (its state, or delta=) the number of classes is not needed
    np.testing.assert_array_equal(q.select(PoolView(labeled=lab, embeddings=z), 5, np.random.default_rng(0)), b)


def test_a_ball_holds_points_strictly_closer_than_delta():
    # the paper's δ-graph: ‖x - y‖ < δ; δ by the purity rule is a neighbour's distance, which stays out
    indptr, members = cs.balls(np.array([[1, 2], [0, 2], [0, 1]]), np.array([[0.5, 0.7], [0.5, 0.6], [0.7, 0.6]]), 0.6)
    assert [members[indptr[i]:indptr[i + 1]].tolist() for i in range(3)] == [[0, 1], [1, 0], [2]]


def test_typiclust_old_k_keyword_still_works_with_a_deprecation_warning():
    x = np.array([[1.0, 0.1], [1, 1.1], [2, 0.1], [2, 1.1], [-9, 9], [-9, 10], [-10, 9]])
    clusters = [0, 0, 0, 0, 1, 1, 1]
    with pytest.warns(DeprecationWarning, match="neighbors="):
        old = alscale.select_typiclust(x, 2, k=1, clusters=clusters)
    assert old.tolist() == alscale.select_typiclust(x, 2, neighbors=1, clusters=clusters).tolist()
    from alscale.strategies import get

    with pytest.warns(DeprecationWarning, match="neighbors="):
        assert get("typiclust", k=5).options() == {"neighbors": 5}
