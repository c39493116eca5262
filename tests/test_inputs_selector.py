"""Bad input to BalancedSelector (streaming BASE): its arguments, the chunks fed to update(),
rows fed twice, merges and malformed state dicts each give a clear ValueError / TypeError, never
a crash or a silently wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

import alscale

GOOD = np.random.default_rng(0).normal(size=(10, 4))


def _state():
    x = np.random.default_rng(0).normal(size=(40, 3))
    return x, alscale.BalancedSelector(3, 6).update(x).state_dict()


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("counts", lambda d: np.where(np.arange(3) == 1, -1, d["counts"]), "inconsistent"),
        ("start_class", lambda d: -5, "inconsistent"),
        ("start_class", lambda d: 4, "inconsistent"),
        ("budget", lambda d: -5, "inconsistent"),
        ("rows", lambda d: -d["rows"] - 1, "inconsistent"),
        ("keys", lambda d: d["keys"][:-1], "inconsistent"),
        ("taken", lambda d: np.array([5, 3]), "inconsistent"),
        ("budget", lambda d: "5", "integer"),
        ("keys", lambda d: np.zeros((2, 2)), "1-D"),
    ],
)
def test_malformed_state_dict_is_refused(key, value, match):
    _, d = _state()
    d[key] = value(d)
    with pytest.raises((ValueError, TypeError), match=match):
        alscale.BalancedSelector.from_state_dict(d).result()


def test_state_dict_missing_key():
    _, d = _state()
    del d["counts"]
    with pytest.raises(ValueError, match="counts"):
        alscale.BalancedSelector.from_state_dict(d)


def test_rows_fed_twice_or_self_merge_are_refused():
    x, _ = _state()
    sel = alscale.BalancedSelector(3, 6).update(x, row_offset=0).update(x, row_offset=0)
    with pytest.raises(ValueError, match="fed more than once"):
        sel.result()
    with pytest.raises(ValueError, match="row id 1 to more than one local row"):  # refused at once
        alscale.BalancedSelector(3, 6).update(x[:4], row_ids=np.array([0, 1, 1, 2]))
    sel = alscale.BalancedSelector(3, 6).update(x)
    with pytest.raises(ValueError, match="itself"):
        sel.merge(sel)


def test_row_offset_overflow_is_refused():
    x, _ = _state()
    with pytest.raises(ValueError, match="overflows"):
        alscale.BalancedSelector(3, 5).update(x, row_offset=2**63 - 3)


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


def test_a_capacity_beyond_int64_is_refused():
    with pytest.raises(ValueError, match="capacity"):
        alscale.BalancedSelector(3, 5, capacity=2**64)


def test_selector_refuses_device_arrays_and_absurd_class_counts():
    class FakeDevice:
        __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f4", "data": (4096, False), "version": 3}

    with pytest.raises(ValueError, match="BalancedSelector.update has no GPU kernel yet; pass logits in host memory"):
        alscale.BalancedSelector(3, 2).update(FakeDevice())
    with pytest.raises(ValueError, match="num_classes must be at most"):
        alscale.BalancedSelector(2**62, 10)
