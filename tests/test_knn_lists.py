"""The inverted-file kNN kernels (knn_rank_lists, knn_lists: each query ranks the centroids and
scans the points of its first `probes` lists, list by list) against a numpy reference: ranks and
neighbours in the same order, ties to the smaller index, -1 / 0 padding; every list probed gives
knn_exact; the thread count changes nothing; bad layouts are ValueErrors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alscale import _core, knn
from reference import grouped, knn_among


def reference_rank(x, centroids, probes):
    """Every row's `probes` most similar centroids, largest dot product first, ties to the smaller."""
    s = x.astype(np.float64) @ centroids.astype(np.float64).T
    ids = np.broadcast_to(np.arange(centroids.shape[0]), s.shape)
    return np.lexsort((ids, -s), axis=1)[:, :probes]


def reference_lists(x, k, centroids, home, probes):
    """For every row: the k other rows of largest dot product among the rows whose home list is
    one of the row's `probes` first lists; largest first, ties to the smaller row; -1 / 0 padding."""
    rank = reference_rank(x, centroids, probes)
    return knn_among(x, k, lambda i: np.flatnonzero(np.isin(home, rank[i])))


@st.composite
def list_problems(draw):
    n = draw(st.integers(1, 45))
    d = draw(st.integers(1, 5))
    lists = draw(st.integers(1, 7))
    k = draw(st.integers(1, 9))
    probes = draw(st.integers(1, lists))
    # small integers: exact float32 dot products, with many ties (and lists left empty)
    ints = st.lists(st.integers(-2, 2), min_size=n * d, max_size=n * d)
    x = np.array(draw(ints), dtype=np.float32).reshape(n, d)
    c = np.array(draw(st.lists(st.integers(-2, 2), min_size=lists * d, max_size=lists * d)), dtype=np.float32)
    home = np.array(draw(st.lists(st.integers(0, lists - 1), min_size=n, max_size=n)), dtype=np.int64)
    return x, k, c.reshape(lists, d), home, probes


@given(list_problems(), st.sampled_from([1, 2]))
def test_knn_rank_lists_matches_reference(problem, threads):
    x, _, c, _, probes = problem
    np.testing.assert_array_equal(_core.knn_rank_lists(x, c, probes, num_threads=threads), reference_rank(x, c, probes))


@given(list_problems(), st.sampled_from([1, 2]))
def test_knn_lists_matches_reference(problem, threads):
    x, k, c, home, probes = problem
    got_i, got_s = _core.knn_lists(x, k, c, *grouped(home, c.shape[0]), probes, num_threads=threads)
    want_i, want_s = reference_lists(x, k, c, home, probes)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_s, want_s)


@given(list_problems(), st.sampled_from([1, 2]), st.randoms(use_true_random=False), st.booleans())
def test_knn_lists_on_given_queries_matches_reference(problem, threads, rnd, given_ranks):
    """Searching only some rows, in any order (with their ranks given by position, or ranked
    here), gives those rows' neighbours of the whole graph, by position."""
    x, k, c, home, probes = problem
    n = x.shape[0]
    queries = np.array(rnd.sample(range(n), rnd.randint(0, n)), dtype=np.int64)
    ranks = reference_rank(x[queries], c, probes).astype(np.int32) if given_ranks else None
    got_i, got_s = _core.knn_lists(x, k, c, *grouped(home, c.shape[0]), probes, ranks=ranks, queries=queries,
                                   num_threads=threads)
    want_i, want_s = reference_lists(x, k, c, home, probes)
    assert got_i.shape == (queries.size, k)
    np.testing.assert_array_equal(got_i, want_i[queries])
    np.testing.assert_array_equal(got_s, want_s[queries])


