"""One set of input rules for every form of pool (issue 10): an in-memory array, a memmap, a list
of chunks, a generator, a shard with row_ids — exclusions, row ids, NaN rows and head weights
are checked the same way and give the same answer or the same error."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import alscale

import reference as ref

RNG = np.random.default_rng(7)
X = RNG.standard_normal((40, 5))
W = RNG.standard_normal((5, 3))
SELECT = {
    "margin": lambda x, b, **kw: alscale.select_margin(x, b, **kw),
    "entropy": lambda x, b, **kw: alscale.select_entropy(x, b, **kw),
    "boundary": lambda x, b, **kw: alscale.select_boundary(x, b, weight=W, **kw),
    "balanced": lambda x, b, **kw: alscale.select_balanced(x, b, weight=W, **kw),
    "cluster_margin": lambda x, b, **kw: alscale.select_cluster_margin(x, np.arange(40) % 4, b, seed=3, **kw),
}


def forms(tmp_path, x):
    """The same pool as every input form the selection functions take."""
    path = tmp_path / "pool.npy"
    np.save(path, x)
    return {
        "array": lambda: x,
        "memmap": lambda: np.load(path, mmap_mode="r"),
        "chunks": lambda: [x[:13], x[13:30], x[30:]],
        "chunked": lambda: alscale.chunked(x, 7),
        "generator": lambda: (c for c in (x[:13], x[13:30], x[30:])),
        "row_ids": lambda: x,  # with row_ids=arange: the sharded code path on one process
    }


def call(name, form, make, budget, **kw):
    if form == "row_ids":
        kw["row_ids"] = np.arange(X.shape[0])
    return np.asarray(SELECT[name](make(), budget, **kw))


@pytest.mark.parametrize("name", SELECT)
def test_negative_indices_mean_the_same_wherever_the_length_is_known(tmp_path, name):
    expected = call(name, "array", lambda: X, 9, exclude=np.array([0, 39, 38]))
    for form, make in forms(tmp_path, X).items():
        if form == "generator":
            with pytest.raises(ValueError, match="exclude index -2 is negative, but the pool.s length is not known"):
                call(name, form, make, 9, exclude=np.array([0, -1, -2]))
            continue
        got = call(name, form, make, 9, exclude=np.array([0, -1, -2]))
        assert got.tolist() == expected.tolist(), form


@pytest.mark.parametrize("name", SELECT)
def test_a_01_integer_mask_is_refused_everywhere(tmp_path, name):
    mask01 = (np.arange(40) % 3 == 0).astype(np.int64)
    for form, make in forms(tmp_path, X).items():
        with pytest.raises(ValueError, match="looks like a 0/1 mask.*boolean mask"):
            call(name, form, make, 5, exclude=mask01)
    expected = call(name, "array", lambda: X, 5, exclude=mask01.astype(bool))
    assert call(name, "array", lambda: X, 5, exclude=np.flatnonzero(mask01)).tolist() == expected.tolist()


def test_a_01_integer_mask_is_refused_by_random_and_coreset():
    mask01 = (np.arange(10) % 2).astype(np.int32)
    with pytest.raises(ValueError, match="0/1 mask"):
        alscale.select_random(10, 2, exclude=mask01, seed=0)
    with pytest.raises(ValueError, match="0/1 mask"):
        alscale.select_coreset(RNG.standard_normal((10, 2)), 2, exclude=mask01)


@pytest.mark.parametrize("name", SELECT)
@pytest.mark.parametrize("budget", [0, 1, 40])
def test_repeated_row_ids_are_refused_whatever_the_budget(name, budget):
    ids = np.arange(40)
    ids[17] = 3
    with pytest.raises(ValueError, match="row_ids gives row id 3 to more than one local row"):
        SELECT[name](X, budget, row_ids=ids)


@pytest.mark.parametrize("name", SELECT)
def test_the_nan_error_names_the_pool_row(tmp_path, name):
    bad = X.copy()
    bad[27, 2] = np.nan
    for form, make in forms(tmp_path, bad).items():
        with pytest.raises(ValueError, match=r"NaN or inf at row 27$"):
            call(name, form, make, 5)
    perm = np.random.default_rng(0).permutation(40)  # a shard whose local row 0 is pool row perm[0]
    local = bad[perm]
    with pytest.raises(ValueError, match=rf"NaN or inf at row 27$"):
        SELECT[name]([local[:10], local[10:]], 5, row_ids=perm)


@pytest.mark.parametrize("kind", ["margin", "entropy", "boundary"])
def test_scores_of_chunk_sources_equal_the_in_memory_scores(tmp_path, kind):
    fn = {"margin": alscale.margin_scores, "entropy": alscale.entropy_scores,
          "boundary": lambda x: alscale.boundary_scores(x, weight=W)}[kind]
    expected = fn(X)
    for form, make in forms(tmp_path, X).items():
        if form != "row_ids":
            np.testing.assert_array_equal(fn(make()), expected, err_msg=form)


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


def test_exclude_indices_beyond_int64_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        alscale.select_margin(X, 3, exclude=np.array([2**64 - 1], dtype=np.uint64))


def test_library_import_does_not_import_torch():
    import subprocess

    code = "import sys, alscale; alscale.select_margin(__import__('numpy').eye(3), 1); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reference_agrees_on_negative_exclusions():
    scores = ref.margin_scores(X)
    assert ref.topk_smallest(scores, 5, exclude=[-1]).tolist() == alscale.select_margin(X, 5, exclude=[-1]).tolist()


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


def test_meta_device_tensors_are_refused_clearly():
    torch = pytest.importorskip("torch")
    meta = torch.empty((5, 3), device="meta")
    for call in (lambda: alscale.select_margin(meta, 2), lambda: alscale.select_balanced(meta, 2),
                 lambda: alscale.margin_scores(meta), lambda: alscale.select_boundary(np.eye(3), 1, weight=meta[:3])):
        with pytest.raises(ValueError, match="meta-device tensor"):
            call()


def test_logits_from_embeddings_names_a_bad_weight_or_bias():
    pytest.importorskip("torch")
    z = RNG.standard_normal((10, 3)).astype(np.float32)
    w = RNG.standard_normal((4, 3))
    w[2, 0] = np.nan
    with pytest.raises(ValueError, match="weight contains NaN or inf at row 2"):
        alscale.logits_from_embeddings(z, w)
    with pytest.raises(ValueError, match="bias contains NaN or inf at class 1"):
        alscale.logits_from_embeddings(z, np.ones((4, 3)), np.array([0.0, np.inf, 0.0, 0.0]))


def test_selector_refuses_device_arrays_and_absurd_class_counts():
    class FakeDevice:
        __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f4", "data": (4096, False), "version": 3}

    with pytest.raises(ValueError, match="BalancedSelector.update has no GPU kernel yet; pass logits in host memory"):
        alscale.BalancedSelector(3, 2).update(FakeDevice())
    with pytest.raises(ValueError, match="num_classes must be at most"):
        alscale.BalancedSelector(2**62, 10)


def test_sharded_base_does_not_use_the_selectors_private_methods():
    """The chunked / sharded backend drives the C++ state itself (issue 10)."""
    import inspect

    from alscale._backend import sharded

    source = inspect.getsource(sharded)
    assert "import BalancedSelector" not in source and "._feed(" not in source and "._merge_shards(" not in source


def test_only_zeros_and_ones_as_given_look_like_a_mask():
    """[-3, -3, -3] on 3 rows means row 0 three times: indices, not a mask look-alike."""
    x = X[:3]
    assert alscale.select_margin(x, 3, exclude=np.array([-3, -3, -3])).tolist() == \
        alscale.select_margin(x, 3, exclude=np.array([0])).tolist()
    with pytest.raises(ValueError, match="0/1 mask"):
        alscale.select_margin(x, 3, exclude=np.array([0, 0, 1]))


def test_one_fingerprint_for_arrays_memmaps_and_views(tmp_path):
    """alscale._backend.arrays.fingerprint: the same values give the same 16 bytes whether the
    array is in memory, a memmap read in chunks, or a strided view; other values or other
    extras give others; a contiguous array's is BLAKE2b-128 of its bytes (what streaming
    snapshots stored before, so they still load)."""
    import hashlib

    from alscale._backend.arrays import fingerprint

    x = np.random.default_rng(0).standard_normal((3000, 7))
    np.save(tmp_path / "x.npy", x)
    m = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert fingerprint(x) == fingerprint(m) == fingerprint(np.asfortranarray(x)) == fingerprint(x[::1])
    assert fingerprint(x) == hashlib.blake2b(x.tobytes(), digest_size=16).digest()
    assert fingerprint(x, "a") != fingerprint(x, "b") != fingerprint(x)
    y = x.copy()
    y[2999, 6] += 1e-12
    assert fingerprint(y) != fingerprint(x)
