"""BalancedSelector (streaming BASE): for any chunking, feeding order, row ids, split into
merged selectors, state_dict round trips and capacity, the result equals select_balanced on
the whole pool (checked against the reference)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

import alscale
import reference as ref
from strategies import (SEEDS, assert_same_indices, budgets, examples, excludes, logits,
                        result_numpy, to_kind, weights)

BalancedSelector = alscale.BalancedSelector


def max_passes(n: int, c: int) -> int:
    """A generous bound on the passes a correct selector needs (each settles a class)."""
    return n + c + 5


def take(x, rows):
    """Rows ``rows`` of numpy / torch logits (a view for a slice)."""
    if isinstance(rows, slice):
        return x[rows]
    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(np.ascontiguousarray(rows))]
    return x[rows]


def local_exclude(mask_rows: np.ndarray, style: str, kind: str):
    """The chunk-local form of the chunk's rows' global exclusion flags."""
    if style == "mask":
        e = mask_rows.copy()
    elif style == "indices":
        e = np.flatnonzero(mask_rows).astype(np.int64)
    else:  # "auto": None when nothing in the chunk is excluded
        if not mask_rows.any():
            return None
        e = np.flatnonzero(mask_rows).astype(np.int64)
    return torch.from_numpy(e) if kind == "torch" else e


def sel_result(sel, like=np.zeros((1, 1))) -> np.ndarray:
    """The selector's result, checked to be of the kind of the logits fed (``like``), as numpy."""
    return result_numpy(sel.result(), like)


@st.composite
def streams(draw, max_n: int = 2000, max_c: int = 100):
    """A pool (logits case + weight + global exclusion + budget) and a way to stream it:
    chunk boundaries, the addressing mode, the feeding order, the split over selectors,
    capacity and round-trip points."""
    case = draw(logits(max_n=max_n, max_c=max_c, max_elems=30_000))
    w = draw(weights(case.c, case.kind), label="weight")
    exclude = draw(excludes(case.n), label="exclude")  # global, numpy
    budget = draw(budgets(case.n), label="budget")
    rng = np.random.default_rng(draw(SEEDS, label="stream_seed"))
    n = case.n
    num_chunks = draw(st.integers(1, min(n, 8)), label="num_chunks")
    cuts = np.sort(rng.choice(np.arange(1, n), size=num_chunks - 1, replace=False)) if num_chunks > 1 else []
    bounds = list(zip([0, *cuts], [*cuts, n]))
    addressing = draw(st.sampled_from(["implicit", "row_offset", "row_ids", "sparse_row_ids"]),
                      label="addressing")
    num_selectors = 1 if addressing == "implicit" else draw(st.integers(1, 4), label="num_selectors")
    capacity = draw(st.sampled_from([None, 0, 1, 2, 7]), label="capacity")
    exclude_style = draw(st.sampled_from(["auto", "mask", "indices"]), label="exclude_style")
    shuffle = addressing != "implicit" and draw(st.booleans(), label="shuffle")
    roundtrip = draw(st.sampled_from(["never", "sometimes", "always"]), label="roundtrip")
    check_raises = draw(st.booleans(), label="check_raises")
    return dict(case=case, w=w, exclude=exclude, budget=budget, bounds=bounds, addressing=addressing,
                num_selectors=num_selectors, capacity=capacity, exclude_style=exclude_style,
                shuffle=shuffle, roundtrip=roundtrip, check_raises=check_raises,
                seed=int(rng.integers(2**32)))


