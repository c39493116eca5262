"""16-bit logits (float16, torch bfloat16) in the row kernels (issue 23).

Unit-stride 16-bit rows are converted in native vectors of the dispatched instruction set
(csrc/rowmath.hpp halves_to_float: vcvtph2ps for float16 with AVX-512 / F16C, a widen-and-shift
for bfloat16), and MASE and BASE with the head's table read them one row ahead into two buffers in
turn (csrc/rowmath.hpp RowsAhead).
Every score and pick must be the bits of the same values given as float32, on every instruction
set, at widths around the vector steps (8 and 16 values) and their tails, on 1 and 2 threads.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import alscale
from test_isa import _run

WIDTHS = (1, 7, 8, 9, 15, 16, 17, 31, 33, 130)

SCRIPT = r"""
import sys
import numpy as np
import torch
import alscale

rng = np.random.default_rng(23)
out = {}
for c in WIDTHS:
    x32 = (rng.normal(size=(180, c)) * 4).astype(np.float32)
    x32[::5] = np.round(x32[::5])  # ties
    x32[1::7] = 0.0
    x32[1::7, -1] = -0.0
    x32[3::11] *= 1e-6  # float16 subnormals
    w = rng.normal(size=(c, 6))
    for dt in ("float16", "bfloat16"):
        if dt == "float16":
            x = x32.astype(np.float16)
            exact = x.astype(np.float32)
        else:
            x = torch.from_numpy(x32).to(torch.bfloat16)
            exact = x.float().numpy()
        for name, v in ((dt, x), (dt + "-as-f32", exact)):
            key = f"{c}-{name}"
            for kind in ("margin", "confidence", "entropy"):
                out[f"{key}-{kind}"] = np.asarray(getattr(alscale, f"{kind}_scores")(v))
            out[f"{key}-mase"] = np.asarray(alscale.boundary_scores(v))
            out[f"{key}-mase-w"] = np.asarray(alscale.boundary_scores(v, weight=w))
            for threads in (1, 2):
                for budget in (1, 2 * c + 3):
                    out[f"{key}-base-{budget}-{threads}"] = np.asarray(
                        alscale.select_balanced(v, budget, num_threads=threads))
                    out[f"{key}-base-w-{budget}-{threads}"] = np.asarray(
                        alscale.select_balanced(v, budget, weight=w, num_threads=threads))
np.savez(sys.argv[1], **out)
""".replace("WIDTHS", repr(WIDTHS))

PER_INPUT = 3 + 2 + 2 * 2 * 2  # scores, MASE, BASE (head or none x budgets x threads)


@pytest.mark.parametrize("isa", [None, "avx2", "base"])
def test_half_kernels_give_the_float32_bits_on_every_instruction_set(tmp_path, isa):
    got = _run(tmp_path / "half.npz", isa, SCRIPT)
    assert len(got) == len(WIDTHS) * 4 * PER_INPUT
    for key, value in got.items():
        if "-as-f32" in key:
            continue
        c, dt, rest = key.split("-", 2)
        want = got[f"{c}-{dt}-as-f32-{rest}"]
        assert value.dtype == want.dtype and value.tobytes() == want.tobytes(), (isa, key)


def _every_finite(dtype):
    bits = np.arange(1 << 16, dtype=np.uint16)
    if dtype == "float16":
        v = bits.view(np.float16)
        return v[np.isfinite(v)]
    v = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
    return v[torch.isfinite(v)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("flush", [False, True])
def test_every_finite_16_bit_value_converts_exactly_in_the_vector_path(dtype, flush):
    """Rows of 37 values put column 20 in a whole vector of 8 and of 16 (not the scalar tail):
    each finite value v there, the rest the dtype's lowest, has MASE score v - lowest, exact in
    float64 — also with denormals flushed (MXCSR FTZ and DAZ on the calling thread, which runs a
    one-thread kernel): vcvtph2ps must not read a subnormal half as zero."""
    v = _every_finite(dtype)
    if dtype == "float16":
        x = np.full((len(v), 37), np.finfo(np.float16).min, dtype=np.float16)
        lowest = float(np.finfo(np.float16).min)
        vals = v.astype(np.float64)
    else:
        lowest = float(torch.finfo(torch.bfloat16).min)
        x = torch.full((len(v), 37), lowest, dtype=torch.bfloat16)
        vals = v.double().numpy()
    x[:, 20] = v
    want = np.where(vals > lowest, vals - lowest, 0.0)  # the lowest itself: every class ties
    try:
        assert torch.set_flush_denormal(flush) or not flush
        if flush:  # the thread flushes now: a float32 subnormal becomes 0
            assert float((torch.tensor([1e-39], dtype=torch.float32) * 1.0)[0]) == 0.0
        got = np.asarray(alscale.boundary_scores(x, num_threads=1))
    finally:
        torch.set_flush_denormal(False)  # the default
    assert got.tobytes() == want.tobytes()


def test_kernel_ratios_times_16_bit_logits_against_both_floors(capsys):
    path = Path(__file__).parents[1] / "benchmarks" / "kernel_ratios.py"
    spec = importlib.util.spec_from_file_location("kernel_ratios_dtype", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for dtype in ("float16", "bfloat16"):
        mod.main(["--scale", "0.0005", "--classes", "20", "--repeat", "1", "--only", "margin", "--dtype", dtype])
        out = capsys.readouterr().out.splitlines()
        floors = [ln.split()[0] for ln in out if " ns per logit" in ln and not ln.startswith("margin")]
        assert floors == ["fp32", "int16.sum", "f16.add.reduce", "u32.sum", "u64.or", "2-thread"], out
        (chosen,) = [ln.split()[0] for ln in out if ln.endswith("<- the floor")]
        (line,) = [ln for ln in out if ln.startswith("margin")]
        assert f"x {chosen}:" in line and "x fp32 floor:" in line and "x 2-thread read:" in line, line
    with pytest.raises(SystemExit):
        mod.main(["--dtype", "int8"])