@pytest.mark.parametrize("n, d, lists", [(700, 9, 11), (300, 64, 40), (2100, 33, 70)])
def test_every_list_probed_is_knn_exact_and_threads_change_nothing(n, d, lists):
    rng = np.random.default_rng(n)
    x = knn._unit_points(rng.normal(size=(n, d)))
    x[7] = x[3]  # an exact tie
    c = x[rng.choice(n, lists, replace=False)]
    home = _core.knn_rank_lists(x, c, 1, num_threads=1)[:, 0].astype(np.int64)
    start, rows = grouped(home, lists)
    exact = _core.knn_exact(x, 6, 2)
    for threads in (1, 2):
        got = _core.knn_lists(x, 6, c, start, rows, lists, num_threads=threads)
        np.testing.assert_array_equal(got[0], exact[0])
        np.testing.assert_array_equal(got[1], exact[1])
    few = [_core.knn_lists(x, 6, c, start, rows, 3, num_threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(few[0][0], few[1][0])
    np.testing.assert_array_equal(few[0][1], few[1][1])
    # the lists ranked beforehand (the pass that chose the homes) give the same graph
    ranks = _core.knn_rank_lists(x, c, 3)
    given_ranks = _core.knn_lists(x, 6, c, start, rows, 3, ranks=ranks)
    np.testing.assert_array_equal(given_ranks[0], few[0][0])
    np.testing.assert_array_equal(given_ranks[1], few[0][1])


@pytest.mark.parametrize("bad", ["start", "rows", "twice", "probes", "dims", "ranks", "rank shape", "query",
                                 "query ranks"])
def test_knn_lists_bad_layout_is_a_value_error(bad):
    x = np.eye(4, dtype=np.float32)
    c = np.eye(4, dtype=np.float32)[:2]
    start, rows, probes = np.array([0, 2, 4], dtype=np.int64), np.arange(4, dtype=np.int64), 1
    extra = {}
    if bad == "start":
        start = np.array([0, 3, 2], dtype=np.int64)
    elif bad == "rows":
        rows = np.array([0, 1, 2, 9], dtype=np.int64)
    elif bad == "twice":
        rows = np.array([0, 1, 1, 3], dtype=np.int64)
    elif bad == "probes":
        probes = 3
    elif bad == "dims":
        c = np.eye(5, dtype=np.float32)[:2]
    elif bad == "ranks":  # a list that does not exist
        extra = {"ranks": np.array([[0], [1], [2], [0]], dtype=np.int32)}
    elif bad == "query":  # a row that does not exist
        extra = {"queries": np.array([0, 4], dtype=np.int64)}
    elif bad == "query ranks":  # ranks for the rows, not for the two queries
        extra = {"queries": np.array([1, 2], dtype=np.int64), "ranks": np.zeros((4, 1), dtype=np.int32)}
    else:
        extra = {"ranks": np.zeros((4, 2), dtype=np.int32)}
    with pytest.raises(ValueError):
        _core.knn_lists(x, 1, c, start, rows, probes, **extra)
    if bad in ("probes", "dims"):
        with pytest.raises(ValueError):
            _core.knn_rank_lists(x, c, probes)


# --------------------------------------------------------------------------- knn_graph(knn_method="lists")

def overlapping(n, d=32, seed=0):
    """Heavily overlapping blobs (noise 0.8 around N(0, I) centres, 100 points a blob): where
    a point's neighbours scatter over many lists."""
    from alscale.al.harness import blobs as harness_blobs

    return harness_blobs(n, d, max(1, n // 100), 0.8, seed=seed)[0]


def test_lists_graph_keeps_its_recall_on_overlapping_blobs():
    pytest.importorskip("faiss")
    import alscale

    x = overlapping(12_000)
    g = alscale.knn_graph(x, 10, knn_method="lists", recall=0.9)
    assert g.info["method"] == "lists" and g.info["nprobe"] >= 2
    assert g.recall >= 0.9
    exact_i, exact_s = alscale.knn_graph(x, 10)
    # independently of the graph's own measurement: every row's neighbours are true rows, best
    # first, and on average the share of exact neighbours it holds is the promised one
    assert (np.diff(g[1], axis=1) <= 0).all()
    assert not (g[0] == np.arange(x.shape[0])[:, None]).any()
    held = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(g[0], exact_i)])
    assert held >= 0.88
    # every similarity is the neighbour's cosine (recomputed in float64 from the unit rows)
    unit = knn._unit_points(x).astype(np.float64)
    np.testing.assert_allclose(g[1], np.einsum("id,ikd->ik", unit, unit[g[0]]), atol=1e-5)


def test_lists_graph_same_for_any_thread_count_and_exact_when_every_list_is_probed():
    pytest.importorskip("faiss")
    import alscale

    x = overlapping(6_000, seed=1)
    a = alscale.knn_graph(x, 5, knn_method="lists", nprobe=3, num_threads=1)
    b = alscale.knn_graph(x, 5, knn_method="lists", nprobe=3, num_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a.info["nprobe"] == 3 and 0 < a.recall < 1  # fixed breadth: measured, no warning
    e = alscale.knn_graph(x, 5, knn_method="lists", nprobe=10**6)
    ex = alscale.knn_graph(x, 5)
    np.testing.assert_array_equal(e[0], ex[0])
    assert e.recall == 1.0


@pytest.mark.parametrize("threads", [1, 2])
def test_spilled_ranks_give_the_graph_of_one_pass(threads, monkeypatch, tmp_path):
    """Over the ranks' budget, "lists" ranks the rows a chunk at a time, spills the ranks to
    nameless files by ranges of home lists and searches one file at a time: the same graph, bit
    for bit, as ranking every row at once; nothing is left in TMPDIR, during or after."""
    import tempfile

    x = knn._unit_points(overlapping(5_000, d=16, seed=3))
    x[::97] = x[5]  # exact ties
    rng = np.random.default_rng(0)
    c = x[np.sort(rng.choice(x.shape[0], 60, replace=False))]
    whole = knn._searched_lists(x, 7, c, 9, threads, {})
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(knn, "_ranks_budget", lambda n, k: 4 * n * 2)  # ranks of 2 probes at once
    monkeypatch.setattr(knn, "_SPILL_READ", 97)  # a file's ranks read back in several pieces
    seen, kernel = [], _core.knn_lists

    def search(*args, **kwargs):  # the files have no names, even while in use
        seen.append(sorted(tmp_path.iterdir()))
        return kernel(*args, **kwargs)

    monkeypatch.setattr(knn._core, "knn_lists", search)
    info = {}
    parts = knn._searched_lists(x, 7, c, 9, threads, info)
    assert seen == [[]] * 5
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])
    assert info["ranks_spilled"] == {"bytes": 5_000 * 4 * 9, "files": 5}
    assert list(tmp_path.iterdir()) == []
    # the whole graph, tuned and measured: the same as without the spill
    monkeypatch.undo()
    pytest.importorskip("faiss")
    import alscale

    a = alscale.knn_graph(x, 7, knn_method="lists", nprobe=9)
    monkeypatch.setattr(knn, "_ranks_budget", lambda n, k: 4 * n * 2)
    b = alscale.knn_graph(x, 7, knn_method="lists", nprobe=9)
    assert "ranks_spilled" in b.info and "ranks_spilled" not in a.info
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a.recall == b.recall


@pytest.mark.parametrize("where", ["tmpfs", "full"])
def test_ranks_held_in_memory_with_a_warning_where_tmpdir_cannot_take_them(where, monkeypatch, tmp_path):
    """A TMPDIR in memory, or without room for the ranks: the ranks are held in memory (the same
    graph), and a ResourceWarning says why and what to set — the memory bound is not kept silently."""
    import tempfile

    x = knn._unit_points(overlapping(2_000, d=8, seed=5))
    c = x[:30].copy()
    whole = knn._searched_lists(x, 5, c, 6, 1, {})
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(knn, "_ranks_budget", lambda n, k: 4 * n)
    if where == "tmpfs":
        monkeypatch.setattr(knn, "_mount_type", lambda path: "tmpfs")
        match = "is a tmpfs \\(in memory\\)"
    else:
        monkeypatch.setattr(knn, "_mount_type", lambda path: "ext4")
        monkeypatch.setattr(knn.os, "statvfs", lambda path: type("S", (), {"f_bavail": 10, "f_frsize": 4096})())
        match = "has 0.0 MB free"
    info = {}
    with pytest.warns(ResourceWarning, match=f"ranks \\(0.0 MB\\) are held in memory.*{match}.*set TMPDIR"):
        got = knn._searched_lists(x, 5, c, 6, 1, info)
    np.testing.assert_array_equal(got[0], whole[0])
    np.testing.assert_array_equal(got[1], whole[1])
    assert "ranks_spilled" not in info and list(tmp_path.iterdir()) == []


def test_mount_type_of_a_path():
    import os

    if not os.path.exists("/proc/mounts"):
        pytest.skip("no /proc/mounts")
    assert knn._mount_type("/proc/self") == "proc"
    assert knn._mount_type("/") is not None


def test_progress_line_names_the_lists_and_the_spill(monkeypatch):
    pytest.importorskip("faiss")
    import alscale
    from alscale.cluster_margin import _recall_line

    x = overlapping(3_000, d=16, seed=4)
    g = alscale.knn_graph(x, 5, knn_method="lists", nprobe=6)
    assert _recall_line(g, 5) == (f"lists, recall@5 {g.recall:.4f} measured on 1,000 sampled points; "
                                  f"{g.info['nlist']:,} lists of ~64 points, 6 probed")
    monkeypatch.setattr(knn, "_ranks_budget", lambda n, k: 4 * n * 2)
    h = alscale.knn_graph(x, 5, knn_method="lists", nprobe=6)
    assert _recall_line(h, 5).endswith("6 probed; ranks spilled to TMPDIR (0.0 GB, 3 files)")


def test_ranks_that_cannot_be_spilled_name_the_folder_to_set(monkeypatch, tmp_path):
    import tempfile

    x = knn._unit_points(overlapping(2_000, d=8))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    monkeypatch.setattr(knn, "_mount_type", lambda path: "ext4")  # whatever this machine's /tmp is
    monkeypatch.setattr(knn, "_ranks_budget", lambda n, k: 4 * n)
    with pytest.raises(OSError, match="TMPDIR"):
        knn._searched_lists(x, 5, x[:20].copy(), 4, 1, {})


def test_list_size_is_the_least_work_that_keeps_the_promise():
    """The list size follows the data's clusters: with blobs of 600 points the tuning picks lists
    far larger than 64 points, its choice is the least work among the sizes it tried that reached
    the target, and the graph keeps the promise (checked against the exact graph)."""
    pytest.importorskip("faiss")
    import alscale
    from alscale.al.harness import blobs as harness_blobs

    n, d = 30_000, 32
    x = harness_blobs(n, d, 50, 0.6, seed=5)[0]
    g = alscale.knn_graph(x, 10, knn_method="lists", recall=0.95)
    sizes = g.info["sizes"]
    assert g.info["method"] == "lists" and g.recall >= 0.95
    assert g.info["list_size"] > 64 and g.info["list_size"] in sizes
    work = {s: n * d * (v["nlist"] + knn._SCAN_COST * v["nprobe"] * n / v["nlist"]) for s, v in sizes.items() if v["met"]}
    assert g.info["list_size"] == min(work, key=work.get)
    assert g.info["nlist"] == sizes[g.info["list_size"]]["nlist"]
    exact_i, _ = alscale.knn_graph(x, 10)
    held = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(g[0], exact_i)])
    assert held >= 0.93
    # a fixed breadth keeps the default lists of 64 points
    f = alscale.knn_graph(x, 10, knn_method="lists", nprobe=2)
    assert f.info["list_size"] == knn._IVF_LIST and abs(f.info["nlist"] - n // knn._IVF_LIST) <= 5


@pytest.mark.parametrize("data", ["blobs600", "overlapping", "uniform"])
def test_list_size_search_finds_the_sweeps_choice_with_fewer_sizes(data, monkeypatch):
    """The coarse-to-fine search over list sizes (every other size, then the two beside the best)
    picks the pair the full sweep of every size picks, trains fewer sets of lists, and every
    size it skipped is one the sweep did not pick."""
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(7)
    if data == "blobs600":
        from alscale.al.harness import blobs as harness_blobs

        x = harness_blobs(30_000, 32, 50, 0.6, seed=5)[0]
    elif data == "overlapping":
        x = overlapping(30_000, seed=3)
    else:
        x = rng.standard_normal((20_000, 16)).astype(np.float32)
    unit = knn._unit_points(x)
    n, d = unit.shape
    sweep = {}
    for size in knn._LIST_SIZES:  # the sweep: each size tuned alone
        monkeypatch.setattr(knn, "_LIST_SIZES", (size,))
        info: dict = {}
        knn._tuned_lists(faiss, unit, 10, 1, 0.95, info)
        v = info["sizes"][size]
        sweep[size] = (knn._lists_work(n, d, v["nlist"], v["nprobe"]) if v["met"] else np.inf, -v["estimate"])
    monkeypatch.undo()
    trained = []
    real = knn._trained_lists
    monkeypatch.setattr(knn, "_trained_lists", lambda f, u, size=knn._IVF_LIST: trained.append(size) or real(f, u, size))
    info = {}
    knn._tuned_lists(faiss, unit, 10, 1, 0.95, info)
    want = min(sweep, key=sweep.get)
    assert info["list_size"] == want, (info["sizes"], sweep)
    assert sorted(trained) == sorted(info["sizes"]) and len(trained) < len(knn._LIST_SIZES)
    assert want in info["sizes"] and all(sweep[s] > sweep[want] for s in knn._LIST_SIZES if s not in info["sizes"])
    for size, v in info["sizes"].items():  # the sizes it tried: their figures are the sweep's where they met
        if v["met"]:
            assert knn._lists_work(n, d, v["nlist"], v["nprobe"]) == sweep[size][0]


def test_faiss_default_hands_over_to_lists_where_the_cell_scan_misses(monkeypatch):
    pytest.importorskip("faiss")
    import alscale

    monkeypatch.setattr(knn, "_LISTS_FIRST", 0.0)  # the cell scan first, as at millions of rows
    x = overlapping(20_000, seed=2)
    g = alscale.knn_graph(x, 10, knn_method="faiss", recall=0.95)
    assert g.recall >= 0.95
    assert g.info["method"] in ("cells", "lists", "exact")
    if g.info["method"] != "cells":
        assert g.info["cells_recall"] < 0.95


def test_faiss_default_is_lists_where_its_dearest_ranking_is_cheap(monkeypatch):
    """Up to N·(N/64)·D <= _LISTS_FIRST the default builds "lists" directly (no cell scan), keeping
    the promise; above it the cell scan runs first."""
    pytest.importorskip("faiss")
    import alscale

    x = overlapping(20_000, seed=2)
    g = alscale.knn_graph(x, 10, knn_method="faiss", recall=0.95)
    assert g.info["method"] == "lists" and "cells_recall" not in g.info and g.recall >= 0.95
    monkeypatch.setattr(knn, "_LISTS_FIRST", 20_000 * (20_000 / 64) * x.shape[1] - 1)  # just below
    h = alscale.knn_graph(x, 10, knn_method="faiss", recall=0.95)
    assert h.info["method"] == "cells" or "cells_recall" in h.info


LISTS_SCRIPT = r"""
import sys
import numpy as np
from alscale import _core, knn

rng = np.random.default_rng(4)
x = knn._unit_points(rng.normal(size=(900, 37)))
x[::11] = x[3]  # exact ties
c = x[rng.choice(900, 29, replace=False)]
ranks = _core.knn_rank_lists(x, c, 5)
home = ranks[:, 0].astype(np.int64)
start = np.zeros(30, dtype=np.int64)
np.cumsum(np.bincount(home, minlength=29), out=start[1:])
idx, sim = _core.knn_lists(x, 7, c, start, np.argsort(home, kind="stable"), 5, ranks=ranks)
np.savez(sys.argv[1], ranks=ranks, idx=idx, sim=sim)
"""


def test_lists_kernels_give_the_same_bits_on_every_isa(tmp_path):
    from test_isa import _run

    runs = {isa: _run(tmp_path / f"{isa}.npz", isa, LISTS_SCRIPT) for isa in (None, "avx2", "base")}
    for isa in ("avx2", "base"):
        for key in ("ranks", "idx", "sim"):
            assert np.array_equal(runs[None][key], runs[isa][key]), (isa, key)


@given(st.integers(2, 60), st.integers(1, 6), st.integers(1, 12), st.integers(1, 9), st.sampled_from([1, 2]),
       st.randoms(use_true_random=False))
def test_brute_matches_reference(n, d, kk, chunk, threads, rnd):
    """The sample's exact neighbours (recall tuning and measurement): chunked tiled ranking,
    merged by float64 similarity, equals a numpy ranking of every row, ties to the smaller row."""
    import random

    r = random.Random(rnd.random())
    x = np.array([[r.randint(-2, 2) for _ in range(d)] for _ in range(n)], dtype=np.float32)
    q = np.array(sorted(r.sample(range(n), r.randint(1, n))), dtype=np.int64)
    kk = min(kk, n)
    old = knn._BRUTE_ROWS
    knn._BRUTE_ROWS = chunk  # several chunks even for a few rows
    try:
        ids, sims = knn._brute(x, q, kk, threads)
    finally:
        knn._BRUTE_ROWS = old
    ref = reference_rank(x[q], x, kk)
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_array_equal(sims, (x[q].astype(np.float64)[:, None, :] * x[ref].astype(np.float64)).sum(axis=2))


def test_unit_float32_rows_are_used_as_given_without_a_copy():
    """knn_graph's input already of unit rows (float32, C-contiguous) is not copied (a 2.1 GiB
    copy at 9M x 64): the graph is the exact one of the rows as given; anything else is
    normalised into a copy, and bad rows are still named."""
    import alscale

    rng = np.random.default_rng(8)
    u = knn._unit_points(rng.normal(size=(300, 7)))
    assert knn._as_unit(u) is u
    idx, sim = alscale.knn_graph(u, 4)
    ref_i, ref_s = _core.knn_exact(u, 4, 0)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(sim, ref_s)
    for other in (2 * u, u.astype(np.float64), np.asfortranarray(u), u[::2]):
        got = knn._as_unit(other)
        assert got is not other and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    bad = u.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf at row 5"):
        alscale.knn_graph(bad, 4)