def build_chunks(s: dict):
    """Chunks as (logits_chunk, update kwargs) and the expected result (global row ids)."""
    case, n = s["case"], s["case"].n
    rng = np.random.default_rng(s["seed"])
    gmask = ref.exclude_mask(s["exclude"], n)
    expected = ref.select_balanced(case.x64, s["budget"], s["w"].w, s["exclude"])
    addressing = s["addressing"]
    if addressing in ("implicit", "row_offset"):
        ids = np.arange(n, dtype=np.int64)
        order = np.arange(n)
    elif addressing == "row_ids":
        ids = np.arange(n, dtype=np.int64)
        order = rng.permutation(n)  # chunk rows in any order
    else:  # sparse, non-contiguous global ids (in the same order as the pool's rows)
        ids = np.sort(rng.choice(10 * n + 7, size=n, replace=False)).astype(np.int64)
        order = rng.permutation(n)
        expected = ids[expected]
    chunks = []
    for a, b in s["bounds"]:
        rows = order[a:b]
        x = take(case.x, slice(a, b) if addressing in ("implicit", "row_offset") else rows)
        kw = {"exclude": local_exclude(gmask[rows], s["exclude_style"], case.kind)}
        if addressing == "row_offset":
            kw["row_offset"] = int(a)
        elif addressing in ("row_ids", "sparse_row_ids"):
            r = ids[rows]
            kw["row_ids"] = torch.from_numpy(r.copy()) if case.kind == "torch" else r
        chunks.append((x, kw))
    return chunks, expected


def run_stream(s: dict, chunks) -> tuple[np.ndarray, int]:
    case, w = s["case"], s["w"].w
    rng = np.random.default_rng(s["seed"] + 1)

    def new():
        return BalancedSelector(case.c, s["budget"], weight=w, capacity=s["capacity"])

    def maybe_roundtrip(sel):
        if s["roundtrip"] == "always" or (s["roundtrip"] == "sometimes" and rng.random() < 0.3):
            sel = BalancedSelector.from_state_dict(sel.state_dict(), weight=w)
        return sel

    def feed(sel, order):
        for i in order:
            x, kw = chunks[i]
            sel.update(x, **kw)
            sel = maybe_roundtrip(sel)
        return sel

    k = s["num_selectors"]
    order = rng.permutation(len(chunks)) if s["shuffle"] else np.arange(len(chunks))
    owner = rng.integers(0, k, len(chunks))
    sels = [feed(new(), [i for i in order if owner[i] == j]) for j in range(k)]
    sel = sels[0]
    for other in sels[1:]:
        assert sel.merge(other) is sel
    sel = maybe_roundtrip(sel)
    passes = 0
    while not sel.advance():
        passes += 1
        assert passes <= max_passes(case.n, case.c), "advance() never settles"
        if s["check_raises"]:
            with pytest.raises(RuntimeError, match="another pass"):
                sel.result()
        sel = maybe_roundtrip(sel)
        order = rng.permutation(len(chunks)) if s["shuffle"] else np.arange(len(chunks))
        sel = feed(sel, order)
    return sel_result(sel, case.x), passes


@given(s=streams())
def test_selector_equals_select_balanced(s):
    chunks, expected = build_chunks(s)
    got, passes = run_stream(s, chunks)
    event(f"extra passes: {min(passes, 3)}")
    assert_same_indices(got, expected, "BalancedSelector against the reference")


@examples(0.5)
@given(s=streams(max_n=600, max_c=30))
def test_selector_small_capacity_heavy_ties(s):
    """capacity 0/1 with tied logits: candidate sets run short, extra passes must stay exact."""
    s = dict(s, capacity=s["capacity"] if s["capacity"] in (0, 1) else 0)
    case = s["case"]
    vals = np.random.default_rng(s["seed"]).integers(-1, 2, case.x64.shape).astype(np.float64)
    x, x64 = to_kind(vals, case.kind, case.dtype, case.layout)
    s["case"] = dataclasses.replace(case, x=x, x64=x64, mode="integer")
    chunks, expected = build_chunks(s)
    got, passes = run_stream(s, chunks)
    event(f"extra passes: {min(passes, 3)}")
    assert_same_indices(got, expected, "BalancedSelector (small capacity) against the reference")


def test_selector_matches_function_on_a_fixed_pool():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(500, 10)).astype(np.float32)
    w = rng.normal(size=(10, 6))
    sel = BalancedSelector(10, 37, weight=w)
    for a in range(0, 500, 64):
        sel.update(x[a:a + 64], row_offset=a)
    while not sel.advance():
        for a in range(0, 500, 64):
            sel.update(x[a:a + 64], row_offset=a)
    expected = alscale.select_balanced(x, 37, weight=w)
    assert_same_indices(sel_result(sel), expected)
    assert_same_indices(sel_result(sel), expected, "second result() call")
    assert sel.advance() is True


