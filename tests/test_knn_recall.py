"""Issue 21: ``recall=`` is a promise (measured on sampled exact neighbours, returned with the
graph, kept by widening the search or warned about), and graph HAC asked for fewer clusters
than its graph has connected components gives the components, never one cluster."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import alscale
from alscale import knn
from alscale.hac import ComponentsWarning
from alscale.knn import KnnGraph, RecallWarning

faiss = pytest.importorskip("faiss")


def true_recall(x: np.ndarray, idx: np.ndarray, k: int, rows: int = 500, seed: int = 9) -> float:
    """recall@k of a graph on sampled rows against float64 numpy brute force (ties to the k-th
    similarity count), independent of alscale's own measurement."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = np.random.default_rng(seed).choice(x.shape[0], rows, replace=False)
    s = u[q] @ u.T
    s[np.arange(rows), q] = -np.inf
    kth = -np.sort(-s, axis=1)[:, k - 1]
    got = np.take_along_axis(s, np.maximum(idx[q], 0), axis=1)
    return float(((got >= kth[:, None] - 1e-6) & (idx[q] >= 0)).mean())


def blobs(n, d, centers, noise, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(centers, d))[rng.integers(0, centers, n)] + noise * rng.normal(size=(n, d)))


def test_knn_graph_unpacks_as_before_and_carries_its_recall():
    x = blobs(400, 8, 5, 0.3)
    g = alscale.knn_graph(x, 4)
    idx, sim = g
    assert isinstance(g, tuple) and len(g) == 2 and isinstance(g, KnnGraph)
    assert g.indices is idx and g.similarities is sim and idx.shape == (400, 4) and sim.dtype == np.float32
    assert g.recall == 1.0 and g.info["method"] == "exact"
    back = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(back.indices, idx)
    assert back.recall == 1.0
    c = alscale.hac_average_graph(g, n_clusters=5)  # every function taking a graph tuple takes it
    np.testing.assert_array_equal(c.labels, alscale.hac_average_graph((idx, sim), n_clusters=5).labels)


def test_recall_promise_kept_where_the_cell_scan_misses_it():
    # 30,000 uniform random directions in 64-d: the cell scan (the knn_method="faiss" graph before
    # issue 21) stops at 8 ranked cells with recall@10 ≈ 0.91 at recall=0.95, silently.
    x = np.random.default_rng(0).normal(size=(30_000, 64)).astype(np.float32)
    g = alscale.knn_graph(x, 10, knn_method="faiss", recall=0.95)  # no RecallWarning (warnings are errors)
    assert g.recall >= 0.95, g.info
    assert true_recall(x, g.indices, 10) >= 0.95
    # the hand-written scan itself: measured below the target, so another index takes over
    c = alscale.knn_graph(x, 10, knn_method="cells", recall=0.95)
    assert c.info["cells_recall"] < 0.95 and c.recall >= 0.95, c.info
    assert true_recall(x, c.indices, 10) >= 0.95


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_faiss_indexes_meet_the_target_on_overlapping_blobs(method):
    x = blobs(10_000, 32, 100, 0.8, seed=1)
    g = alscale.knn_graph(x, 10, knn_method=method, recall=0.95)
    assert g.info["method"] == method and g.info["recall_queries"] == 1000, g.info
    assert g.recall >= 0.95
    assert abs(true_recall(x, g.indices, 10) - g.recall) < 0.03, g.info
    assert not (g.indices == np.arange(10_000)[:, None]).any()
    if method == "ivf":
        again = alscale.knn_graph(x, 10, knn_method=method, recall=0.95)  # seeded: the same graph
        np.testing.assert_array_equal(again.indices, g.indices)
        assert again.recall == g.recall


def test_recall_below_the_target_at_the_bound_is_a_warning(monkeypatch):
    monkeypatch.setattr(knn, "_EXACT_WORK", 0.0)  # the exact graph is out of bounds here
    x = np.random.default_rng(4).normal(size=(20_000, 64)).astype(np.float32)
    with pytest.warns(RecallWarning, match=r"recall@10 is 0\.\d+ \(measured on 1,000 sampled points\), below"):
        g = alscale.knn_graph(x, 10, knn_method="ivf", recall=0.99)
    assert g.recall < 0.99 and g.info["nprobe"] == g.info["nlist"] // 4
    assert abs(true_recall(x, g.indices, 10) - g.recall) < 0.03
    assert issubclass(RecallWarning, UserWarning)


