"""Every finite float16 value converts exactly (the kernels read half rows without numpy)."""

from __future__ import annotations

import numpy as np
import torch

import alscale


def _all_finite_halves() -> np.ndarray:
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    return h[np.isfinite(h)]


def test_every_finite_half_converts_exactly():
    v = _all_finite_halves()
    x = np.stack([v, np.zeros_like(v)], axis=1)  # row: [v, 0]
    # boundary score of [v, 0] is |v| (the gap between the two logits), exact in float64
    expected = np.abs(v.astype(np.float64))
    assert np.array_equal(alscale.boundary_scores(x), expected)
    for threads in (1, 2):
        assert np.array_equal(alscale.boundary_scores(x[:, ::-1], num_threads=threads), expected)


def test_every_finite_bfloat16_converts_exactly():
    bits = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16)
    v = bits.view(torch.bfloat16)
    v = v[torch.isfinite(v)]
    x = torch.stack([v, torch.zeros_like(v)], dim=1)
    expected = v.double().abs()
    got = alscale.boundary_scores(x)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert torch.equal(got, expected)


def test_half_with_inf_or_nan_is_rejected_at_its_row():
    x = np.zeros((10, 3), dtype=np.float16)
    x[6, 1] = np.float16(np.inf)
    x[8, 0] = np.float16(np.nan)
    for f in (alscale.margin_scores, alscale.boundary_scores):
        try:
            f(x)
        except ValueError as e:
            assert "row 6" in str(e)
        else:
            raise AssertionError("non-finite half logits were accepted")
