"""The fused max passes of the CPU kernels (issue 23) keep every pick and every bit.

Margin's two largest values come from order-free max / min-max chains merged as a tree, and BASE
(with the head's table or without a head) takes its max from the same chains and its argmax as the
first value equal to it: the picks must stay the reference's (first argmax, smallest (score, row))
on rows whose maximum is tied, a signed zero, or lies in any lane, and the scores the same bits on
every instruction set.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import alscale
import reference as ref
from alscale import _core
from test_isa import _same_bits_on_every_isa


def tied_rows(rng, n, c, dtype):
    """Rows with ties at the maximum in different lanes and chains, all-zero rows of both signs,
    a -0 before a +0 maximum, and small integers (many ties of every rank)."""
    x = (rng.normal(size=(n, c)) * 3).astype(dtype)
    x[::4] = np.round(x[::4] / 2)  # small integers: tied maxima and tied seconds
    x[1::9] = -np.abs(x[1::9])
    x[1::9, c // 2] = -0.0  # a -0 maximum ...
    x[1::9, c - 1] = 0.0  # ... tied with a later +0
    x[2::11] = 0.0
    x[2::11, ::3] = -0.0
    top = rng.integers(0, c, size=(n, 3))  # the maximum at up to three positions
    for i in range(5, n, 6):
        x[i, top[i]] = x[i].max() + 1
    return x


@pytest.mark.parametrize("c", [3, 17, 64, 130])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("head", [False, True])
def test_base_picks_equal_the_reference_with_tied_and_zero_maxima(c, dtype, head):
    rng = np.random.default_rng(c)
    x = tied_rows(rng, 300, c, dtype)
    w = rng.normal(size=(c, 5)) if head else None
    for budget in (1, c, 4 * c + 3):
        want = ref.select_balanced(x, budget, w)
        for threads in (1, 2):
            got = alscale.select_balanced(x, budget, weight=w, num_threads=threads)
            assert got.tolist() == want.tolist(), (budget, threads)


@pytest.mark.parametrize("c", [3, 17, 64, 130])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("head", [False, True])
def test_mase_scores_equal_the_reference_with_tied_and_zero_maxima(c, dtype, head):
    rng = np.random.default_rng(7 * c)
    x = tied_rows(rng, 300, c, dtype)
    w = rng.normal(size=(c, 5)) if head else None
    got = alscale.boundary_scores(x, weight=w)
    want = ref.boundary_scores(x, w)
    assert np.array_equal(got, want)  # the reference's l_p - l_c may be -0: equal, not the same bits
    # the kernel subtracts 0 + max (row_max_lanes): a zero max's sign never reaches a score
    assert not np.signbit(got).any()
    assert alscale.select_boundary(x, 40, weight=w).tolist() == ref.select_boundary(x, 40, w).tolist()


@pytest.mark.parametrize("c", [2, 17, 65, 1000])
def test_margin_picks_equal_the_reference_on_tied_rows(c):
    rng = np.random.default_rng(40 + c)
    x = tied_rows(rng, 400, c, np.float32)
    got = alscale.margin_scores(x)
    want = ref.margin_scores(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # every row whose top two are tied has margin 0, whatever lanes they sit in
    s = np.sort(x, axis=1)
    tied = s[:, -1] == s[:, -2]
    assert tied.any()
    assert np.all(got[tied] == 0.0)


@pytest.mark.parametrize("c", [5, 33, 70])
@pytest.mark.parametrize("d", [255, 256, 257, 600, 1031])
def test_head_table_in_row_chunks_equals_reference_bit_for_bit(c, d):
    # The table's register blocks take the rows in chunks of 256 doubles, their lane sums carried
    # from chunk to chunk: every entry must still be lane_dot's bits across the chunk edges and a
    # padded last block, equal and nearly equal rows (the direct-norm path) included.
    rng = np.random.default_rng(c * 1000 + d)
    w = rng.normal(size=(c, d))
    w[4] = w[1]
    w[3] = w[2] * (1 + 1e-9)
    got = _core.inverse_norms(np.ascontiguousarray(w))
    want = ref.inverse_norms(w, c)
    assert got.tobytes() == want.tobytes()


SCRIPT = r"""
import sys
import numpy as np
import alscale
sys.path.insert(0, TESTS_DIR)
from test_kernels_fused import tied_rows

out = {}
for c in (1, 2, 16, 17, 63, 64, 65, 130, 1000):
    for dt in (np.float32, np.float64):
        rng = np.random.default_rng(c)
        x = tied_rows(rng, 150, c, dt)
        key = f"{c}-{np.dtype(dt).name}"
        for kind in ("margin", "confidence", "entropy"):
            out[f"{key}-{kind}"] = getattr(alscale, f"{kind}_scores")(x)
        w = rng.normal(size=(c, 300))  # two row chunks of the table's blocks
        out[f"{key}-base"] = alscale.select_balanced(x, 3 * c + 1)
        out[f"{key}-base-w"] = alscale.select_balanced(x, 3 * c + 1, weight=w)
        out[f"{key}-mase"] = alscale.boundary_scores(x)
        out[f"{key}-mase-w"] = alscale.boundary_scores(x, weight=w)
np.savez(sys.argv[1], **out)
"""


def test_fused_passes_give_the_same_bits_on_every_instruction_set(tmp_path):
    """AVX-512 (where the CPU has it), AVX2 and the baseline: the same bytes."""
    here = os.path.dirname(os.path.abspath(__file__))
    _same_bits_on_every_isa(tmp_path, SCRIPT.replace("TESTS_DIR", repr(here)), 9 * 2 * 7)


def test_kernel_ratios_prints_the_load_average_beside_its_figures(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "kernel_ratios.py"
    spec = importlib.util.spec_from_file_location("kernel_ratios_load", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--scale", "0.0005", "--classes", "20", "--repeat", "1", "--only", "margin"])
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("peak RSS")]
    assert "load average (1, 5, 15 min) at the start" in line and "at the end" in line
