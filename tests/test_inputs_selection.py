"""Bad input to the score and selection functions over logits in memory (``*_scores``,
``select_*``, ``select_random``) and to their head weight: a ValueError / TypeError saying what
is wrong and where, never a crash or a silently wrong answer. The same rules over the other pool
forms (memmaps, chunks, shards) are in test_inputs_pools.py; BalancedSelector's in
test_inputs_selector.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import alscale
import reference as ref

GOOD = np.random.default_rng(0).normal(size=(10, 4))
RNG = np.random.default_rng(7)
X = RNG.standard_normal((40, 5))
W = RNG.standard_normal((5, 3))


def _select(fn):
    return lambda x, **kw: fn(x, 3, **kw)


# every function taking logits, called with whatever else it needs
LOGITS_FUNCS = {
    "margin_scores": alscale.margin_scores,
    "confidence_scores": alscale.confidence_scores,
    "entropy_scores": alscale.entropy_scores,
    "boundary_scores": alscale.boundary_scores,
    "select_margin": _select(alscale.select_margin),
    "select_confidence": _select(alscale.select_confidence),
    "select_entropy": _select(alscale.select_entropy),
    "select_boundary": _select(alscale.select_boundary),
    "select_balanced": _select(alscale.select_balanced),
}
WEIGHT_FUNCS = ["boundary_scores", "select_boundary", "select_balanced"]
SELECT_FUNCS = {
    "select_margin": alscale.select_margin,
    "select_confidence": alscale.select_confidence,
    "select_entropy": alscale.select_entropy,
    "select_boundary": alscale.select_boundary,
    "select_balanced": alscale.select_balanced,
}

funcs = pytest.mark.parametrize("name", sorted(LOGITS_FUNCS))
kinds = pytest.mark.parametrize("kind", ["numpy", "torch"])


def as_kind(a, kind):
    return torch.from_numpy(np.ascontiguousarray(a)) if kind == "torch" else a


@funcs
@kinds
@pytest.mark.parametrize("shape", [(10,), (2, 3, 4), ()])
def test_logits_must_be_2d(name, kind, shape):
    x = as_kind(np.zeros(shape), kind)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        LOGITS_FUNCS[name](x)


@funcs
@kinds
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "uint8"])
def test_logits_must_be_floating(name, kind, dtype):
    x = as_kind(np.ones((5, 3), dtype=dtype), kind)
    with pytest.raises(TypeError, match="floating"):
        LOGITS_FUNCS[name](x)


@funcs
@kinds
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_or_inf_names_first_bad_row(name, kind, bad, num_threads, dtype):
    x = np.random.default_rng(1).normal(size=(50, 6)).astype(dtype)
    x[7, 0] = bad
    x[3, 5] = bad
    x[40, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf.*row 3\b|row 3\b.*NaN or inf") as info:
        LOGITS_FUNCS[name](as_kind(x, kind), num_threads=num_threads)
    assert "row 7" not in str(info.value)


@funcs
def test_nan_in_low_precision_torch(name):
    x = torch.zeros(6, 3, dtype=torch.bfloat16)
    x[4, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        LOGITS_FUNCS[name](x)
    x = np.zeros((6, 3), dtype=np.float16)
    x[2, 2] = np.inf
    with pytest.raises(ValueError, match="row 2"):
        LOGITS_FUNCS[name](x)


@funcs
@kinds
def test_empty_pool(name, kind):
    with pytest.raises(ValueError, match="empty"):
        LOGITS_FUNCS[name](as_kind(np.zeros((0, 4)), kind))


@funcs
@kinds
def test_no_classes(name, kind):
    with pytest.raises(ValueError, match="no classes"):
        LOGITS_FUNCS[name](as_kind(np.zeros((5, 0)), kind))


@pytest.mark.parametrize("name", WEIGHT_FUNCS)
@pytest.mark.parametrize("weight", [np.ones(4), np.ones((3, 2)), np.ones((5, 2)), np.ones((4, 2, 1))],
                         ids=["1d", "too_few_rows", "too_many_rows", "3d"])
def test_bad_weight_shape(name, weight):
    with pytest.raises(ValueError, match="weight"):
        LOGITS_FUNCS[name](GOOD, weight=weight)
    with pytest.raises(ValueError, match="weight"):
        LOGITS_FUNCS[name](torch.from_numpy(GOOD), weight=torch.from_numpy(weight))


@pytest.mark.parametrize("name", WEIGHT_FUNCS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_weight_with_nan(name, bad):
    w = np.ones((4, 3))
    w[2, 1] = bad
    with pytest.raises(ValueError, match="weight"):
        LOGITS_FUNCS[name](GOOD, weight=w)


@pytest.mark.parametrize("name", sorted(SELECT_FUNCS))
def test_negative_budget(name):
    with pytest.raises(ValueError, match="budget must be non-negative"):
        SELECT_FUNCS[name](GOOD, -1)


@pytest.mark.parametrize("name", sorted(SELECT_FUNCS))
@pytest.mark.parametrize("budget", [2.5, 2.0, "3"])
def test_non_integer_budget(name, budget):
    with pytest.raises(TypeError, match="budget"):
        SELECT_FUNCS[name](GOOD, budget)


@pytest.mark.parametrize("name", sorted(SELECT_FUNCS))
@pytest.mark.parametrize("index", [10, -11, 10**12])
@kinds
def test_exclude_index_out_of_range(name, index, kind):
    exclude = as_kind(np.array([0, index], dtype=np.int64), kind)
    with pytest.raises(ValueError, match="out of range"):
        SELECT_FUNCS[name](as_kind(GOOD, kind), 3, exclude=exclude)


@pytest.mark.parametrize("name", sorted(SELECT_FUNCS))
@pytest.mark.parametrize("length", [0, 9, 11])
def test_exclude_mask_wrong_length(name, length):
    with pytest.raises(ValueError, match="mask"):
        SELECT_FUNCS[name](GOOD, 3, exclude=np.zeros(length, dtype=bool))


def test_select_random_errors():
    with pytest.raises(ValueError, match="budget must be non-negative"):
        alscale.select_random(10, -2)
    with pytest.raises(TypeError, match="budget"):
        alscale.select_random(10, 2.5)
    with pytest.raises(ValueError, match="out of range"):
        alscale.select_random(10, 2, exclude=np.array([10]))
    with pytest.raises(ValueError, match="out of range"):
        alscale.select_random(10, 2, exclude=np.array([-11]))
    with pytest.raises(ValueError, match="mask"):
        alscale.select_random(10, 2, exclude=np.zeros(9, dtype=bool))


# --------------------------------------------------------------------------- exclusions and budgets


def test_only_zeros_and_ones_as_given_look_like_a_mask():
    """[-3, -3, -3] on 3 rows means row 0 three times: indices, not a mask look-alike."""
    x = X[:3]
    assert alscale.select_margin(x, 3, exclude=np.array([-3, -3, -3])).tolist() == \
        alscale.select_margin(x, 3, exclude=np.array([0])).tolist()
    with pytest.raises(ValueError, match="0/1 mask"):
        alscale.select_margin(x, 3, exclude=np.array([0, 0, 1]))


def test_a_01_integer_mask_is_refused_by_random_and_coreset():
    mask01 = (np.arange(10) % 2).astype(np.int32)
    with pytest.raises(ValueError, match="0/1 mask"):
        alscale.select_random(10, 2, exclude=mask01, seed=0)
    with pytest.raises(ValueError, match="0/1 mask"):
        alscale.select_coreset(RNG.standard_normal((10, 2)), 2, exclude=mask01)


def test_exclude_indices_beyond_int64_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        alscale.select_margin(X, 3, exclude=np.array([2**64 - 1], dtype=np.uint64))


def test_reference_agrees_on_negative_exclusions():
    scores = ref.margin_scores(X)
    assert ref.topk_smallest(scores, 5, exclude=[-1]).tolist() == alscale.select_margin(X, 5, exclude=[-1]).tolist()


def test_a_budget_beyond_int64_is_clipped():
    x = np.random.default_rng(0).normal(size=(10, 3))
    assert alscale.select_margin(x, 2**64).tolist() == alscale.select_margin(x, 10).tolist()


# --------------------------------------------------------------------------- head weights


def test_weights_with_no_features_or_all_zero_are_refused():
    with pytest.raises(ValueError, match="weight has no features"):
        alscale.select_balanced(X, 5, weight=np.zeros((5, 0)))
    with pytest.raises(ValueError, match="weight is all zeros"):
        alscale.select_boundary(X, 5, weight=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="weight contains NaN or inf at row 2"):
        w = W.copy()
        w[2, 1] = np.inf
        alscale.boundary_scores(X, weight=w)


@pytest.mark.parametrize("exponent", [-1070, -600, 600, 1000])
def test_a_tiny_or_huge_weight_ranks_as_its_unscaled_self(exponent):
    """Scaling the head by 2^e scales every r_c by 2^-e: the same picks, in the same order. A
    subnormal head used to give +inf for every score (so every row tied)."""
    w0 = RNG.integers(-4, 5, (5, 3)).astype(np.float64)
    w = np.ldexp(w0, exponent)
    for fn in (alscale.select_boundary, alscale.select_balanced):
        assert fn(X, 12, weight=w).tolist() == fn(X, 12, weight=w0).tolist()
    got = alscale.boundary_scores(X, weight=w)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, np.ldexp(alscale.boundary_scores(X, weight=w0), -exponent))
    assert np.isinf(got).all() == (exponent < -1000)  # the true values beyond float64 are inf


def test_inverse_norms_kernel_is_the_reference_and_thread_independent():
    """csrc/head.cpp: the Gram matrix in lane order, direct norms where it cancels, no BLAS."""
    from alscale import _core

    rng = np.random.default_rng(3)
    for C, D in [(1, 1), (2, 3), (33, 7), (70, 40)]:  # 70 rows: several tiles, a ragged last one
        w = rng.standard_normal((C, D))
        if C > 4:
            w[3] = w[1]
            w[4] = w[2] * (1 + 2e-16)
        expected = ref.inverse_norms(w, C)
        for threads in (1, 2):
            got = _core.inverse_norms(w, threads)
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_array_equal(got, got.T)


def test_nearly_equal_and_huge_head_rows():
    # ||w_0 - w_1|| = 1e-4: the Gram formula cancels to 0 here; the norm must still be right
    w = np.array([[1e4, 0.0], [1e4 + 1e-4, 0.0], [0.0, 1e8]])
    x = np.array([[1.0, 0.99999, -1e9], [0.99999, 1.0, -1e9]])  # the near pair decides the minimum
    got = alscale.boundary_scores(x, weight=w)
    # the distances computed the long way: ||w_p - w_c|| directly, no Gram matrix
    p = x.argmax(axis=1)
    direct = [min((x[i, p[i]] - x[i, c]) / np.linalg.norm(w[p[i]] - w[c]) for c in range(3) if c != p[i])
              for i in range(2)]
    assert got == pytest.approx(direct, rel=1e-9)
    assert np.array_equal(got, ref.boundary_scores(x, w))
    sel = alscale.BalancedSelector(3, 1, weight=w).update(x)  # a pair at 1e-4 is not "the same row"
    assert sel.result().tolist() == alscale.select_balanced(x, 1, weight=w).tolist()
    # weights whose Gram matrix would overflow: same picks as the same weights scaled down
    big = np.array([[1e200, 0.0], [0.0, 1e200], [1e200, 1e200]])
    z = np.random.default_rng(1).normal(size=(50, 3))
    assert np.array_equal(alscale.select_balanced(z, 9, weight=big), alscale.select_balanced(z, 9, weight=big / 2.0**664))


def test_logits_from_embeddings_names_a_bad_weight_or_bias():
    pytest.importorskip("torch")
    z = RNG.standard_normal((10, 3)).astype(np.float32)
    w = RNG.standard_normal((4, 3))
    w[2, 0] = np.nan
    with pytest.raises(ValueError, match="weight contains NaN or inf at row 2"):
        alscale.logits_from_embeddings(z, w)
    with pytest.raises(ValueError, match="bias contains NaN or inf at class 1"):
        alscale.logits_from_embeddings(z, np.ones((4, 3)), np.array([0.0, np.inf, 0.0, 0.0]))


# --------------------------------------------------------------------------- devices, threads, memory, imports


def test_meta_device_tensors_are_refused_clearly():
    torch = pytest.importorskip("torch")
    meta = torch.empty((5, 3), device="meta")
    for call in (lambda: alscale.select_margin(meta, 2), lambda: alscale.select_balanced(meta, 2),
                 lambda: alscale.margin_scores(meta), lambda: alscale.select_boundary(np.eye(3), 1, weight=meta[:3])):
        with pytest.raises(ValueError, match="meta-device tensor"):
            call()


@pytest.mark.parametrize("call", [
    lambda x: alscale.select_margin(x, 3, num_threads=2**31 - 1),
    lambda x: alscale.select_balanced(x, 3, num_threads=2**40),
])
def test_absurd_thread_counts_are_refused_by_selection(call):
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="num_threads"):
        call(x)


def test_allocation_failure_in_a_kernel_is_a_memory_error_not_an_abort():
    code = (
        "import numpy as np, alscale\n"
        "x = np.broadcast_to(np.zeros(1, np.float16), (1, 2**40))\n"
        "try:\n"
        "    alscale.margin_scores(x)\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "MemoryError"


def test_library_import_does_not_import_torch():
    import subprocess

    code = "import sys, alscale; alscale.select_margin(__import__('numpy').eye(3), 1); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_one_dtype_enum_for_the_cpu_and_cuda_kernels():
    """The dtype code the bindings pass through is one enum (csrc/dtype.hpp), read by the CPU
    kernels and the CUDA kernels alike; alscale._core.DType exports its numbering."""
    import pathlib
    import re

    from alscale import _core

    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "csrc").is_dir():
        pytest.skip("needs the source tree")
    sources = sorted(p for d in ("csrc", "cuda") for p in (root / d).rglob("*") if p.suffix in {".hpp", ".cpp", ".cuh", ".cu"})
    defined = [p.relative_to(root).as_posix() for p in sources if "enum class DType" in p.read_text()]
    assert defined == ["csrc/dtype.hpp"]
    codes = dict(re.findall(r"(\w+) = (\d+)", (root / "csrc/dtype.hpp").read_text()))
    assert {k: int(v) for k, v in codes.items()} == {k: int(getattr(_core.DType, k)) for k in ("f16", "bf16", "f32", "f64")}
    assert '#include "dtype.hpp"' in (root / "cuda/common.cuh").read_text()
