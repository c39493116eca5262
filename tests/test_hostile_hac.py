"""Hostile input to HAC and the kNN graph (issue 10, part 6): duplicate points and similarities
above 1, coordinates near float32's limits, arguments of the wrong kind, device and meta
tensors, and pools too large for exact HAC. Each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, is_valid_linkage
from scipy.sparse import coo_matrix

import alscale
import reference as ref
from strategies import SEEDS, examples


def assert_usable_by_scipy(z: np.ndarray) -> None:
    """Heights >= 0 and non-decreasing, and scipy accepts the Z (fcluster refuses a negative height)."""
    assert (z[:, 2] >= 0).all(), z[:, 2].min()
    assert (np.diff(z[:, 2]) >= 0).all()
    assert is_valid_linkage(z)
    fcluster(z, 0.5, "distance")


def duplicated_points(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(max(1, n // 3), d))
    return base[rng.integers(0, base.shape[0], n)] * rng.choice([1e-3, 1.0, 7.0])


# --------------------------------------------------------------------------- heights >= 0


@given(seed=SEEDS, n=st.integers(3, 40), d=st.integers(1, 8), k=st.integers(1, 8))
@examples(0.5)
def test_graph_hac_on_duplicate_points_gives_valid_linkage(seed, n, d, k):
    """Duplicate points have float32 cosine similarity up to 1 + 2^-23: the merge height was
    -1.19e-7, which fcluster refuses (308 of 2000 random duplicated sets)."""
    x = duplicated_points(seed, n, d)
    c = alscale.hac_average(x, neighbors=min(k, n - 1), n_clusters=2)
    assert_usable_by_scipy(c.linkage)


def test_graph_hac_duplicate_points_by_hand():
    x = np.repeat(np.random.default_rng(1).normal(size=(6, 5)), 4, axis=0)
    _, sim = alscale.knn_graph(x, 3)
    assert sim.max() > 1.0  # the float32 rounding this is about
    c = alscale.hac_average(x, neighbors=3, n_clusters=6)
    assert_usable_by_scipy(c.linkage)
    assert (c.linkage[:18, 2] < 1e-6).all() and c.linkage[0, 2] == 0.0  # the 18 merges of duplicates
    np.testing.assert_array_equal(c.labels, np.repeat(np.arange(6), 4))


def clamped_reference(n, u, v, s) -> np.ndarray:
    """The brute-force graph HAC with every height taken as max(0, 1 - w)."""
    merges = [(a, b, max(0.0, h)) for a, b, h in ref.graph_hac_merges(n, u, v, s)]
    return ref.linkage_from_merges(n, merges)


@given(seed=SEEDS, n=st.integers(2, 25), density=st.floats(0.0, 1.0))
@examples(0.5)
def test_graph_similarities_above_one(seed, n, density):
    """hac_average_graph takes any positive similarity; those above 1 merge at height 0 (it was
    1 - w < 0), in the same order as before."""
    rng = np.random.default_rng(seed)
    m = int(density * n * (n - 1) / 2) + 1
    u, v = rng.integers(0, n, m).astype(np.int64), rng.integers(0, n, m).astype(np.int64)
    s = rng.choice(np.array([0.5, 1.0, 1.0000001, 1.5, 3.0, 0.0], np.float32), m)
    c = alscale.hac_average_graph(coo_matrix((s, (u, v)), shape=(n, n)), n_clusters=1)
    np.testing.assert_array_equal(c.linkage, clamped_reference(n, u, v, s))
    assert_usable_by_scipy(c.linkage)


def test_graph_similarity_above_one_by_hand():
    c = alscale.hac_average_graph((np.array([[1], [0], [3], [2]]), np.array([[1.5], [1.5], [0.5], [0.5]])),
                                  n_clusters=2)
    np.testing.assert_array_equal(c.linkage, [[0, 1, 0.0, 2], [2, 3, 0.5, 2], [4, 5, 1.0, 4]])
    np.testing.assert_array_equal(c.labels, [0, 0, 1, 1])
