"""Bad input raises a ValueError / TypeError saying what is wrong and where, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alscale

GOOD = np.random.default_rng(0).normal(size=(10, 4))


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


# --------------------------------------------------------------------------- BalancedSelector


@pytest.mark.parametrize("num_classes", [0, -1])
def test_selector_needs_a_class(num_classes):
    with pytest.raises(ValueError):
        alscale.BalancedSelector(num_classes, 5)


def test_selector_negative_budget():
    with pytest.raises(ValueError, match="budget must be non-negative"):
        alscale.BalancedSelector(3, -1)


def test_selector_bad_weight():
    with pytest.raises(ValueError, match="weight"):
        sel = alscale.BalancedSelector(4, 5, weight=np.ones((3, 2)))
        sel.update(GOOD)


@pytest.mark.parametrize("cols", [3, 5])
def test_selector_chunk_with_wrong_class_count(cols):
    sel = alscale.BalancedSelector(4, 5)
    with pytest.raises(ValueError, match="classes"):
        sel.update(np.zeros((6, cols)))


def test_selector_chunk_must_be_2d_float_finite():
    sel = alscale.BalancedSelector(4, 5)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        sel.update(np.zeros(4))
    with pytest.raises(TypeError, match="floating"):
        sel.update(np.zeros((3, 4), dtype=np.int64))
    bad = np.zeros((3, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        sel.update(bad)


def test_selector_row_offset_and_row_ids_together():
    sel = alscale.BalancedSelector(4, 5)
    with pytest.raises(ValueError):
        sel.update(GOOD, row_offset=0, row_ids=np.arange(10))


@pytest.mark.parametrize("length", [0, 9, 11])
def test_selector_row_ids_wrong_length(length):
    sel = alscale.BalancedSelector(4, 5)
    with pytest.raises(ValueError, match="row_ids"):
        sel.update(GOOD, row_ids=np.arange(length))


def test_selector_exclude_out_of_range_is_local_to_chunk():
    sel = alscale.BalancedSelector(4, 5)
    with pytest.raises(ValueError, match="out of range"):
        sel.update(GOOD, row_offset=100, exclude=np.array([10]))
    with pytest.raises(ValueError, match="mask"):
        sel.update(GOOD, exclude=np.zeros(11, dtype=bool))
