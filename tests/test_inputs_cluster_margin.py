"""Bad and degenerate input to Cluster-Margin: select_cluster_margin's arguments give a clear
ValueError / TypeError naming them; the strategy clusters embeddings with zero rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alscale
from alscale.strategies import PoolView, get

LOGITS = np.random.default_rng(1).normal(size=(10, 4))
CLUSTERS = np.arange(10) % 3


def test_cluster_margin_bad_input():
    with pytest.raises(ValueError, match=r"clusters must have one label per logits row \(10\), got shape \(9,\)"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS[:9], 3)
    with pytest.raises(TypeError, match="clusters must hold integer cluster labels"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS.astype(float), 3)
    with pytest.raises(ValueError, match=r"candidates \(k_m = 2\) must be at least budget \(3\)"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, 3, candidates=2)
    with pytest.raises(ValueError, match="budget must be non-negative"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, -1)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, 3, seed=-4)
    bad = LOGITS.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="logits contain NaN or inf at row 2"):
        alscale.select_cluster_margin(bad, CLUSTERS, 3)
    with pytest.raises(ValueError, match="exclude index 10 is out of range"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, 3, exclude=[10])
    with pytest.raises(TypeError, match="budget must be an integer"):
        alscale.select_cluster_margin(LOGITS, CLUSTERS, "3")
    with pytest.raises(ValueError, match="clusters must have one label per logits row"):
        alscale.select_cluster_margin(torch.from_numpy(LOGITS), torch.zeros(3, dtype=torch.int64), 3)


def test_cluster_margin_handles_zero_embedding_rows():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 5))
    z[[3, 17, 30]] = 0.0
    logits = rng.standard_normal((40, 4))
    labeled = np.zeros(40, dtype=bool)
    labeled[:5] = True
    s = get("cluster-margin")
    picks = s.select(PoolView(labeled=labeled, logits=logits, embeddings=z), 8, np.random.default_rng(1))
    assert picks.size == 8 and np.unique(picks).size == 8 and not labeled[picks].any()
    labels = np.asarray(s.state()["labels"])
    assert labels.shape == (40,)
    # the zero rows (identical points without a direction) share one cluster of their own
    assert labels[3] == labels[17] == labels[30]
    assert not np.isin(labels[3], np.delete(labels, [3, 17, 30]))
    # all rows zero, or a single non-zero row
    for zz in (np.zeros((40, 5)), np.where(np.arange(40)[:, None] == 7, 1.0, 0.0) * np.ones((40, 5))):
        s = get("cluster-margin")
        picks = s.select(PoolView(labeled=labeled, logits=logits, embeddings=zz), 8, np.random.default_rng(1))
        assert picks.size == 8 and np.unique(picks).size == 8