def test_fixed_nprobe_measures_without_a_promise():
    x = blobs(10_000, 32, 100, 0.8, seed=1)
    g = alscale.knn_graph(x, 10, knn_method="ivf", nprobe=1)
    assert g.info["nprobe"] == 1 and g.recall < 0.95  # measured and returned, no warning asked for
    assert abs(true_recall(x, g.indices, 10) - g.recall) < 0.03


def test_small_inputs_take_the_exact_graph():
    x = blobs(3000, 8, 10, 0.5)
    g = alscale.knn_graph(x, 5, knn_method="faiss")
    assert g.recall == 1.0 and g.info["method"] == "exact"
    np.testing.assert_array_equal(g.indices, alscale.knn_graph(x, 5).indices)


# ----------------------------------------------------------------------- connected components
def groups(n_groups: int = 5, per: int = 30, d: int = 8, seed: int = 0):
    """Tight groups along orthogonal axes: the kNN graph (k < per) has no edge between groups."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_groups), per)
    x = np.eye(d)[truth] * 10 + 0.1 * rng.normal(size=(truth.size, d))
    return x, truth


def test_fewer_clusters_than_components_gives_the_components():
    from alscale.cluster_margin import cluster_embeddings

    x, truth = groups()
    graph = alscale.knn_graph(x, 5)
    with pytest.warns(ComponentsWarning, match="5 connected components, more than the 2 clusters"):
        c = alscale.hac_average_graph(graph, n_clusters=2)
    np.testing.assert_array_equal(c.labels, truth)  # was one cluster
    np.testing.assert_array_equal(c.linkage[-4:, 2], 1.0)  # the dendrogram still joins them at 1
    with pytest.warns(ComponentsWarning):
        np.testing.assert_array_equal(alscale.hac_average(x, neighbors=5, n_clusters=1).labels, truth)
    lines: list[str] = []
    with pytest.warns(ComponentsWarning):
        labels = cluster_embeddings(x, 2, neighbors=5, progress=lines.append)
    np.testing.assert_array_equal(labels, truth)
    assert any("recall@5" in line for line in lines), lines
    # as many clusters as components, or more: no warning, the usual cut
    np.testing.assert_array_equal(alscale.hac_average_graph(graph, n_clusters=5).labels, truth)
    assert alscale.hac_average_graph(graph, n_clusters=7).labels.max() == 6
    # a threshold at 1 still applies the merges between components
    assert (alscale.hac_average_graph(graph, threshold=1.0).labels == 0).all()


def test_cell_scan_measured_below_the_target_hands_over(monkeypatch):
    real = knn._knn_cells  # the scan runs even where its own estimate says it would miss
    monkeypatch.setattr(knn, "_knn_cells", lambda *a, skip_below=None, **kw: real(*a, **kw))
    x = np.random.default_rng(0).normal(size=(20_000, 64)).astype(np.float32)  # the scan: 0.96
    g = alscale.knn_graph(x, 10, knn_method="cells", recall=0.99)
    assert g.info["cells_scan_run"] and g.info["cells_recall"] < 0.99, g.info
    assert g.recall >= 0.99 and true_recall(x, g.indices, 10) >= 0.99


def test_knn_graph_old_keywords_warn_and_give_the_same_graph():
    # knn_graph(x, neighbors, *, knn_method=, recall=): the words of ProbCover and TypiClust; the
    # old k= / method= still work for one minor version, naming the new form
    x = blobs(300, 8, 5, 0.3)
    new = alscale.knn_graph(x, neighbors=4, knn_method="exact")
    with pytest.warns(DeprecationWarning, match=r"knn_graph\(k=\.\.\.\) is renamed knn_graph\(neighbors=\.\.\.\)"):
        old_k = alscale.knn_graph(x, k=4)
    with pytest.warns(DeprecationWarning, match=r"knn_graph\(method=\.\.\.\) is renamed knn_graph\(knn_method=\.\.\.\)"):
        old_m = alscale.knn_graph(x, 4, method="exact")
    for g in (old_k, old_m):
        np.testing.assert_array_equal(g.indices, new.indices)
        np.testing.assert_array_equal(g.similarities, new.similarities)
    with pytest.raises(TypeError, match="both neighbors= and its old name k="):
        alscale.knn_graph(x, 4, k=4)
    with pytest.raises(TypeError, match="both knn_method= and its old name method="):
        alscale.knn_graph(x, 4, knn_method="faiss", method="exact")
    with pytest.raises(TypeError, match="missing required argument: 'neighbors'"):
        alscale.knn_graph(x)


def test_ivf_at_many_lists_trains_two_level_and_probes_through_hnsw(monkeypatch):
    # Beyond _FLAT_QUANTIZER lists, IVF's coarse quantizer is an HNSW graph of the centroids (a
    # flat one costs N·nlist·D: hours at 2M points), trained by two-level k-means; the promise
    # is kept the same way. Thresholds lowered so that 20,000 points take that path.
    monkeypatch.setattr(knn, "_FLAT_QUANTIZER", 64)
    monkeypatch.setattr(knn, "_FLAT_KMEANS", 16)
    x = blobs(20_000, 32, 200, 0.8, seed=2)
    g = alscale.knn_graph(x, 10, knn_method="ivf", recall=0.95)
    assert g.info["quantizer"] == "hnsw" and g.info["nlist"] > 64, g.info
    assert abs(g.info["nlist"] - 20_000 // knn._IVF_LIST) <= 20_000 // knn._IVF_LIST // 10  # about N/64 lists
    assert g.recall >= 0.95 and abs(true_recall(x, g.indices, 10) - g.recall) < 0.03, g.info
    again = alscale.knn_graph(x, 10, knn_method="ivf", recall=0.95)  # seeded: the same graph
    np.testing.assert_array_equal(again.indices, g.indices)
    monkeypatch.undo()
    flat = alscale.knn_graph(x, 10, knn_method="ivf", recall=0.95)
    assert flat.info["quantizer"] == "flat" and flat.recall >= 0.95


def test_two_level_centroids_are_unit_and_about_as_many_as_asked():
    u = knn._unit_points(blobs(30_000, 16, 300, 0.5, seed=3))
    c = knn._two_level(faiss, u, 2000)
    assert c.dtype == np.float32 and c.shape[1] == 16 and abs(c.shape[0] - 2000) <= 100, c.shape
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(c, knn._two_level(faiss, u, 2000))  # seeded


def on_threads(threads: int, fn, *args):
    """fn(*args) with faiss given ``threads`` threads; checks fn left that setting as it was."""
    was = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        out = fn(*args)
        assert faiss.omp_get_max_threads() == threads  # the caller's setting is left as it was
        return out
    finally:
        faiss.omp_set_num_threads(was)


def test_two_level_centroids_do_not_depend_on_the_thread_count():
    """The groups' k-means run side by side on the threads, each seeded on one faiss thread."""
    u = knn._unit_points(blobs(30_000, 16, 300, 0.5, seed=4))
    one = on_threads(1, knn._two_level, faiss, u, 1500)
    np.testing.assert_array_equal(one, on_threads(2, knn._two_level, faiss, u, 1500))


