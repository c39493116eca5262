"""Inputs that once crashed the process or gave silent wrong answers (found in review): each must
now give a clear ValueError/TypeError, or the right answer."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import alscale
import reference as ref


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


@pytest.mark.parametrize("call", [
    lambda x: alscale.select_margin(x, 3, num_threads=2**31 - 1),
    lambda x: alscale.select_balanced(x, 3, num_threads=2**40),
    lambda x: alscale.knn_graph(x, 2, num_threads=2**31 - 1),
    lambda x: alscale.hac_average(x, n_clusters=2, num_threads=10**6),
])
def test_absurd_thread_counts_are_refused(call):
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="num_threads"):
        call(x)


def test_huge_integer_arguments_get_clear_errors():
    x = np.random.default_rng(0).normal(size=(10, 3))
    assert alscale.select_margin(x, 2**64).tolist() == alscale.select_margin(x, 10).tolist()
    with pytest.raises(ValueError, match="capacity"):
        alscale.BalancedSelector(3, 5, capacity=2**64)


def test_non_cpu_tensors_are_refused_by_the_hac_functions():
    meta = torch.empty((4, 3), device="meta")
    for call in (lambda: alscale.hac_average(meta, n_clusters=2), lambda: alscale.knn_graph(meta, 2)):
        with pytest.raises(ValueError, match="meta-device tensor"):
            call()


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
