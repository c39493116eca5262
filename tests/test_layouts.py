"""Column-major logits (rows the fast axis, e.g. transposed views) are read in blocks of rows:
every layout must give bit-identical scores and the same selections as the C-ordered copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alscale


def _layouts(x: np.ndarray):
    yield "fortran", np.asfortranarray(x)
    yield "transposed view", np.ascontiguousarray(x.T).T
    yield "reversed columns-major", np.asfortranarray(x[::-1])[::-1]
    yield "strided rows of a transposed view", np.ascontiguousarray(np.repeat(x, 2, axis=0).T).T[::2]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_every_layout_gives_the_same_results(dtype, n):
    rng = np.random.default_rng(n)
    x = (rng.normal(size=(n, 7)) * 3).astype(dtype)
    w = rng.normal(size=(7, 4))
    for name, y in _layouts(x):
        assert np.array_equal(y, x), name
        for threads in (1, 2):
            for f in (alscale.margin_scores, alscale.entropy_scores, alscale.confidence_scores):
                assert np.array_equal(f(y, num_threads=threads), f(x)), (name, f.__name__)
            assert np.array_equal(alscale.boundary_scores(y, weight=w, num_threads=threads),
                                  alscale.boundary_scores(x, weight=w)), name
            assert np.array_equal(alscale.select_balanced(y, 20, weight=w, num_threads=threads),
                                  alscale.select_balanced(x, 20, weight=w)), name


def test_transposed_bfloat16_tensor():
    x = torch.randn(300, 9, generator=torch.Generator().manual_seed(0)).bfloat16()
    t = x.T.contiguous().T  # column-major
    assert not t.is_contiguous()
    assert torch.equal(alscale.margin_scores(t), alscale.margin_scores(x))
    assert torch.equal(alscale.select_balanced(t, 30), alscale.select_balanced(x, 30))