def test_cells_do_not_depend_on_the_threads_or_the_row_chunks(monkeypatch):
    """The cell scan's cells: groups split and rows ranked side by side on the threads, in chunks
    of rows; any thread count and any chunk size give the same cells and pairs."""
    u = knn._unit_points(blobs(20_000, 16, 200, 0.6, seed=6))
    whole = on_threads(2, knn._cells, faiss, u, 8)
    one = on_threads(1, knn._cells, faiss, u, 8)
    monkeypatch.setattr(knn, "_CELL_ROWS", 3_001)
    chunked = on_threads(2, knn._cells, faiss, u, 8)
    assert whole[3] == one[3] == chunked[3] > 1
    for a, b, c in zip(whole[:3], one[:3], chunked[:3]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_small_kmeans_runs_on_one_faiss_thread_and_gives_the_threads_back(monkeypatch):
    """faiss's OpenMP threads spin between iterations: a small k-means takes one thread, a large
    one all it was given, and the caller's setting is restored either way (also on an error)."""
    seen = []
    real = faiss.Kmeans

    class Spy(real):
        def train(self, x, *args, **kwargs):
            seen.append(faiss.omp_get_max_threads())
            if x.shape[0] == 7:
                raise RuntimeError("boom")
            return super().train(x, *args, **kwargs)

    monkeypatch.setattr(faiss, "Kmeans", Spy)
    u = knn._unit_points(blobs(3_000, 8, 30, 0.5, seed=5))
    was = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(2)
        small = knn._kmeans(faiss, u, 20, 1)
        assert seen == [1] and faiss.omp_get_max_threads() == 2
        monkeypatch.setattr(knn, "_KMEANS_ONE_THREAD", 0.0)
        large = knn._kmeans(faiss, u, 20, 1)
        assert seen == [1, 2] and faiss.omp_get_max_threads() == 2
        np.testing.assert_allclose(small, large, atol=1e-5)
        monkeypatch.setattr(knn, "_KMEANS_ONE_THREAD", 2e9)
        with pytest.raises(RuntimeError, match="boom"):
            knn._kmeans(faiss, u[:7], 2, 1)
        assert seen == [1, 2, 1] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(was)


# ----------------------------------------------------------------------- NN-descent (faiss)
def sorted_and_true(x: np.ndarray, g) -> None:
    """Rows by descending similarity (ties: the smaller index), no self, no repeat, and the
    similarities are the points' cosines."""
    idx, sim = g
    n, k = idx.shape
    assert idx.dtype == np.int64 and sim.dtype == np.float32
    assert ((idx >= 0) & (idx < n)).all() and not (idx == np.arange(n)[:, None]).any()
    assert (np.diff(np.sort(idx, axis=1), axis=1) != 0).all()
    assert (np.diff(sim, axis=1) <= 0).all()
    tied = np.diff(sim, axis=1) == 0
    assert (np.diff(idx, axis=1)[tied] > 0).all()
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(sim, np.einsum("nd,nkd->nk", u, u[idx]), atol=2e-6)


@pytest.mark.parametrize("kind", ["random", "overlapping"])
def test_nndescent_keeps_the_promise_and_ranks_its_rows(kind):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6000, 32)) if kind == "random" else blobs(6000, 32, 60, 0.8, seed=5)
    g = alscale.knn_graph(x, 10, knn_method="nndescent", recall=0.95, num_threads=1)
    assert g.info["method"] == "nndescent" and g.info["recall_queries"] == 1000, g.info
    assert g.info["degree"] >= 10 and g.info["iterations"] >= 1, g.info
    assert g.recall >= 0.95 and abs(true_recall(x, g.indices, 10) - g.recall) < 0.03, g.info
    sorted_and_true(x, g)
    again = alscale.knn_graph(x, 10, knn_method="nndescent", recall=0.95, num_threads=1)  # one thread: seeded
    np.testing.assert_array_equal(again.indices, g.indices)
    assert again.recall == g.recall


