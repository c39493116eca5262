"""The GPU build: dispatch, interop parsing and errors (run everywhere), and every CUDA kernel
against the CPU kernel on the same inputs (identical indices; run only where a GPU is visible).

The GPU kernels reproduce the CPU kernels' float operations in the same order, so scores are
compared for equality, with one documented exception: the entropy's log(s) (the CPU calls the C
library's logf, the GPU a correctly rounded one), compared to 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

import alscale
from alscale._backend import device as _gpu

torch = pytest.importorskip("torch")

HAS_GPU = alscale.HAS_CUDA and torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(
    not HAS_GPU,
    reason="no CUDA device visible (torch.cuda.is_available() is False) or no GPU build (alscale.HAS_CUDA is False)",
)
needs_build = pytest.mark.skipif(not alscale.HAS_CUDA, reason="alscale was built without its CUDA kernels (alscale._cuda)")


class FakeDeviceArray:
    """An object exposing __cuda_array_interface__ (and a CuPy-like .device.id)."""

    class _Dev:
        def __init__(self, i):
            self.id = i

    def __init__(self, shape=(4, 3), typestr="<f4", strides=None, device=0, ptr=0x1000):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3}
        self.device = self._Dev(device)


# ---- everywhere: flags, parsing, errors ----


def test_has_cuda_is_a_bool():
    assert isinstance(alscale.HAS_CUDA, bool)
    assert "HAS_CUDA" in alscale.__all__


@needs_build
def test_cuda_module_exposes_the_kernels():
    from alscale import _cuda

    for name in ("uncertainty_scores", "boundary_scores", "select_topk", "select_balanced", "knn_exact",
                 "device_count", "pointer_device"):
        assert callable(getattr(_cuda, name)), name
    assert isinstance(_cuda.device_count(), int) and _cuda.device_count() >= 0
    assert _cuda.knn_max_k >= 20


@needs_build
@pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a usable GPU")
def test_kernels_raise_without_a_device():
    from alscale import _cuda

    if _cuda.device_count() > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="CUDA error"):
        _cuda.uncertainty_scores(0x1000, 4, 3, 3, 1, 2, 0, 0x2000, 0, 0)
    with pytest.raises(ValueError, match="dtype"):
        _cuda.uncertainty_scores(0x1000, 4, 3, 3, 1, 9, 0, 0x2000, 0, 0)


def test_parse_interface_fills_c_strides():
    cai = _gpu.parse_interface({"shape": (5, 3), "typestr": "<f4", "data": (1234, True), "version": 3}, "x")
    assert cai.ptr == 1234 and cai.readonly and cai.shape == (5, 3)
    assert cai.strides == (12, 4) and cai.itemsize == 4 and cai.kind == "f"
    t = _gpu.parse_interface({"shape": (5, 3), "typestr": "<f8", "data": (8, False), "strides": (8, 40)}, "x")
    assert t.strides == (8, 40)  # a transposed (column-major) view
    e = _gpu.parse_interface({"shape": (0, 3), "typestr": "<f2", "data": (0, False)}, "x")
    assert e.shape == (0, 3) and e.strides == (6, 2)


@pytest.mark.parametrize(
    "cai, error, match",
    [
        ({"shape": (2, 2), "typestr": "<f4"}, ValueError, "no 'data'"),
        ({"shape": (2, 2), "typestr": "<f4", "data": (8, False), "mask": object()}, ValueError, "masked"),
        ({"shape": (2, 2), "typestr": ">f4", "data": (8, False)}, TypeError, "big-endian"),
        ({"shape": (2, 2), "typestr": "float", "data": (8, False)}, ValueError, "typestr"),
        ({"shape": (2, 2), "typestr": "<f4", "data": 8}, ValueError, "tuple"),
        ({"shape": (2, 2), "typestr": "<f4", "data": (0, False)}, ValueError, "null"),
        ({"shape": (2, 2), "typestr": "<f4", "data": (8, False), "strides": (4,)}, ValueError, "strides"),
        ({"shape": (-1, 2), "typestr": "<f4", "data": (8, False)}, ValueError, "negative"),
        ([1, 2], TypeError, "dict"),
    ],
)
def test_parse_interface_errors(cai, error, match):
    with pytest.raises(error, match=match):
        _gpu.parse_interface(cai, "logits")


def test_device_array_detection():
    assert _gpu.is_device_array(FakeDeviceArray())
    assert not _gpu.is_device_array(np.zeros((2, 2)))
    assert not _gpu.is_device_array(torch.zeros(2, 2))
    assert not _gpu.wants(np.zeros((2, 2)))
    assert not _gpu.wants(torch.zeros(2, 2))


def test_device_array_without_gpu_build_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_gpu, "_cuda", None)
    with pytest.raises(ValueError, match="no GPU kernels"):
        alscale.margin_scores(FakeDeviceArray())
    with pytest.raises(ValueError, match="no GPU kernels"):
        alscale.select_balanced(FakeDeviceArray(), 2)
    with pytest.raises(ValueError, match="no GPU kernels"):
        alscale.knn_graph(FakeDeviceArray(), 1)


@needs_build
def test_unknown_device_array_kind_is_a_clear_error():
    with pytest.raises(TypeError, match="torch tensors and CuPy arrays"):
        alscale.select_margin(FakeDeviceArray(), 2)


def test_mixed_devices_are_refused():
    with pytest.raises(ValueError, match="exclude is on cuda:1 but logits are on cuda:0"):
        _gpu.check_same_device("exclude", FakeDeviceArray(device=1), 0)
    _gpu.check_same_device("weight", FakeDeviceArray(device=0), 0)  # same device: fine
    _gpu.check_same_device("weight", np.zeros((2, 2)), 0)  # host data: fine (copied)


def test_no_gpu_warning_without_a_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert alscale._gpu_visible() is False


# ---- on a GPU: every kernel against the CPU kernel ----

DTYPES = ["float16", "bfloat16", "float32", "float64"]


def _logits(rows, classes, dtype, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many equal scores, ties everywhere
        x = torch.randint(-3, 4, (rows, classes), generator=g).double()
    else:
        x = torch.randn(rows, classes, generator=g, dtype=torch.float64) * 4
    return x.to(getattr(torch, dtype))


def _same(gpu, cpu):
    assert gpu.device.type == "cuda"
    g, c = gpu.cpu().numpy(), cpu.numpy()
    assert g.dtype == c.dtype and g.shape == c.shape
    np.testing.assert_array_equal(g, c)


SHAPES = [(1, 1), (5, 1), (37, 2), (100, 7), (257, 9), (1000, 100), (3000, 1000)]


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ties", [False, True])
def test_scores_match_cpu(dtype, shape, ties):
    cpu = _logits(*shape, dtype, seed=shape[0] + shape[1], ties=ties)
    gpu = cpu.cuda()
    for fn in (alscale.margin_scores, alscale.confidence_scores, alscale.boundary_scores):
        _same(fn(gpu), fn(cpu))
    w = torch.randn(shape[1], 16, dtype=torch.float64)
    _same(alscale.boundary_scores(gpu, weight=w.cuda()), alscale.boundary_scores(cpu, weight=w))
    # entropy: log(s) may differ in its last bit (the C library's logf vs a correctly rounded log)
    e_gpu, e_cpu = alscale.entropy_scores(gpu).cpu().numpy(), alscale.entropy_scores(cpu).numpy()
    np.testing.assert_allclose(e_gpu, e_cpu, rtol=1e-6 if dtype != "float64" else 1e-14, atol=1e-6)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_logits_match_cpu(dtype):
    base = _logits(600, 300, dtype, seed=3)
    views = [lambda t: t[::3, ::2], lambda t: t.t()[:, :250], lambda t: t[10:400, 5:]]
    for view in views:
        cpu, gpu = view(base), view(base.cuda())
        _same(alscale.margin_scores(gpu), alscale.margin_scores(cpu))
        _same(alscale.select_balanced(gpu, 40), alscale.select_balanced(cpu, 40))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True])
def test_selections_match_cpu(dtype, ties):
    cpu = _logits(4000, 50, dtype, seed=11, ties=ties)
    gpu = cpu.cuda()
    w = torch.randn(50, 8, dtype=torch.float64)
    rng = np.random.default_rng(0)
    mask = rng.random(4000) < 0.3
    for exclude_cpu, exclude_gpu in [(None, None), (mask, torch.from_numpy(mask).cuda()),
                                     (np.flatnonzero(mask), torch.from_numpy(np.flatnonzero(mask)).cuda()),
                                     (np.flatnonzero(mask), np.flatnonzero(mask))]:
        for budget in (0, 1, 49, 50, 333, 4000):
            for fn in (alscale.select_margin, alscale.select_confidence, alscale.select_entropy):
                _same(fn(gpu, budget, exclude=exclude_gpu), fn(cpu, budget, exclude=exclude_cpu))
            _same(alscale.select_boundary(gpu, budget, weight=w, exclude=exclude_gpu),
                  alscale.select_boundary(cpu, budget, weight=w, exclude=exclude_cpu))
            _same(alscale.select_balanced(gpu, budget, exclude=exclude_gpu),
                  alscale.select_balanced(cpu, budget, exclude=exclude_cpu))
            _same(alscale.select_balanced(gpu, budget, weight=w.cuda(), exclude=exclude_gpu),
                  alscale.select_balanced(cpu, budget, weight=w, exclude=exclude_cpu))


@needs_gpu
def test_balanced_heavy_ties_multi_pass():
    # Identical rows: every class ranks the rows the same way, so earlier classes take the later
    # classes' candidates and the CPU state needs extra passes; the GPU must follow it exactly.
    cpu = torch.zeros(5000, 40)
    cpu[:, 0] = 1.0
    for budget in (40, 400, 4000, 5000):
        _same(alscale.select_balanced(cpu.cuda(), budget), alscale.select_balanced(cpu, budget))
    cpu = _logits(20000, 3, "float32", seed=5, ties=True)
    for budget in (3, 3000, 19999):
        _same(alscale.select_balanced(cpu.cuda(), budget), alscale.select_balanced(cpu, budget))


@needs_gpu
@pytest.mark.parametrize("shape", [(70000, 10), (50000, 1000)])
def test_balanced_many_chunks_match_cpu(shape):
    # Pools larger than one candidate chunk: bounds tightened chunk after chunk.
    cpu = _logits(*shape, "float32", seed=7)
    for budget in (shape[1], 10 * shape[1], 3333):
        _same(alscale.select_balanced(cpu.cuda(), budget), alscale.select_balanced(cpu, budget))


@needs_gpu
def test_non_finite_rows_report_the_cpu_row():
    cpu = _logits(500, 20, "float32", seed=1)
    cpu[123, 4] = float("nan")
    cpu[321, 0] = float("inf")
    for fn in (alscale.margin_scores, alscale.boundary_scores):
        with pytest.raises(ValueError, match="at row 123"):
            fn(cpu.cuda())
    with pytest.raises(ValueError, match="at row 123"):
        alscale.select_balanced(cpu.cuda(), 10)
    with pytest.raises(ValueError, match="at row 321"):  # excluded rows are not read
        alscale.select_balanced(cpu.cuda(), 10, exclude=[123])


@needs_gpu
@pytest.mark.parametrize("n, d, k", [(2, 1, 1), (50, 3, 5), (1000, 17, 20), (3000, 128, 64), (700, 64, 128)])
def test_knn_graph_matches_cpu(n, d, k):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g)
    x[n // 2] = x[0]  # an exact duplicate: a tie
    i_cpu, s_cpu = alscale.knn_graph(x, k)
    i_gpu, s_gpu = alscale.knn_graph(x.cuda(), k)
    assert i_gpu.device.type == "cuda"
    np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
    np.testing.assert_array_equal(s_gpu.cpu().numpy(), s_cpu)


@needs_gpu
def test_results_on_the_input_device_and_stream():
    cpu = _logits(300, 10, "float32", seed=2)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        gpu = cpu.cuda()
        out = alscale.select_balanced(gpu, 10)
        scores = alscale.margin_scores(gpu)
    s.synchronize()
    assert out.device == gpu.device and out.dtype == torch.int64
    assert scores.device == gpu.device and scores.dtype == torch.float64
    _same(out, alscale.select_balanced(cpu, 10))


@needs_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_mixed_devices_on_two_gpus():
    x = _logits(100, 5, "float32", seed=0).to("cuda:0")
    with pytest.raises(ValueError, match="exclude is on cuda:1 but logits are on cuda:0"):
        alscale.select_margin(x, 5, exclude=torch.zeros(100, dtype=torch.bool, device="cuda:1"))
    with pytest.raises(ValueError, match="weight is on cuda:1"):
        alscale.select_balanced(x, 5, weight=torch.randn(5, 3, device="cuda:1"))


@needs_gpu
def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    cpu = _logits(400, 12, "float32", seed=4).numpy()
    gpu = cupy.asarray(cpu)
    out = alscale.select_balanced(gpu, 24)
    assert isinstance(out, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(out), alscale.select_balanced(cpu, 24))
    np.testing.assert_array_equal(cupy.asnumpy(alscale.margin_scores(gpu)), alscale.margin_scores(cpu))


@needs_gpu
def test_gpu_nan_rule_and_sign_of_zero_match_the_cpu():
    """A NaN in an excluded row raises on the GPU as on the CPU; a row whose maximum is -0 scores
    +0 on both (csrc/rowmath_common.hpp's 0 + max)."""
    x = np.random.default_rng(12).normal(size=(10, 4))
    x[3, 1] = np.nan
    mask = np.zeros(10, dtype=bool)
    mask[3] = True
    for fn in (alscale.select_balanced, alscale.select_margin):
        with pytest.raises(ValueError, match="NaN or inf at row 3"):
            fn(torch.tensor(x).cuda(), 4, exclude=torch.tensor(mask).cuda())
    z = np.resize([-0.0, 0.0, -1.0], (4, 12))
    assert alscale.boundary_scores(torch.tensor(z).cuda()).cpu().numpy().tobytes() == alscale.boundary_scores(z).tobytes()


# ---- issue 12: BASE served on the device, the head weight on the device ----


def _weight(classes, dims, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, dims, generator=g, dtype=torch.float64) * scale
    if classes > 3:
        w[2] = w[1]  # equal rows: +inf norm, the same on both
        w[3] = w[0] + 1e-9 * scale  # nearly equal rows: the Gram formula cancels, the direct distance
    return w.to(getattr(torch, dtype))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classes", [1, 3, 37, 1000])
@pytest.mark.parametrize("weight_at", [None, "host", "device"])
def test_balanced_served_on_device_matches_cpu(dtype, classes, weight_at):
    """Budgets from 1 past N, with exclusions and ties: the device's serving gives the CPU's rows
    in the CPU's order, with W absent, on the host or on the device (read in place, any dtype)."""
    n = 3000 if classes < 1000 else 12000
    for ties in (False, True):
        cpu = _logits(n, classes, dtype, seed=classes + n, ties=ties)
        gpu = cpu.cuda()
        w = None if weight_at is None else _weight(classes, 24, dtype, seed=classes)
        w_gpu = None if w is None else (w.cuda() if weight_at == "device" else w)
        mask = np.random.default_rng(classes).random(n) < 0.2
        for exclude_cpu, exclude_gpu in [(None, None), (mask, torch.from_numpy(mask).cuda())]:
            for budget in (0, 1, classes - 1, classes, 7 * classes + 3, n // 2, n, n + 10):
                got = alscale.select_balanced(gpu, budget, weight=w_gpu, exclude=exclude_gpu)
                _same(got, alscale.select_balanced(cpu, budget, weight=w, exclude=exclude_cpu))


@needs_gpu
@pytest.mark.parametrize("weight_at", [None, "device"])
def test_balanced_device_forced_passes(weight_at):
    """Every score tied (identical rows): later classes starve and the host runs the next passes;
    the picks of all passes land in order in the device output, B up to past N."""
    for n, classes in [(5000, 40), (300, 100), (2000, 7)]:
        cpu = torch.zeros(n, classes)
        cpu[:, 0] = 1.0
        w = None if weight_at is None else _weight(classes, 8, "float32", seed=1)
        w_gpu = None if w is None else w.cuda()
        mask = np.zeros(n, bool)
        mask[::7] = True
        for exclude in (None, mask):
            ex_gpu = None if exclude is None else torch.from_numpy(exclude).cuda()
            for budget in (classes, 10 * classes, n - 1, n, n + 3):
                want = alscale.select_balanced(cpu, budget, weight=w, exclude=exclude)
                _same(alscale.select_balanced(cpu.cuda(), budget, weight=w_gpu, exclude=ex_gpu), want)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classes, dims", [(2, 1), (33, 7), (100, 64), (130, 200), (517, 1000)])
def test_head_norms_on_device_match_cpu(dtype, classes, dims):
    """The device's inverse norms (tile Gram in the CPU's lane order, cancellation branch, +inf
    for equal rows) give the CPU's boundary scores bit for bit; W strided or transposed."""
    cpu = _logits(2000, classes, "float64", seed=dims)
    gpu = cpu.cuda()
    w = _weight(classes, dims, dtype, seed=classes * dims)
    want = alscale.boundary_scores(cpu, weight=w)
    _same(alscale.boundary_scores(gpu, weight=w.cuda()), want)
    _same(alscale.boundary_scores(gpu, weight=w), want)  # host weight: copied once, computed on the device
    wide = torch.zeros(classes, 2 * dims, dtype=w.dtype)
    wide[:, ::2] = w
    _same(alscale.boundary_scores(gpu, weight=wide.cuda()[:, ::2]), want)  # strided view
    _same(alscale.boundary_scores(gpu, weight=w.t().contiguous().cuda().t()), want)  # column-major
    _same(alscale.select_boundary(gpu, 50, weight=w.cuda()), alscale.select_boundary(cpu, 50, weight=w))


@needs_gpu
@pytest.mark.parametrize("scale", [2.0**600, 2.0**-600, 2.0**1000, 2.0**-1000])
def test_head_norms_on_device_shift_matches_cpu(scale):
    """Heads beyond 2^±400: scaled by 2^-e on the device as norms_of does; the true values
    replace the table when they stay normal, else the scores carry the shift: same bits."""
    cpu = _logits(500, 20, "float64", seed=3)
    w = _weight(20, 9, "float64", seed=4, scale=scale)
    _same(alscale.boundary_scores(cpu.cuda(), weight=w.cuda()), alscale.boundary_scores(cpu, weight=w))
    _same(alscale.select_balanced(cpu.cuda(), 60, weight=w.cuda()), alscale.select_balanced(cpu, 60, weight=w))


@needs_gpu
def test_head_norms_on_device_many_classes():
    """From 8,192 classes the CPU uses the pair form (bf16 lower bounds + exact pairs); the device
    keeps the C x C table: the same values, so the same selection."""
    cpu = _logits(3000, 9000, "float32", seed=9)
    w = _weight(9000, 16, "float32", seed=9)
    for budget in (1, 9000, 20000):
        _same(alscale.select_balanced(cpu.cuda(), budget, weight=w.cuda()), alscale.select_balanced(cpu, budget, weight=w))


@needs_gpu
def test_device_weight_errors_are_the_cpu_errors():
    cpu = _logits(100, 6, "float32", seed=0)
    gpu = cpu.cuda()
    bad = torch.randn(6, 4)
    bad[3, 2] = float("nan")
    zeros = torch.zeros(6, 4)
    for w, match in [(bad, "weight contains NaN or inf at row 3"), (zeros, "weight is all zeros"),
                     (torch.randn(5, 4), "weight has 5 rows but the logits have 6 classes"),
                     (torch.randn(6, 0), "weight has no features"), (torch.randn(6), "weight must be 2-D")]:
        for fn in (lambda w_: alscale.select_balanced(gpu, 5, weight=w_),
                   lambda w_: alscale.boundary_scores(gpu, weight=w_)):
            with pytest.raises(ValueError, match=match):
                fn(w.cuda())
            with pytest.raises(ValueError, match=match):
                alscale.select_balanced(cpu, 5, weight=w)
    # a bad weight is reported before bad logits, as on the CPU
    nan_logits = cpu.clone()
    nan_logits[7, 1] = float("nan")
    with pytest.raises(ValueError, match="weight contains NaN"):
        alscale.select_balanced(nan_logits.cuda(), 5, weight=bad.cuda())
    with pytest.raises(ValueError, match="weight contains NaN"):
        alscale.select_balanced(nan_logits, 5, weight=bad)


@needs_gpu
def test_balanced_output_is_a_device_tensor_on_the_callers_stream():
    cpu = _logits(5000, 50, "bfloat16", seed=6)
    w = _weight(50, 32, "bfloat16", seed=6)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = alscale.select_balanced(cpu.cuda(), 500, weight=w.cuda())
    s.synchronize()
    assert out.device.type == "cuda" and out.dtype == torch.int64 and out.shape == (500,)
    _same(out, alscale.select_balanced(cpu, 500, weight=w))


@needs_gpu
def test_staging_area_regrows_and_serves_threads():
    """The page-locked staging area (one per host thread, grown on demand): calls with growing C
    on one thread, and concurrent calls from two threads, each give the CPU's result."""
    import threading

    for classes in (3, 300, 3000, 30):
        cpu = _logits(4000, classes, "float32", seed=classes)
        _same(alscale.select_balanced(cpu.cuda(), 2 * classes), alscale.select_balanced(cpu, 2 * classes))
    cases = [_logits(20000, c, "float32", seed=c) for c in (50, 700)]
    results, errors = {}, []

    def run(i):
        try:
            with torch.cuda.stream(torch.cuda.Stream()):
                results[i] = [alscale.select_balanced(cases[i].cuda(), 1000).cpu() for _ in range(5)]
        except Exception as e:  # reported below, with the thread's index
            errors.append((i, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, got in results.items():
        want = alscale.select_balanced(cases[i], 1000).numpy()
        for g in got:
            np.testing.assert_array_equal(g.numpy(), want)
