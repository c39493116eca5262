"""Common checks, run over every public selection function from one table (as scikit-learn's
``estimator_checks``): the input rules, ``exclude``/``labeled`` honoured in both forms, budget
clipping, an all-excluded pool, determinism over seeds and thread counts, chunked logits, and
numpy = torch. What is specific to one function is tested in its own file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch

import alscale

N = 48


def _inputs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, 5)).astype(np.float32)
    x[7] = x[3]  # a tie
    z = rng.standard_normal((N, 4)).astype(np.float32) + 0.1
    return {"logits": x, "embeddings": z, "weight": rng.standard_normal((5, 4)).astype(np.float32),
            "mc": (x[None] + rng.standard_normal((4, N, 5))).astype(np.float32),
            "clusters": rng.integers(0, 6, N), "scores": rng.random(N) + 0.01}


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[..., Any]  # call(inputs, budget, never_pick, **kw) -> indices
    never: str = "exclude"  # the keyword of the rows never picked: exclude or labeled
    seeded: bool = False  # takes seed=
    threads: bool = True  # takes num_threads=
    torch_input: Optional[str] = "logits"  # the input given as a torch tensor (numpy = torch)
    chunks: bool = False  # takes a list of (n_i, C) chunks for its logits
    nan_input: str = "logits"


def _sel(fn, key="logits", **fixed):
    return lambda d, b, ex, **kw: fn(d[key], b, **fixed, **ex, **kw)


CASES = [
    Case("select_margin", _sel(alscale.select_margin), chunks=True),
    Case("select_confidence", _sel(alscale.select_confidence), chunks=True),
    Case("select_entropy", _sel(alscale.select_entropy), chunks=True),
    Case("select_balanced", _sel(alscale.select_balanced), chunks=True),
    Case("select_balanced+weight", lambda d, b, ex, **kw: alscale.select_balanced(d["logits"], b, weight=d["weight"],
                                                                                 **ex, **kw), chunks=True),
    Case("select_boundary", _sel(alscale.select_boundary), chunks=True),
    Case("select_random", lambda d, b, ex, **kw: alscale.select_random(N, b, **ex, **kw), seeded=True, threads=False,
         torch_input=None, nan_input=""),
    Case("select_cluster_margin", lambda d, b, ex, **kw: alscale.select_cluster_margin(d["logits"], d["clusters"], b,
                                                                                       **ex, **kw),
         seeded=True, chunks=True),
    Case("select_coreset", _sel(alscale.select_coreset, "embeddings"), never="labeled", seeded=True,
         torch_input="embeddings", nan_input="embeddings"),
    Case("select_coreset+exclude", _sel(alscale.select_coreset, "embeddings"), seeded=True,
         torch_input="embeddings", nan_input="embeddings"),
    Case("select_badge", lambda d, b, ex, **kw: alscale.select_badge(d["logits"], d["embeddings"], b, **ex, **kw),
         seeded=True, torch_input=None),
    Case("select_typiclust", _sel(alscale.select_typiclust, "embeddings"), never="labeled", seeded=True,
         torch_input=None, nan_input="embeddings"),
    Case("select_probcover", _sel(alscale.select_probcover, "embeddings", delta=0.8), never="labeled", seeded=True,
         torch_input=None, nan_input="embeddings"),
    Case("select_bald", _sel(alscale.select_bald, "mc"), torch_input="mc", nan_input="mc"),
    Case("select_batchbald", _sel(alscale.select_batchbald, "mc", num_samples=200), seeded=True, torch_input=None,
         nan_input="mc"),
    Case("select_powerbald", _sel(alscale.select_powerbald, "mc"), seeded=True, torch_input=None, nan_input="mc"),
    Case("select_power_margin", _sel(alscale.select_power_margin, "mc"), seeded=True, torch_input=None,
         nan_input="mc"),
    Case("select_power_entropy", _sel(alscale.select_power_entropy, "mc"), seeded=True, torch_input=None,
         nan_input="mc"),
    Case("select_power", _sel(alscale.select_power, "scores"), seeded=True, threads=False, torch_input=None,
         nan_input="scores"),
]
IDS = [c.name for c in CASES]


def _run(case: Case, d: dict, budget: int, never=None, **kw) -> np.ndarray:
    if case.seeded and "seed" not in kw:
        kw["seed"] = 5
    out = case.call(d, budget, {} if never is None else {case.never: never}, **kw)
    return out


def _check_picks(got, budget: int, blocked: np.ndarray) -> np.ndarray:
    got = np.asarray(got)
    assert got.dtype == np.int64 and got.ndim == 1
    assert got.size == min(budget, int((~blocked).sum()))
    assert np.unique(got).size == got.size, "a row picked twice"
    assert ((got >= 0) & (got < N)).all() and not blocked[got].any(), "a blocked row picked"
    return got


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_never_picked_rows_are_honoured_in_both_forms(case):
    d = _inputs(1)
    rows = np.array([0, 3, 5, 11, 40, 47])
    mask = np.zeros(N, bool)
    mask[rows] = True
    by_index = _check_picks(_run(case, d, 12, rows), 12, mask)
    by_mask = _check_picks(_run(case, d, 12, mask), 12, mask)
    assert by_index.tolist() == by_mask.tolist()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_budget_is_clipped_to_the_rows_available(case):
    d = _inputs(2)
    blocked = np.zeros(N, bool)
    blocked[::3] = True
    every = _check_picks(_run(case, d, 10**9, blocked), 10**9, blocked)
    assert sorted(every.tolist()) == np.flatnonzero(~blocked).tolist()
    assert _check_picks(_run(case, d, 0, blocked), 0, blocked).size == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_all_excluded_pool_gives_an_empty_batch(case):
    got = _run(case, _inputs(3), 5, np.ones(N, bool))
    assert np.asarray(got).dtype == np.int64 and np.asarray(got).size == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_inputs_same_picks_whatever_the_threads(case):
    d = _inputs(4)
    first = np.asarray(_run(case, d, 9, [2, 4]))
    assert np.asarray(_run(case, d, 9, [2, 4])).tolist() == first.tolist()
    if case.threads:
        for t in (1, 2):
            assert np.asarray(_run(case, d, 9, [2, 4], num_threads=t)).tolist() == first.tolist(), t
    if case.seeded:  # a Generator seeded alike picks alike
        a = _run(case, d, 9, [2, 4], seed=np.random.default_rng(8))
        b = _run(case, d, 9, [2, 4], seed=np.random.default_rng(8))
        assert np.asarray(a).tolist() == np.asarray(b).tolist()


@pytest.mark.parametrize("case", [c for c in CASES if c.chunks], ids=[c.name for c in CASES if c.chunks])
def test_chunked_logits_give_the_same_picks(case):
    d = _inputs(5)
    whole = np.asarray(_run(case, d, 11, [1]))
    for cuts in ([13, 30], [1], [47]):
        chunked = dict(d, logits=np.split(d["logits"], cuts))
        assert np.asarray(_run(case, chunked, 11, [1])).tolist() == whole.tolist(), cuts


@pytest.mark.parametrize("case", [c for c in CASES if c.torch_input], ids=[c.name for c in CASES if c.torch_input])
def test_torch_input_gives_a_tensor_of_the_numpy_picks(case):
    d = _inputs(6)
    want = np.asarray(_run(case, d, 10, [0, 9]))
    got = _run(case, dict(d, **{case.torch_input: torch.from_numpy(d[case.torch_input])}), 10, [0, 9])
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_is_a_value_error_naming_it(case):
    d = _inputs(7)
    with pytest.raises(ValueError, match="budget"):
        _run(case, d, -1)
    with pytest.raises(ValueError, match=case.never):
        _run(case, d, 3, [N])  # out of range
    if case.nan_input:
        bad = d[case.nan_input].astype(np.float64)
        bad[(..., 2) if bad.ndim == 1 else (..., 1, 2)] = np.nan
        with pytest.raises(ValueError, match="NaN|nan|finite"):
            _run(case, dict(d, **{case.nan_input: bad}), 3)