def test_nndescent_fixed_iterations_measure_without_a_promise():
    x = blobs(6000, 32, 60, 0.8, seed=6)
    g = alscale.knn_graph(x, 10, knn_method="nndescent", nprobe=1, num_threads=1)  # one iteration
    assert g.info["iterations"] == 1 and g.recall < 0.95, g.info  # measured and returned, no warning
    assert abs(true_recall(x, g.indices, 10) - g.recall) < 0.03
    sorted_and_true(x, g)


def test_nndescent_below_the_target_widens_then_exact_or_warns(monkeypatch):
    x = blobs(6000, 32, 60, 0.8, seed=7)
    # a ladder too short for the target: within the exact bound, the exact graph
    monkeypatch.setattr(knn, "_NND_LADDER", ((1.0, 1), (1.1, 2)))
    g = alscale.knn_graph(x, 10, knn_method="nndescent", recall=0.95, num_threads=1)
    assert g.info["method"] == "exact" and g.recall == 1.0 and g.info["approx_recall"] < 0.95, g.info
    assert g.info["iterations"] == 2  # both rungs were tried
    np.testing.assert_array_equal(g.indices, alscale.knn_graph(x, 10).indices)
    # beyond it: the best graph found, with a RecallWarning giving its measured recall
    monkeypatch.setattr(knn, "_EXACT_WORK", 0.0)
    with pytest.warns(RecallWarning, match=r"recall@10 is 0\.\d+ \(measured on 1,000 sampled points\), below the "
                                           r"requested 0\.95: nndescent at degree \d+ and \d iterations"):
        w = alscale.knn_graph(x, 10, knn_method="nndescent", recall=0.95, num_threads=1)
    assert w.info["method"] == "nndescent" and w.recall < 0.95
    assert abs(true_recall(x, w.indices, 10) - w.recall) < 0.03
    sorted_and_true(x, w)


def test_nndescent_rows_faiss_leaves_short_are_made_exact(monkeypatch):
    # faiss's final graph is read as it is; a row with an id out of range, the point itself or a
    # repeated id (not seen in practice) is replaced by the exact neighbours
    x = blobs(3000, 16, 30, 0.5, seed=8)
    real = faiss.vector_to_array

    def broken(v):
        a = real(v).copy()
        deg = a.size // 3000
        a[0] = 0  # row 0 holds itself
        a[deg : deg + 2] = 5  # row 1 repeats an id
        a[2 * deg] = -1  # row 2 has an empty slot
        a[3 * deg] = 3000  # row 3 one out of range
        return a

    monkeypatch.setattr(faiss, "vector_to_array", broken)
    g = alscale.knn_graph(x, 8, knn_method="nndescent", nprobe=10, num_threads=1)
    exact = alscale.knn_graph(x, 8)
    np.testing.assert_array_equal(g.indices[:4], exact.indices[:4])
    np.testing.assert_allclose(g.similarities[:4], exact.similarities[:4], atol=2e-6)
    sorted_and_true(x, g)


