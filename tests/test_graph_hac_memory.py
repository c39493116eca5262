"""Graph HAC's compact kernel (issue 13): the (N, k) kNN arrays read in place, 32-bit ids below
2^31 points, one adjacency arena compacted as merges grow lists, a heap rebuilt from the current
best neighbours. The merges must stay bit for bit what the brute-force reference (and the kernel
before these changes) gives, whatever the id width, the input form, the dtype and the threads."""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.cluster.hierarchy import is_valid_linkage
from scipy.sparse import coo_matrix

import alscale
import reference as ref
from alscale.hac import ComponentsWarning
from alscale import _core
from hypotheses import SEEDS, examples

VALUES = np.array([0.25, 0.5, 0.75, 1.0, 1.25, -0.5, 0.0], np.float32)  # few values: ties everywhere


def knn_like(seed: int, n: int, k: int, missing: float = 0.1, hubs: int = 0):
    """An (n, k) graph with ties, duplicates within a row, self-loops, -1 and s <= 0; with hubs,
    half the edges go to that many points (star-like graphs: every merge into a hub rescans all
    its neighbours, whose new heap entries make the heap rebuild itself from the best ones)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (n, k))
    sim = rng.choice(VALUES, (n, k))
    if hubs:  # hub edges strong and distinct, the others weak and tied
        hub = rng.random((n, k)) < 0.5
        idx = np.where(hub, rng.integers(0, min(hubs, n), (n, k)), idx)
        sim = np.where(hub, 0.5 + rng.integers(0, 10**5, (n, k)) * 5e-6, sim / 16).astype(np.float32)
    idx[rng.random((n, k)) < missing] = -1
    return idx.astype(np.int64), sim


def all_forms(idx: np.ndarray, sim: np.ndarray, k_clusters: int, threads: int = 0):
    """Z and labels of every way into the kernel: int64/int32 neighbours, 32/64-bit ids, COO."""
    n = idx.shape[0]
    out = []
    for dtype in (np.int64, np.int32):
        for wide in (False, True):
            out.append(_core.hac_average_knn_graph(idx.astype(dtype), sim, -1.0, k_clusters, threads, wide))
    rows = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    keep = idx.ravel() >= 0
    for wide in (False, True):
        out.append(_core.hac_average_graph(n, rows[keep], idx.ravel()[keep], sim.ravel()[keep], -1.0, k_clusters,
                                           threads, wide))
    return out


def assert_all_equal(results, z: np.ndarray, labels: np.ndarray | None = None) -> None:
    for got_z, got_labels in results:
        np.testing.assert_array_equal(got_z, z)
        if labels is not None:
            np.testing.assert_array_equal(got_labels, labels)


@given(seed=SEEDS, n=st.integers(2, 40), k=st.integers(0, 8), missing=st.floats(0.0, 1.0),
       k_clusters=st.integers(1, 40), hubs=st.integers(0, 3))
@examples(0.5)
def test_knn_form_matches_bruteforce_reference(seed, n, k, missing, k_clusters, hubs):
    idx, sim = knn_like(seed, n, k, missing, hubs)
    rows = np.repeat(np.arange(n), k)
    keep = idx.ravel() >= 0
    expected = ref.graph_hac(n, rows[keep], idx.ravel()[keep], sim.ravel()[keep])
    labels = ref.flat_labels(expected, n, n_clusters=k_clusters)  # the kernel's maxclust cut
    # the public call floors the cut at the connected components (with a warning)
    components = 1 + int(np.count_nonzero(expected[:, 2] >= 1.0))
    with pytest.warns(ComponentsWarning) if components > k_clusters else contextlib.nullcontext():
        c = alscale.hac_average_graph((idx, sim), n_clusters=k_clusters)
    np.testing.assert_array_equal(c.linkage, expected)
    np.testing.assert_array_equal(c.labels, ref.flat_labels(expected, n, n_clusters=max(k_clusters, components)))
    assert is_valid_linkage(c.linkage)
    assert_all_equal(all_forms(idx, sim, k_clusters), expected, labels)


@given(seed=SEEDS, n=st.integers(2, 3000), k=st.integers(1, 12), missing=st.floats(0.0, 0.5),
       threads=st.sampled_from([1, 2]), hubs=st.sampled_from([0, 0, 1, 3]))
@examples(0.2, minimum=12)
def test_larger_graphs_same_for_every_form_and_thread_count(seed, n, k, missing, threads, hubs):
    # Thousands of points: many merges re-place lists (compacting the arena) and, with hubs, the
    # heap is rebuilt many times; every form and id width must still give the same merges.
    idx, sim = knn_like(seed, n, k, missing, hubs)
    z, labels = _core.hac_average_knn_graph(idx, sim, -1.0, max(1, n // 10), 1, False)
    assert is_valid_linkage(z)
    assert_all_equal(all_forms(idx, sim, max(1, n // 10), threads), z, labels)


def test_mutual_and_duplicate_edges_take_the_largest_similarity():
    # 0-1 given as 0.5 by 0 and 0.75 by 1 (and 0.25 twice more): the edge is 0.75
    idx = np.array([[1, 1, 1], [0, 0, -1], [3, -1, -1], [2, -1, -1]])
    sim = np.array([[0.5, 0.25, 0.25], [0.75, 0.25, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]], np.float32)
    with pytest.warns(ComponentsWarning):  # two components: {0, 1} and {2, 3}
        c = alscale.hac_average_graph((idx, sim), n_clusters=1)
    np.testing.assert_array_equal(c.labels, [0, 0, 1, 1])
    np.testing.assert_array_equal(c.linkage[:, 2], [0.25, 0.5, 1.0])


def deterministic_graph(n: int, k: int):
    """A kNN-shaped graph from integer arithmetic only (no RNG stream that could change)."""
    i = np.arange(n, dtype=np.int64)[:, None]
    j = np.arange(k, dtype=np.int64)[None, :]
    idx = (i * 7919 + j * j * 104729 + (i // 97) * 31) % n
    idx = np.where((i * 13 + j * 5) % 23 == 0, -1, idx)
    sim = ((i * 31 + j * 17 + idx * 3) % 11 + 1).astype(np.float32) / np.float32(12.0)
    return idx, sim


# sha256 of Z (float64 bytes) from the kernel before issue 13's changes (vectors of 16-byte
# entries, a heap of versioned 40-byte entries), computed on these graphs.
BEFORE = {
    (2000, 10): "31b791adcf83c67a9a1407254823c37eaba734716766b04b8daa312515c52f63",
    (6000, 6): "2bee2d0eff86790953d98bee2a5ce64b33918937dbcc45e2546b42685499a385",
}


@pytest.mark.parametrize("n,k", list(BEFORE))
def test_same_linkage_as_the_kernel_before(n, k):
    idx, sim = deterministic_graph(n, k)
    z, _ = _core.hac_average_knn_graph(idx, sim, -1.0, 1, 0, False)
    assert hashlib.sha256(z.tobytes()).hexdigest() == BEFORE[(n, k)]
    assert_all_equal(all_forms(idx, sim, 1), z)


def test_bad_neighbour_indices_raise_value_errors():
    sim = np.ones((3, 1), np.float32)
    for bad in (3, -2):
        for dtype in (np.int64, np.int32):
            idx = np.array([[1], [bad], [0]], dtype)
            with pytest.raises(ValueError, match="out of range"):
                _core.hac_average_knn_graph(idx, sim, -1.0, 1)
            with pytest.raises(ValueError, match=r"indices must lie in \[-1, 3\)"):
                alscale.hac_average_graph((idx, sim), n_clusters=1)
    with pytest.raises(ValueError, match=r"both be \(N, k\)"):
        _core.hac_average_knn_graph(np.zeros((3, 2), np.int64), sim, -1.0, 1)
    with pytest.raises(ValueError, match="at least 2 points"):
        _core.hac_average_knn_graph(np.zeros((1, 1), np.int64), np.ones((1, 1), np.float32), -1.0, 1)


def test_int32_and_other_integer_dtypes_give_the_same_result():
    idx, sim = knn_like(5, 500, 6)
    expected = alscale.hac_average_graph((idx, sim), n_clusters=7)
    for dtype in (np.int32, np.int16, np.uint16):
        a = idx.astype(dtype) if dtype != np.uint16 else np.where(idx < 0, 0, idx).astype(dtype)
        want = expected if dtype != np.uint16 else alscale.hac_average_graph((a.astype(np.int64), sim), n_clusters=7)
        c = alscale.hac_average_graph((a, sim), n_clusters=7)
        np.testing.assert_array_equal(c.linkage, want.linkage)
        np.testing.assert_array_equal(c.labels, want.labels)
    # non-contiguous views are read correctly too
    c = alscale.hac_average_graph((np.repeat(idx, 2, axis=1)[:, ::2], np.repeat(sim, 2, axis=1)[:, ::2]), n_clusters=7)
    np.testing.assert_array_equal(c.linkage, expected.linkage)
