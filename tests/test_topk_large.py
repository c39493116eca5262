"""Top-k over pools large enough to split over threads (n >= 8192 rows per extra thread): each
thread's sorted k smallest, merged; must equal the single-thread result and numpy's lexsort, for
any k up to and beyond the pool, with heavy ties and exclusions."""

from __future__ import annotations

import numpy as np
import pytest

from alscale import _core

import reference as ref


@pytest.mark.parametrize("k", [1, 100, 9_999, 10_000, 10_001, 19_000, 20_000, 25_000])
@pytest.mark.parametrize("largest", [False, True])
def test_threaded_topk_equals_lexsort(k, largest):
    rng = np.random.default_rng(k)
    n = 20_000
    scores = np.round(rng.standard_normal(n), 1)  # about 80 distinct values: heavy ties
    mask = (rng.random(n) < 0.2).astype(np.uint8)
    keys = -scores if largest else scores
    order = np.lexsort((np.arange(n), keys))
    expected = order[mask[order] == 0][:k]
    for threads in (1, 2):
        got = _core.select_topk(scores, k, mask, largest, threads)
        np.testing.assert_array_equal(got, expected)
        ranked_keys, ids, pos = _core.topk_ranked(scores, k, mask, largest, None, 5, threads)
        np.testing.assert_array_equal(ids, expected + 5)
        np.testing.assert_array_equal(pos, expected)
        np.testing.assert_array_equal(ranked_keys, keys[expected])
    reference = ref.topk_largest if largest else ref.topk_smallest
    assert reference(scores, k, mask.astype(bool)).tolist() == expected.tolist()
