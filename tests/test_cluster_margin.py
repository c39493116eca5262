"""select_cluster_margin against the numpy reference: candidates, grouping, round-robin, seed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale.hac import ComponentsWarning
from hypotheses import SEEDS, excludes


@given(seed=SEEDS, n=st.integers(1, 400), c=st.integers(1, 6), k=st.integers(1, 40), data=st.data(),
       rr_seed=st.integers(0, 2**64 - 1), integer=st.booleans())
def test_matches_reference(seed, n, c, k, data, rr_seed, integer):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c))
    if integer:  # many tied margins
        logits = np.round(logits)
    clusters = rng.integers(-2, data.draw(st.integers(1, 30), label="clusters"), n)
    exclude = data.draw(excludes(n), label="exclude")
    budget = data.draw(st.integers(0, n + 2), label="budget")
    candidates = data.draw(st.one_of(st.none(), st.integers(budget, 3 * n + 3)), label="candidates")
    got = alscale.select_cluster_margin(logits, clusters, budget, candidates=candidates, exclude=exclude,
                                        seed=rr_seed, num_threads=1)
    scores = alscale.margin_scores(logits)  # the margin kernel is checked against numpy elsewhere
    expected = ref.select_cluster_margin(scores, clusters, budget, rr_seed, candidates=candidates, exclude=exclude)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64 and np.unique(got).size == got.size
    again = alscale.select_cluster_margin(logits, clusters, budget, candidates=candidates, exclude=exclude,
                                          seed=rr_seed, num_threads=2)
    np.testing.assert_array_equal(again, got)


def test_round_robin_order_by_cluster_size():
    # margins: every row is a candidate; clusters 7 (1 row), 3 (2 rows), 5 (3 rows)
    logits = np.zeros((6, 2))
    clusters = np.array([5, 3, 5, 7, 3, 5])
    sel = alscale.select_cluster_margin(logits, clusters, 6, candidates=6, seed=123)
    assert sel[0] == 3  # the smallest cluster first
    assert sel[1] in (1, 4) and sel[2] in (0, 2, 5)  # then cluster 3, then cluster 5
    assert sel[3] in (1, 4) and sel[4] in (0, 2, 5) and sel[5] in (0, 2, 5)
    np.testing.assert_array_equal(sel, ref.cluster_round_robin(np.arange(6), clusters, 6, 123))


def test_seed_kinds_and_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10))
    clusters = rng.integers(0, 20, 500)
    a = alscale.select_cluster_margin(logits, clusters, 50, seed=np.random.default_rng(5))
    b = alscale.select_cluster_margin(logits, clusters, 50, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert alscale.select_cluster_margin(logits, clusters, 50).shape == (50,)
    seeds = {tuple(alscale.select_cluster_margin(logits, clusters, 50, seed=s).tolist()) for s in range(5)}
    assert len(seeds) > 1  # the seed matters
    t = alscale.select_cluster_margin(torch.from_numpy(logits), torch.from_numpy(clusters), 50, seed=1)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
    np.testing.assert_array_equal(t.numpy(), alscale.select_cluster_margin(logits, clusters, 50, seed=1))
    c = alscale.hac_average(rng.normal(size=(500, 4)), n_clusters=20)
    np.testing.assert_array_equal(alscale.select_cluster_margin(logits, c, 50, seed=2),
                                  alscale.select_cluster_margin(logits, c.labels, 50, seed=2))


def test_round_robin_keys_match_kernel_definition():
    # splitmix64 from state 0: the first outputs of the published generator
    keys = ref.round_robin_keys(0, np.array([0, 1, 2]))
    assert keys.tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


# ------------------------------------------------------------------ cluster_embeddings (the pool's clustering)
@given(seed=SEEDS, n=st.integers(1, 300), d=st.integers(1, 9),
       dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.uint8]),
       order=st.sampled_from(["C", "F"]))
def test_zero_rows_by_their_bits_equal_numpy(seed, n, d, dtype, order):
    """The all-zero rows that cluster_embeddings sets apart: -0 is zero, NaN and subnormals are
    not, in every dtype and layout (floats read as their bits)."""
    from alscale.cluster_margin import _zero_rows

    rng = np.random.default_rng(seed)
    z = (rng.integers(-1, 2, size=(n, d)) * rng.random((n, d)) * (rng.random((n, d)) < 0.3)).astype(np.float64)
    if np.dtype(dtype).kind == "f":
        special = np.array([-0.0, np.nan, np.finfo(dtype).smallest_subnormal, -np.inf], dtype=dtype)
        z = z.astype(dtype)
        picks = rng.random((n, d)) < 0.1
        z[picks] = rng.choice(special, int(picks.sum()))
    else:
        z = np.abs(z * 3).astype(dtype)
    z = np.asarray(z, order=order)
    np.testing.assert_array_equal(_zero_rows(z), ~np.any(z != 0, axis=1))


@given(seed=SEEDS, n=st.integers(2, 120), d=st.integers(1, 6), k=st.integers(1, 12), clusters=st.integers(1, 30),
       zeros=st.integers(0, 3), integer=st.booleans())
def test_cluster_embeddings_is_graph_hac_of_the_knn_graph(seed, n, d, k, clusters, zeros, integer):
    """Equals hac_average_graph on knn_graph (and hac_average(neighbors=) in one call) for the
    non-zero rows; all-zero rows form one cluster of their own, the last id."""
    from alscale.cluster_margin import cluster_embeddings

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    if integer:  # tied similarities
        z = np.round(z)
    z[rng.choice(n, min(zeros, n), replace=False)] = 0
    zero = ~np.any(z != 0, axis=1)
    with warnings.catch_warnings():  # more components than clusters: the floor, the same in all three
        warnings.simplefilter("ignore", ComponentsWarning)
        got = cluster_embeddings(z, clusters, neighbors=k, num_threads=1)
        assert got.dtype == np.int64 and got.shape == (n,)
        rows = np.flatnonzero(~zero)
        if rows.size >= 2:
            want = max(1, min(rows.size, clusters - int(zero.any())))
            kk = min(k, rows.size - 1)
            graph = alscale.knn_graph(z[rows], kk)
            expect = alscale.hac_average_graph(graph, n_clusters=want).labels
            np.testing.assert_array_equal(got[rows], expect)
            np.testing.assert_array_equal(got[rows],
                                          alscale.hac_average(z[rows], n_clusters=want, neighbors=kk).labels)
        else:
            assert (got[rows] == 0).all()
        if zero.any():
            assert (got[zero] == (got[rows].max() + 1 if rows.size else 0)).all()
        np.testing.assert_array_equal(cluster_embeddings(z, clusters, neighbors=k, num_threads=2), got)


def test_cluster_embeddings_settings_and_progress(tmp_path):
    from alscale.cluster_margin import cluster_embeddings

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8)).astype(np.float32)
    lines = []
    got = cluster_embeddings(z, 12, neighbors=5, recall=0.9, pca=4, knn_method="faiss", progress=lines.append)
    graph = alscale.knn_graph(z, 5, knn_method="faiss", recall=0.9, pca=4)
    np.testing.assert_array_equal(got, alscale.hac_average_graph(graph, n_clusters=12).labels)
    assert lines[0] == "kNN graph of 300 embeddings (faiss, k = 5, recall 0.9, PCA to 4) ..."
    assert lines[1].startswith("kNN graph: ") and lines[2] == "graph HAC into 12 clusters ..."
    assert lines[3].startswith("graph HAC: ") and len(lines) == 4
    mm = np.lib.format.open_memmap(str(tmp_path / "z.npy"), mode="w+", dtype=np.float32, shape=z.shape)
    mm[:] = z
    np.testing.assert_array_equal(cluster_embeddings(mm, 12, neighbors=5), cluster_embeddings(z, 12, neighbors=5))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n_clusters=0), ValueError, "n_clusters must be at least 1"),
    (dict(n_clusters=2.0), TypeError, "n_clusters must be an integer"),
    (dict(neighbors=0), ValueError, "neighbors must be at least 1"),
    (dict(recall=0.0), ValueError, r"recall must be in \(0, 1\]"),
    (dict(recall=True), TypeError, "recall must be a number"),
    (dict(pca=0), ValueError, "pca must be at least 1"),
    (dict(pca=5), ValueError, "pca must be at most the number of features"),
    (dict(knn_method="annoy"), ValueError, "knn method must be one of"),
    (dict(embeddings=np.zeros(5)), ValueError, "embeddings must be 2-D"),
    (dict(embeddings=np.array([["a", "b"]] * 3)), TypeError, "embeddings must be a real-valued array"),
    (dict(embeddings=np.array([[1.0, np.nan], [1.0, 2.0], [0.5, 1.0]])), ValueError, "NaN or inf at row 0"),
])
def test_cluster_embeddings_bad_input(kwargs, error, message):
    from alscale.cluster_margin import cluster_embeddings

    args = {"embeddings": np.random.default_rng(0).normal(size=(20, 4)), "n_clusters": 3, **kwargs}
    with pytest.raises(error, match=message):
        cluster_embeddings(args.pop("embeddings"), args.pop("n_clusters"), **args)


def test_cluster_embeddings_reduces_a_pool_on_disk_with_zero_rows_without_copying_it(tmp_path, monkeypatch):
    """With all-zero rows and ``pca``, the other rows of a memmap are reduced chunk by chunk
    (never gathered whole: a 9M x 2048 pool on disk with one zero row would be a 37 GB copy):
    the clusters are those of the same rows given without the zero ones, the zero rows their
    own cluster; a NaN row is named by its row in the pool."""
    pytest.importorskip("faiss")
    from alscale import knn
    from alscale.al.harness import blobs
    from alscale.cluster_margin import cluster_embeddings

    z = blobs(3_000, 32, 12, 0.3, seed=8)[0].astype(np.float16)
    z[[0, 7, 1999]] = 0
    np.save(tmp_path / "z.npy", z)
    disk = np.load(tmp_path / "z.npy", mmap_mode="r")
    monkeypatch.setattr(knn, "_chunk_rows", lambda features: 512)  # several chunks, zero rows in two
    taken = []
    real_getitem = np.memmap.__getitem__

    def spy(self, index):
        out = real_getitem(self, index)
        if getattr(out, "shape", (0,))[0] > 1_000:
            taken.append(out.shape[0])
        return out

    monkeypatch.setattr(np.memmap, "__getitem__", spy)
    got = cluster_embeddings(disk, 13, pca=8)
    assert taken == []  # no read of more than a chunk from the pool on disk
    monkeypatch.setattr(np.memmap, "__getitem__", real_getitem)
    keep = np.flatnonzero(np.any(z != 0, axis=1))
    want = cluster_embeddings(np.ascontiguousarray(z[keep]), 12, pca=8)
    np.testing.assert_array_equal(got[keep], want)
    assert (got[[0, 7, 1999]] == want.max() + 1).all()
    bad = z.copy()
    bad[2500, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="NaN or inf at row 2500"):
        cluster_embeddings(np.load(tmp_path / "bad.npy", mmap_mode="r"), 13, pca=8)
