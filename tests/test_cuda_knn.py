"""The tensor-core kNN graph (cuda/knn_tc.cu) against the CPU kernel: the same indices and the
same similarity bits on every input (random, clustered, tied, duplicate-heavy, nearly tied),
every precision, large D, k edge cases, N not a multiple of the tiles. The GPU cases skip
without a GPU (as tests/test_cuda.py); the argument checks that need no device run everywhere.
The algorithm itself is specified and tested on the CPU in tests/test_knn_bound.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alscale
from alscale._backend import device as _gpu

torch = pytest.importorskip("torch")

from test_knn_bound import KINDS, ROUND, coherent_rows, cpu_dots, points  # noqa: E402  (the CPU specification)

from test_cuda import HAS_GPU, needs_build, needs_gpu  # noqa: E402  (one definition of the skips)
PRECISIONS = ("bf16", "tf32", "fp32", "auto")


def _same_graph(x, k, precision):
    """The device graph of x (numpy float64) equals the CPU graph bit for bit."""
    i_cpu, s_cpu = alscale.knn_graph(x, k)
    i_gpu, s_gpu = _gpu.knn_graph(torch.from_numpy(x).cuda(), k, precision)
    assert i_gpu.device.type == "cuda" and i_gpu.dtype == torch.int64 and s_gpu.dtype == torch.float32
    np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
    assert s_gpu.cpu().numpy().tobytes() == s_cpu.tobytes()


# ---- everywhere: the arguments ----


@pytest.mark.parametrize("precision", ["fp16", "", None, 1, "TF32"])
def test_bad_precision_is_refused_before_anything_runs(precision):
    with pytest.raises(ValueError, match="precision must be 'auto', 'fp32', 'tf32' or 'bf16'"):
        _gpu.knn_graph(object(), 1, precision)


@needs_build
def test_cuda_module_exposes_the_tensor_core_knn():
    from alscale import _cuda

    assert callable(_cuda.knn_tc)
    for k in (1, 20, 32, 64, 128):
        cap = _cuda.knn_tc_capacity(k)
        assert cap % 32 == 0 and cap - cap // 4 > k and 128 <= cap <= 256


@needs_build
def test_knn_tc_argument_errors():
    from alscale import _cuda

    with pytest.raises(ValueError, match="precision must be 0 \\(bf16\\) or 1 \\(tf32\\)"):
        _cuda.knn_tc(8, 10, 4, 2, 2, 8, 8, 0, 0)
    with pytest.raises(ValueError, match="null device pointer"):
        _cuda.knn_tc(0, 10, 4, 2, 0, 8, 8, 0, 0)


# ---- on a GPU ----


@needs_gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("n, d, k", [(2, 1, 1), (3, 5, 2), (65, 3, 64), (129, 17, 128), (1000, 64, 20),
                                     (4097, 128, 10), (5000, 33, 1), (3000, 700, 20), (1500, 1536, 5)])
def test_random_points_match_cpu(n, d, k, precision):
    x = np.random.default_rng(n * 1000 + d).normal(size=(n, d))
    x[n // 2] = x[0]  # an exact duplicate: a tie
    _same_graph(x, k, precision)


@needs_gpu
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(KINDS), st.integers(2, 3000), st.integers(1, 300), st.integers(1, 128),
       st.integers(0, 2**32 - 1), st.sampled_from(PRECISIONS[:3]))
def test_every_kind_of_input_matches_cpu(kind, n, d, k, seed, precision):
    _same_graph(points(kind, n, d, seed), min(k, n - 1), precision)


@needs_gpu
@pytest.mark.parametrize("precision", ["bf16", "tf32"])
@pytest.mark.parametrize("kind", ["gauss", "coherent"])
def test_tensor_cores_stay_within_the_bound(precision, kind):
    """The bound's model of the hardware (exact products of the rounded operands, float32
    accumulation that may truncate, any order) checked on this GPU's tensor cores: the operands
    rounded as the kernel rounds them (bf16 values are exact in TF32), multiplied by cuBLAS in
    TF32 mode with float32 output, against the CPU kernel's similarities."""
    from alscale import _core

    d = 256
    if kind == "gauss":
        unit = alscale._backend.arrays.unit_rows(np.random.default_rng(11).normal(size=(1500, d)))
    else:
        unit = coherent_rows(precision, d, 64).astype(np.float32)
    s = cpu_dots(unit, unit).astype(np.float64)
    a = torch.from_numpy(ROUND[precision](unit)).cuda()
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        shat = (a @ a.T).double().cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    assert np.abs(shat - s).max() <= _core.knn_candidate_bound(d, precision)


