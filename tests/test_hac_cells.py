"""The cell-by-cell kNN kernel (knn_graph(knn_method="faiss")) against a numpy reference, and the
graph built from it: exact when every cell is scanned, recall at the requested target, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import alscale
from alscale import _core, hac
from reference import grouped, knn_among


def reference_cells(x, k, cell, probes):
    """For every row: the k rows of largest dot product among the rows of the cells its cell
    probes (itself excluded), largest first, ties to the smaller row; -1 / 0 padding."""
    return knn_among(x, k, lambda i: np.flatnonzero(np.isin(cell, probes[cell[i]])))


def csr(cell, probes, cells):
    cell_start, cell_rows = grouped(cell, cells)
    probe_start = np.concatenate([[0], np.cumsum([len(p) for p in probes])]).astype(np.int64)
    flat = np.array([c for p in probes for c in p], dtype=np.int64)
    return cell_start, cell_rows, probe_start, flat


@st.composite
def cell_problems(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 5))
    cells = draw(st.integers(1, 6))
    k = draw(st.integers(1, 8))
    # small integers: exact float32 dot products, with many ties
    x = np.array(draw(st.lists(st.integers(-2, 2), min_size=n * d, max_size=n * d)), dtype=np.float32).reshape(n, d)
    cell = np.array(draw(st.lists(st.integers(0, cells - 1), min_size=n, max_size=n)), dtype=np.int64)
    probes = []
    for c in range(cells):
        others = draw(st.lists(st.integers(0, cells - 1), unique=True, max_size=cells))
        probes.append(([c] if draw(st.booleans()) or not others else []) + [o for o in others if o != c])
    return x, k, cell, probes, cells


@given(cell_problems(), st.sampled_from([1, 2]))
def test_knn_cells_matches_reference(problem, threads):
    x, k, cell, probes, cells = problem
    got_i, got_s = _core.knn_cells(x, k, *csr(cell, probes, cells), threads)
    want_i, want_s = reference_cells(x, k, cell, probes)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_s, want_s)


def test_knn_cells_threads_and_one_cell_is_knn_exact():
    rng = np.random.default_rng(3)
    x = hac._unit_points(rng.normal(size=(700, 9)))
    cell = np.zeros(700, dtype=np.int64)
    args = csr(cell, [[0]], 1)
    a = _core.knn_cells(x, 6, *args, 1)
    b = _core.knn_cells(x, 6, *args, 2)
    e = _core.knn_exact(x, 6, 2)
    for got in (a, b):
        np.testing.assert_array_equal(got[0], e[0])
        np.testing.assert_array_equal(got[1], e[1])


@pytest.mark.parametrize("bad", ["start", "rows", "probe"])
def test_knn_cells_bad_layout_is_a_value_error(bad):
    x = np.eye(4, dtype=np.float32)
    cell_start, cell_rows, probe_start, probes = csr(np.array([0, 0, 1, 1]), [[0], [1]], 2)
    if bad == "start":
        cell_start = np.array([0, 3, 2], dtype=np.int64)
    elif bad == "rows":
        cell_rows = np.array([0, 1, 2, 9], dtype=np.int64)
    else:
        probes = np.array([0, 5], dtype=np.int64)
    with pytest.raises(ValueError):
        _core.knn_cells(x, 1, cell_start, cell_rows, probe_start, probes)


def blobs(n, d, centers, noise, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    return c[rng.integers(0, centers, n)] + noise * rng.normal(size=(n, d))


def test_faiss_graph_scanning_every_cell_is_the_exact_graph():
    pytest.importorskip("faiss")
    x = blobs(3000, 12, 40, 0.3)
    exact = alscale.knn_graph(x, 7)
    full = alscale.knn_graph(x, 7, knn_method="faiss", nprobe=10**6)
    np.testing.assert_array_equal(full[0], exact[0])
    np.testing.assert_array_equal(full[1], exact[1])


@pytest.mark.parametrize("noise", [0.2, 0.8])  # separated blobs; blobs that overlap
def test_faiss_graph_meets_the_recall_target(noise):
    pytest.importorskip("faiss")
    x = blobs(20000, 16, 200, noise, seed=1)
    exact, _ = alscale.knn_graph(x, 10)
    info: dict = {}
    approx, sim = hac._knn_cells(hac._unit_points(x), 10, 0, None, 0.95, info)
    assert approx.shape == (20000, 10) and sim.dtype == np.float32
    assert not (approx == np.arange(20000)[:, None]).any()
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist())])
    assert recall >= 0.93, (recall, info)  # target 0.95, estimated on 512 sampled points
    assert abs(recall - info["recall_estimate"]) < 0.03, (recall, info)
    assert info["nprobe"] >= 2


def test_faiss_graph_clusters_blobs():
    pytest.importorskip("faiss")
    from alscale.al.metrics import adjusted_rand_index

    rng = np.random.default_rng(5)
    truth = rng.integers(0, 100, 10000)
    x = rng.normal(size=(100, 16))[truth] + 0.1 * rng.normal(size=(10000, 16))
    c = alscale.hac_average(x, neighbors=10, knn_method="faiss", n_clusters=100)
    assert adjusted_rand_index(c.labels, truth) > 0.99


@pytest.mark.parametrize(("recall", "error"), [(0, ValueError), (1.5, ValueError), ("high", TypeError),
                                                (True, TypeError), (float("nan"), ValueError)])
def test_recall_must_be_a_fraction(recall, error):
    with pytest.raises(error, match="recall must be"):
        alscale.knn_graph(np.eye(3), 1, knn_method="faiss", recall=recall)


def test_large_inputs_are_checked_chunk_by_chunk_with_the_right_row():
    x = np.ones((70000, 3), dtype=np.float32)
    x[69999, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf at row 69999"):
        alscale.knn_graph(x, 2)
    x[69999, 1] = 1.0
    x[66000] = 0.0
    with pytest.raises(ValueError, match="row 66000 has zero norm"):
        alscale.knn_graph(x, 2)
    unit = hac._unit_points(x[:65000])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


def test_pca_to_all_dimensions_keeps_the_graph_and_fewer_keeps_blobs():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 40))
    same, sim_same = alscale.knn_graph(x, 5, pca=40)
    idx, sim = alscale.knn_graph(x, 5)
    assert np.mean(same == idx) > 0.99
    np.testing.assert_allclose(sim_same, sim, atol=1e-5)
    # blobs living in 8 of 200 dimensions: PCA to 16 keeps their neighbours
    truth = rng.integers(0, 30, 3000)
    centres = np.zeros((30, 200))
    centres[:, :8] = rng.normal(scale=5.0, size=(30, 8))
    y = centres[truth] + 0.3 * rng.normal(size=(3000, 200))
    reduced, _ = alscale.knn_graph(y, 5, pca=16)
    assert np.mean(truth[reduced] == truth[:, None]) > 0.99


def test_pca_projects_any_dtype_and_scale_the_same_and_names_bad_rows(tmp_path):
    """The PCA path projects each row as it is (scaled by its largest entry): float16 on disk,
    float32 and float64 rows of the same values, and float64 rows scaled by 1e300 give the same
    graph; a NaN, inf or zero row is refused naming it, in a later chunk of a wide matrix too."""
    pytest.importorskip("faiss")
    from alscale import knn

    rng = np.random.default_rng(5)
    truth = rng.integers(0, 40, 6000)
    x = np.maximum(rng.normal(size=(40, 800))[truth] + 0.5 * rng.normal(size=(6000, 800)), 0).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    disk = np.load(tmp_path / "x.npy", mmap_mode="r")
    want_idx, want_sim = alscale.knn_graph(x.astype(np.float32), 5, pca=16)
    for variant in (disk, x.astype(np.float64), x.astype(np.float64) * 1e300):
        idx, sim = alscale.knn_graph(variant, 5, pca=16)
        assert np.mean(idx == want_idx) > 0.999
        np.testing.assert_allclose(sim, want_sim, atol=1e-5)
    assert np.mean(truth[want_idx] == truth[:, None]) > 0.9
    step = knn._chunk_rows(800)
    assert step < 6000  # the bad rows below are past the first chunk
    for row, value, message in ((step + 7, np.nan, "contains NaN or inf at row"), (5999, np.inf, "contains NaN or inf at row"),
                                (step + 3, 0.0, "has zero norm")):
        bad = x.astype(np.float32)
        bad[row] = 0.0 if value == 0.0 else bad[row]
        if value != 0.0:
            bad[row, 11] = value
        with pytest.raises(ValueError, match=f"{message}.*{row}" if message.startswith("contains") else f"row {row} {message}"):
            alscale.knn_graph(bad, 5, pca=16)


@pytest.mark.parametrize(("pca", "error", "match"), [(0, ValueError, "pca must be at least 1"),
                                                     (5, ValueError, "pca must be at most the number of features"),
                                                     (2.5, TypeError, "pca")])
def test_pca_errors(pca, error, match):
    pytest.importorskip("faiss")
    with pytest.raises(error, match=match):
        alscale.knn_graph(np.eye(4)[:, :3] + 1, 1, pca=pca)


def test_auto_knn_method_takes_faiss_beyond_200k_points(monkeypatch):
    import importlib.util

    from alscale.hac import auto_knn_method

    assert auto_knn_method(200_000) == "exact"
    if importlib.util.find_spec("faiss") is not None:
        assert auto_knn_method(200_001) == "faiss"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert auto_knn_method(9_000_000) == "exact"  # no faiss: exact, never an ImportError


def test_auto_knn_method_weighs_the_exact_graphs_work(monkeypatch):
    """With the points' dimensions: exact while N²·D is at most 1e11, then faiss's graph (70,000
    Fashion-MNIST pixels of 784 took minutes exact); never faiss when it is missing."""
    import importlib.util

    from alscale.knn import auto_knn_method

    has_faiss = importlib.util.find_spec("faiss") is not None
    assert auto_knn_method(39_000, 64) == "exact"  # 9.7e10
    assert auto_knn_method(200_000, 2) == "exact"  # 8e10: many rows, few dimensions
    assert auto_knn_method(11_000, 784) == "exact"
    for n, d in ((40_000, 64), (70_000, 784), (12_000, 784), (9_000_000, 64)):
        assert auto_knn_method(n, d) == ("faiss" if has_faiss else "exact"), (n, d)
    with pytest.raises(ValueError, match="features"):
        auto_knn_method(1000, 0)
    with pytest.raises(TypeError, match="features"):
        auto_knn_method(1000, 2.5)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert auto_knn_method(70_000, 784) == "exact"


@pytest.mark.parametrize("pca, want", [(None, "faiss"), (8, "exact")])
def test_cluster_embeddings_default_graph_follows_the_work_after_the_pca(monkeypatch, pca, want):
    pytest.importorskip("faiss")
    import alscale.knn
    from alscale.cluster_margin import cluster_embeddings

    seen = {}

    class Stop(Exception):
        pass

    def spy(points, k, knn_method, **kwargs):
        seen.update(method=knn_method, pca=kwargs.get("pca"))
        raise Stop

    monkeypatch.setattr(alscale.knn, "knn_graph", spy)
    z = np.random.default_rng(0).standard_normal((12_000, 784)).astype(np.float32)
    with pytest.raises(Stop):
        cluster_embeddings(z, 50, pca=pca)
    assert seen == {"method": want, "pca": pca}
