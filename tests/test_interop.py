"""numpy / torch in and out: result kinds and dtypes, mixed argument kinds, read-only and
grad-requiring inputs, inputs left unmodified, the public names, CUDA (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alscale
import reference as ref

RNG = np.random.default_rng(11)
X = RNG.normal(size=(64, 5))
W = RNG.normal(size=(5, 3))

SELECTIONS = {
    "select_margin": lambda x, b, **kw: alscale.select_margin(x, b, **kw),
    "select_confidence": lambda x, b, **kw: alscale.select_confidence(x, b, **kw),
    "select_entropy": lambda x, b, **kw: alscale.select_entropy(x, b, **kw),
    "select_boundary": lambda x, b, **kw: alscale.select_boundary(x, b, weight=W, **kw),
    "select_balanced": lambda x, b, **kw: alscale.select_balanced(x, b, weight=W, **kw),
}
SCORES = {
    "margin_scores": alscale.margin_scores,
    "confidence_scores": alscale.confidence_scores,
    "entropy_scores": alscale.entropy_scores,
    "boundary_scores": alscale.boundary_scores,
}
selections = pytest.mark.parametrize("name", sorted(SELECTIONS))
scores = pytest.mark.parametrize("name", sorted(SCORES))


def test_public_names():
    for name in ["select_balanced", "select_boundary", "select_margin", "select_confidence",
                 "select_entropy", "margin_scores", "confidence_scores", "entropy_scores",
                 "boundary_scores", "select_random", "BalancedSelector"]:
        assert name in alscale.__all__, name
        assert callable(getattr(alscale, name)), name


@selections
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_in_numpy_int64_out(name, dtype):
    got = SELECTIONS[name](X.astype(dtype), 10)
    assert type(got) is np.ndarray and got.dtype == np.int64 and got.shape == (10,)


@selections
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_in_torch_int64_out(name, dtype):
    x = torch.tensor(X).to(dtype)
    got = SELECTIONS[name](x, 10)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    assert got.device.type == "cpu" and tuple(got.shape) == (10,)
    # the same values through numpy give the same indices
    assert got.tolist() == SELECTIONS[name](x.to(torch.float64).numpy(), 10).tolist()


@scores
def test_scores_dtypes(name):
    fn = SCORES[name]
    a = fn(X.astype(np.float32))
    assert type(a) is np.ndarray and a.dtype == np.float64 and a.shape == (64,)
    t = fn(torch.tensor(X, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64 and t.device.type == "cpu"
    assert np.array_equal(t.numpy(), a)


@selections
def test_exclude_kinds_agree(name):
    select = SELECTIONS[name]
    idx = np.array([3, 0, 17, 17, -1])
    mask = np.zeros(64, dtype=bool)
    mask[[0, 3, 17, 63]] = True
    expected = select(X, 20, exclude=mask)
    assert 0 not in expected and 63 not in expected
    for exclude in [idx, idx.astype(np.int32), torch.tensor(idx), torch.from_numpy(mask),
                    idx.tolist()]:
        assert select(X, 20, exclude=exclude).tolist() == expected.tolist(), type(exclude)
        assert select(torch.tensor(X), 20, exclude=exclude).tolist() == expected.tolist(), type(exclude)


@pytest.mark.parametrize("name", ["select_boundary", "select_balanced"])
def test_weight_kinds_agree(name):
    select = getattr(alscale, name)
    reference = getattr(ref, name)
    expected = reference(X, 12, W)
    for x in (X, torch.tensor(X)):
        for w in (W, W.astype(np.float32).astype(np.float64), torch.tensor(W),
                  torch.tensor(W, requires_grad=True), np.asfortranarray(W)):
            assert select(x, 12, weight=w).tolist() == reference(X, 12, w).tolist()
    assert select(X, 12, weight=torch.tensor(W)).tolist() == expected.tolist()


@selections
def test_read_only_numpy_input(name):
    """No copy-on-write warning (filterwarnings=error) and the same result."""
    x = X.astype(np.float32)
    expected = SELECTIONS[name](x, 9)
    ro = x.copy()
    ro.setflags(write=False)
    ex = np.array([1, 2])
    ex.setflags(write=False)
    assert SELECTIONS[name](ro, 9).tolist() == expected.tolist()
    assert SELECTIONS[name](ro, 9, exclude=ex).tolist() == SELECTIONS[name](x, 9, exclude=[1, 2]).tolist()


@scores
def test_read_only_numpy_scores(name):
    ro = X.copy()
    ro.setflags(write=False)
    assert np.array_equal(SCORES[name](ro), SCORES[name](X))


@selections
def test_requires_grad_tensor(name):
    x = torch.tensor(X, requires_grad=True)
    got = SELECTIONS[name](x, 7)
    assert got.tolist() == SELECTIONS[name](X, 7).tolist()
    assert x.grad is None


@selections
def test_inputs_not_modified(name):
    x = X.astype(np.float32)[:, ::-1]
    before = x.copy()
    ex = np.array([5, 1, 5])
    SELECTIONS[name](x, 30, exclude=ex)
    assert np.array_equal(x, before) and ex.tolist() == [5, 1, 5]
    t = torch.tensor(X)
    tb = t.clone()
    SELECTIONS[name](t, 30)
    assert torch.equal(t, tb)


@selections
def test_budget_accepts_numpy_integer(name):
    got = SELECTIONS[name](X, np.int64(6))
    assert got.tolist() == SELECTIONS[name](X, 6).tolist()


@selections
def test_default_threads_match_one_thread(name):
    x = np.random.default_rng(4).normal(size=(5000, 5))
    got = SELECTIONS[name](x, 700)
    assert got.tolist() == SELECTIONS[name](x, 700, num_threads=1).tolist()
    assert got.tolist() == SELECTIONS[name](x, 700, num_threads=2).tolist()


def test_large_pool_smoke():
    """A larger pool through every kernel, against the references (fast rules only)."""
    x = np.random.default_rng(9).normal(size=(100_000, 12)).astype(np.float32)
    assert alscale.select_margin(x, 1000).tolist() == ref.topk_smallest(alscale.margin_scores(x), 1000).tolist()
    x64 = x.astype(np.float64)
    assert alscale.select_boundary(x, 1000).tolist() == ref.select_boundary(x64, 1000).tolist()
    assert alscale.select_balanced(x, 1000).tolist() == ref.select_balanced(x64, 1000).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@selections
def test_cuda_tensors(name):
    x = torch.tensor(X, dtype=torch.float32, device="cuda")
    got = SELECTIONS[name](x, 11)
    assert got.device == x.device and got.dtype == torch.int64
    assert got.cpu().tolist() == SELECTIONS[name](x.cpu(), 11).tolist()