def test_selector_forced_extra_pass_raises_until_fed():
    """All-equal logits, capacity 0: class 1's only candidate is class 0's pick."""
    x = np.zeros((6, 2))
    sel = BalancedSelector(2, 2, capacity=0)
    sel.update(x)
    passes = 0
    while not sel.advance():
        passes += 1
        assert passes <= 10
        with pytest.raises(RuntimeError, match="another pass"):
            sel.result()
        sel.update(x[:3])
        sel.update(x[3:])
    assert sel_result(sel).tolist() == [0, 1]


def test_selector_implicit_offsets_restart_each_pass():
    x = np.zeros((9, 3))
    x[:, 1] = np.arange(9) % 3  # ties within classes
    sel = BalancedSelector(3, 7, capacity=0)
    for a in range(0, 9, 2):
        sel.update(x[a:a + 2])
    while not sel.advance():
        for a in range(0, 9, 2):
            sel.update(x[a:a + 2])
    assert_same_indices(sel_result(sel), ref.select_balanced(x, 7))


def test_selector_budget_zero_and_all_excluded():
    x = np.random.default_rng(0).normal(size=(20, 4))
    sel = BalancedSelector(4, 0)
    sel.update(x)
    assert sel.advance()
    assert sel_result(sel).tolist() == []
    sel = BalancedSelector(4, 5)
    sel.update(x[:10], exclude=np.ones(10, dtype=bool))
    sel.update(x[10:], exclude=np.arange(10))
    assert sel.advance()
    assert sel_result(sel).tolist() == []


def test_selector_torch_chunks_torch_result():
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(120, 7, generator=g) * 2).to(torch.bfloat16)
    w = torch.randn(7, 3, generator=g, dtype=torch.float64)
    sel = BalancedSelector(7, 20, weight=w)

    def feed():
        sel.update(x[50:], row_ids=torch.arange(50, 120))
        sel.update(x[:50], row_ids=torch.arange(50), exclude=torch.tensor([3, 4]))

    feed()
    while not sel.advance():
        feed()
    expected = ref.select_balanced(x.double().numpy(), 20, w, np.array([3, 4]))
    assert_same_indices(sel_result(sel, x), expected)
    assert_same_indices(sel_result(BalancedSelector.from_state_dict(sel.state_dict(), weight=w), x), expected,
                        "a finished selector restored from its state_dict")


def test_selector_merge_of_empty_selector():
    x = np.random.default_rng(2).normal(size=(30, 5))
    a = BalancedSelector(5, 8)
    a.update(x, row_offset=0)
    b = BalancedSelector(5, 8)  # a rank that saw no rows
    assert b.merge(a) is b
    while not b.advance():
        b.update(x, row_offset=0)
    assert_same_indices(sel_result(b), ref.select_balanced(x, 8))


def test_state_dict_contents_and_round_trip():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6))
    w = rng.normal(size=(6, 4))
    sel = BalancedSelector(6, 25, weight=w, capacity=1)
    sel.update(x[:80], row_offset=0)
    d = sel.state_dict()
    assert isinstance(d, dict)
    for key, value in d.items():
        assert isinstance(value, (np.ndarray, int, np.integer)), (key, type(value))
    snapshot = copy.deepcopy(d)
    restored = BalancedSelector.from_state_dict(pickle.loads(pickle.dumps(d)), weight=w)
    # the original keeps going; the dict taken earlier must not change with it
    sel.update(x[80:], row_offset=80)
    for key in snapshot:
        assert np.array_equal(np.asarray(d[key]), np.asarray(snapshot[key])), f"state_dict()[{key!r}] aliased"
    restored.update(x[80:], row_offset=80)
    for s in (sel, restored):
        while not s.advance():
            s.update(x, row_offset=0)
    expected = ref.select_balanced(x, 25, w)
    assert_same_indices(sel_result(sel), expected)
    assert_same_indices(sel_result(restored), expected)


def test_merge_rejects_mismatched_selectors():
    base = BalancedSelector(4, 10)
    with pytest.raises(ValueError):
        base.merge(BalancedSelector(5, 10))
    with pytest.raises(ValueError):
        base.merge(BalancedSelector(4, 11))
    w = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(ValueError):
        BalancedSelector(4, 10, weight=w).merge(BalancedSelector(4, 10, weight=w + 1.0))