def test_nndescent_small_and_bad_inputs():
    x = blobs(800, 8, 8, 0.5)
    g = alscale.knn_graph(x, 5, knn_method="nndescent")  # up to 1,000 points: the exact graph
    assert g.recall == 1.0 and g.info["method"] == "exact" and "exact is cheapest" in g.info["why"]
    np.testing.assert_array_equal(g.indices, alscale.knn_graph(x, 5).indices)
    for method in ("nndescent", "ivf", "exact"):  # the same errors as the other methods
        with pytest.raises(ValueError, match=r"k must be less than the number of points \(800\), got 800"):
            alscale.knn_graph(x, 800, knn_method=method)
        with pytest.raises(ValueError, match="k must be"):
            alscale.knn_graph(x, 0, knn_method=method)
        with pytest.raises(ValueError, match="NaN or inf at row 3"):
            alscale.knn_graph(np.where(np.arange(800)[:, None] == 3, np.nan, x), 5, knn_method=method)
        with pytest.raises(ValueError, match="row 7 has zero norm"):
            alscale.knn_graph(np.where(np.arange(800)[:, None] == 7, 0.0, x), 5, knn_method=method)
    with pytest.raises(ValueError, match=r"knn method must be one of \('exact', 'faiss', 'ivf', 'hnsw', 'cells', "
                                         r"'lists', 'nndescent'\), got 'nnd'"):
        alscale.knn_graph(x, 5, knn_method="nnd")
    # k large against N (faiss's pools may not fill, and it aborts the process): the exact graph
    big = blobs(1500, 8, 8, 0.5)
    g = alscale.knn_graph(big, 300, knn_method="nndescent", recall=0.9, num_threads=1)
    assert g.info["method"] == "exact" and "too large for N = 1,500" in g.info["why"], g.info
    np.testing.assert_array_equal(g.indices, alscale.knn_graph(big, 300).indices)
    g = alscale.knn_graph(big, 50, knn_method="nndescent", recall=0.95, num_threads=1)  # degree 80 <= N/16 - 10
    assert g.info["method"] == "nndescent" and g.recall >= 0.95, g.info
    sorted_and_true(big, g)


def test_nndescent_is_accepted_wherever_a_knn_method_is():
    from alscale.cluster_margin import cluster_embeddings

    x = blobs(3000, 16, 20, 0.3, seed=9)
    graph = alscale.knn_graph(x, 10, knn_method="nndescent", num_threads=1)
    assert graph.info["method"] == "nndescent" and graph.recall >= 0.95
    labels = cluster_embeddings(x, 20, neighbors=10, knn_method="nndescent", num_threads=1)
    assert labels.shape == (3000,) and labels.max() <= 19
    c = alscale.hac_average(x, neighbors=10, knn_method="nndescent", n_clusters=20, num_threads=1)
    assert c.labels.max() <= 19
    # TypiClust takes no knn_method (its neighbours are within clusters); ProbCover's balls do
    assert alscale.select_probcover(x, 5, delta=0.5, neighbors=10, knn_method="nndescent").size == 5
    assert 0 < alscale.probcover_delta(x, num_classes=20, neighbors=10, knn_method="nndescent") <= 2


def test_nndescent_reranks_in_bounded_chunks(monkeypatch):
    # the neighbours' rows are gathered chunk by chunk (64 MB), not for 65,536 rows at once
    # (65,536 x 16 x 784 float32 = 3.3 GB on Fashion-MNIST's pixels, measured before)
    import tracemalloc

    x = np.random.default_rng(11).normal(size=(4000, 784)).astype(np.float32)
    monkeypatch.setattr(knn, "_GATHER_FLOATS", 1 << 18)  # 1 MB chunks here
    tracemalloc.start()
    try:
        g = alscale.knn_graph(x, 10, knn_method="nndescent", nprobe=4, num_threads=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert g.info["method"] == "nndescent"
    whole = 4000 * g.info["degree"] * 784 * 4  # one gather of every row's neighbours: 200 MB
    # the rest (the unit rows, the recall measurement's float64 gathers) is about 110 MB
    assert peak < 0.75 * whole, (peak, whole)
    sorted_and_true(x, g)