@needs_gpu
@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_overflowing_rows_fall_back_and_still_match(precision):
    """300 copies of one row (and noise around another): every copy has 299 points at exactly its
    k-th similarity, more than any candidate list holds, so those rows take the exact fallback."""
    from alscale import _cuda

    rng = np.random.default_rng(7)
    x = np.concatenate([np.repeat(rng.normal(size=(1, 48)), 300, axis=0),
                        rng.normal(size=(1, 48)) + rng.normal(scale=1e-6, size=(400, 48)),
                        rng.normal(size=(2000, 48))])
    _same_graph(x, 10, precision)
    unit = torch.from_numpy(alscale._backend.arrays.unit_rows(x)).cuda()
    n, d = unit.shape
    idx = torch.empty(n * 10, dtype=torch.int64, device="cuda")
    sim = torch.empty(n * 10, dtype=torch.float32, device="cuda")
    fell = _cuda.knn_tc(unit.data_ptr(), n, d, 10, 0 if precision == "bf16" else 1, idx.data_ptr(), sim.data_ptr(),
                        torch.cuda.current_stream().cuda_stream, unit.device.index)
    assert 300 <= fell < n


@needs_gpu
def test_every_output_is_written_and_runs_agree():
    """Outputs poisoned first; two runs (whose candidate lists may differ with the atomics' order)
    give the same graph."""
    from alscale import _cuda

    x = np.random.default_rng(3).normal(size=(3333, 96))
    unit = torch.from_numpy(alscale._backend.arrays.unit_rows(x)).cuda()
    n, d = unit.shape
    outs = []
    for _ in range(2):
        idx = torch.full((n * 16,), -7, dtype=torch.int64, device="cuda")
        sim = torch.full((n * 16,), float("nan"), dtype=torch.float32, device="cuda")
        _cuda.knn_tc(unit.data_ptr(), n, d, 16, 1, idx.data_ptr(), sim.data_ptr(),
                     torch.cuda.current_stream().cuda_stream, unit.device.index)
        outs.append((idx.cpu().numpy(), sim.cpu().numpy()))
    assert (outs[0][0] >= 0).all() and not np.isnan(outs[0][1]).any()
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1].tobytes() == outs[1][1].tobytes()


@needs_gpu
def test_side_stream_and_input_dtypes():
    x = torch.randn(5000, 64, generator=torch.Generator().manual_seed(4))
    i_cpu, s_cpu = alscale.knn_graph(x, 8)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        i_gpu, s_gpu = alscale.knn_graph(x.cuda(), 8)  # "auto": the TF32 kernel at this size
    s.synchronize()
    np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
    np.testing.assert_array_equal(s_gpu.cpu().numpy(), s_cpu)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        xd = x.to(dtype)
        np.testing.assert_array_equal(alscale.knn_graph(xd.cuda(), 8)[0].cpu().numpy(), alscale.knn_graph(xd, 8)[0])


@needs_gpu
def test_bad_input_errors_on_the_device():
    x = torch.randn(100, 8)
    x[17, 3] = float("nan")
    with pytest.raises(ValueError, match="row 17"):
        alscale.knn_graph(x.cuda(), 3)
    y = torch.randn(100, 8)
    y[5] = 0
    with pytest.raises(ValueError, match="row 5 has zero norm"):
        alscale.knn_graph(y.cuda(), 3)
    with pytest.raises(ValueError, match="k must be less than the number of points"):
        alscale.knn_graph(torch.randn(10, 4).cuda(), 10)
    with pytest.raises(ValueError, match="at most 128 neighbours"):
        alscale.knn_graph(torch.randn(500, 4).cuda(), 129)
