"""BalancedSelector (streaming BASE): for any chunking, feeding order, row ids, split into
merged selectors, state_dict round trips and capacity, the result equals select_balanced on
the whole pool (checked against the reference)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

import alscale
import reference as ref
from hypotheses import (SEEDS, assert_same_indices, budgets, examples, excludes, logits,
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


# --------------------------------------------------------------------------- issue 10 findings


class _Blocking:
    """Logits whose conversion to numpy waits for ``release``: holds a selector inside update()."""

    def __init__(self, x: np.ndarray):
        self.x, self.entered, self.release = x, threading.Event(), threading.Event()

    def __array__(self, dtype=None, copy=None):
        self.entered.set()
        assert self.release.wait(30)
        return self.x


def test_selector_refuses_a_second_thread_while_in_use():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 5))
    other = BalancedSelector(5, 10).update(x[30:], row_offset=30)
    sel = BalancedSelector(5, 10)
    blocking = _Blocking(x[:30])
    errors = []
    worker = threading.Thread(target=lambda: errors.append(sel.update(blocking, row_offset=0)))
    worker.start()
    try:
        assert blocking.entered.wait(30)
        for call in (lambda: sel.update(x[30:], row_offset=30), sel.advance, sel.result, sel.state_dict,
                     lambda: sel.merge(other), lambda: other.merge(sel), lambda: sel.passes):
            with pytest.raises(RuntimeError, match="in use by another thread"):
                call()
    finally:
        blocking.release.set()
        worker.join(30)
    assert errors == [sel]
    sel.merge(other)  # free again, and nothing was half-done
    assert_same_indices(sel_result(sel), ref.select_balanced(x, 10))


def test_selector_threads_hammering_update():
    """Many threads feeding one selector: each call runs alone or is refused (RuntimeError);
    retried, the result is exact (before: segfaults, free(): invalid size, false duplicates)."""
    rng = np.random.default_rng(5)
    n, c, budget = 40_000, 50, 500
    x = rng.normal(size=(n, c)).astype(np.float32)
    sel = BalancedSelector(c, budget)
    starts = list(range(0, n, 500))
    refused, unexpected = [0], []
    barrier = threading.Barrier(4)

    def feed(mine):
        barrier.wait()
        for a in mine:
            while True:
                try:
                    sel.update(x[a:a + 500], row_offset=a, num_threads=1)
                    break
                except RuntimeError as err:
                    if "in use by another thread" not in str(err):
                        unexpected.append(err)
                        return
                    refused[0] += 1
                except Exception as err:  # noqa: BLE001 - any other error is the bug
                    unexpected.append(err)
                    return

    threads = [threading.Thread(target=feed, args=(starts[t::4],)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not unexpected, unexpected
    while not sel.advance():
        sel.update(x, row_offset=0)
    assert_same_indices(sel_result(sel), ref.select_balanced(x.astype(np.float64), budget))


def test_from_state_dict_names_a_missing_or_unexpected_weight():
    rng = np.random.default_rng(6)
    x, w = rng.normal(size=(30, 4)), rng.normal(size=(4, 3))
    with_w = BalancedSelector(4, 5, weight=w).update(x).state_dict()
    without = BalancedSelector(4, 5).update(x).state_dict()
    with pytest.raises(ValueError, match="built with a head weight: pass the same weight="):
        BalancedSelector.from_state_dict(with_w)
    with pytest.raises(ValueError, match="built without a head weight, but weight= was given"):
        BalancedSelector.from_state_dict(without, weight=w)
    with pytest.raises(ValueError, match="does not match"):
        BalancedSelector.from_state_dict(with_w, weight=w + 1)
    got = BalancedSelector.from_state_dict(with_w, weight=w)
    assert_same_indices(sel_result(got), ref.select_balanced(x, 5, w))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_result_follows_the_kind_of_the_logits_fed(kind):
    x = np.random.default_rng(8).normal(size=(50, 6)).astype(np.float32)
    chunk = torch.from_numpy(x) if kind == "torch" else x
    fed = BalancedSelector(6, 9).update(chunk[:25]).update(chunk[25:])
    expected = ref.select_balanced(x.astype(np.float64), 9)
    empty = BalancedSelector(6, 9)  # fed nothing itself: takes the kind of what it merged
    empty.merge(fed)
    assert_same_indices(sel_result(empty, chunk), expected)
    assert_same_indices(sel_result(fed, chunk), expected)


def _two_pass_state():
    """A state in its second pass: all-equal logits, capacity 0 (class 1 ran short)."""
    sel = BalancedSelector(2, 2, capacity=0).update(np.zeros((6, 2)))
    assert not sel.advance()
    d = sel.state_dict()
    assert d["pass"] == 1 and d["start_class"] == 1 and d["picks"].tolist() == [0]
    return d


def _finished_state():
    x = np.random.default_rng(9).normal(size=(40, 3))
    sel = BalancedSelector(3, 6).update(x)
    sel.result()
    return sel.state_dict()


def _fresh_state():
    x = np.random.default_rng(10).normal(size=(40, 3))
    return BalancedSelector(3, 6).update(x).state_dict()


@pytest.mark.parametrize("make, edit, field", [
    (_fresh_state, {"pass": 5}, "pass"),
    (_fresh_state, {"pass": 1}, "pass"),
    (_fresh_state, {"done": 1}, "counts"),  # a finished selection keeps no candidates
    (_fresh_state, {"done": 2}, "done"),
    (_fresh_state, {"picks": np.array([3])}, "picks"),
    (_fresh_state, {"available": 40}, "available"),
    (_fresh_state, {"start_class": 1}, "start_class"),
    (_fresh_state, {"capacity": np.full(3, 99)}, "capacity"),
    (_fresh_state, {"fed": 1}, "fed"),
    (_fresh_state, {"keys": lambda d: np.where(np.arange(d["keys"].size) == 0, -1.0, d["keys"])}, "keys"),
    (_fresh_state, {"rows": lambda d: np.where(np.arange(d["rows"].size) == 1, d["rows"][0], d["rows"])},
     "rows"),
    (_fresh_state, {"torch_result": 3}, "torch_result"),
    (_finished_state, {"picks": lambda d: d["picks"][:-1]}, "picks"),
    (_finished_state, {"picks": lambda d: np.r_[d["picks"][:-1], d["picks"][0]]}, "picks"),
    (_finished_state, {"picks": lambda d: np.r_[d["picks"][:-1], -1]}, "picks"),
    (_finished_state, {"available": 3}, "picks"),
    (_two_pass_state, {"taken": np.array([1])}, "taken"),
    (_two_pass_state, {"taken": np.array([], np.int64)}, "taken"),
    (_two_pass_state, {"picks": np.array([0, 1])}, "picks"),
    (_two_pass_state, {"start_class": 0}, "start_class"),
    (_two_pass_state, {"available": 1}, "budget"),
    (_two_pass_state, {"pass": 0}, "start_class"),
])
def test_inconsistent_state_dict_is_refused_naming_the_field(make, edit, field):
    d = make()
    BalancedSelector.from_state_dict(dict(d))  # the unedited state loads
    for key, value in edit.items():
        d[key] = value(d) if callable(value) else value
    with pytest.raises(ValueError, match=rf"state\['{field}'\]"):
        BalancedSelector.from_state_dict(d)


def test_merge_after_result_says_finished():
    x = np.random.default_rng(11).normal(size=(40, 3))
    done = BalancedSelector(3, 6).update(x[:20])
    done.result()
    fresh = BalancedSelector(3, 6).update(x[20:], row_offset=20)
    for a, b in ((fresh, done), (done, fresh)):
        with pytest.raises(RuntimeError, match="cannot merge a finished selector"):
            a.merge(b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("exclude", [np.array([3]), np.arange(10) == 3])
def test_nan_in_an_excluded_row_is_refused(bad, exclude):
    """One NaN rule for every selection: BASE checks excluded rows too (margin always did)."""
    x = np.random.default_rng(12).normal(size=(10, 4))
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf at row 3"):
        alscale.select_balanced(x, 4, exclude=exclude)
    with pytest.raises(ValueError, match="NaN or inf at row 3"):
        alscale.select_margin(x, 4, exclude=exclude)
    sel = BalancedSelector(4, 4)
    with pytest.raises(ValueError, match="NaN or inf at row 3"):
        sel.update(x, exclude=exclude)
    x[3, 1] = 0.0  # the refused chunk left nothing behind
    sel.update(x, exclude=exclude)
    assert_same_indices(sel_result(sel), ref.select_balanced(x, 4, None, exclude))


def test_state_dict_survives_a_plain_python_round_trip():
    """Checkpoints stored as JSON-like lists and ints still load (fingerprint bytes as ints)."""
    rng = np.random.default_rng(13)
    x, w = rng.normal(size=(30, 4)), rng.normal(size=(4, 3))
    d = BalancedSelector(4, 5, weight=w).update(x).state_dict()
    plain = {k: (v.tolist() if isinstance(v, np.ndarray) else int(v)) for k, v in d.items()}
    assert_same_indices(sel_result(BalancedSelector.from_state_dict(plain, weight=w)), ref.select_balanced(x, 5, w))
    plain["weight_fingerprint"] = [256] * 16
    with pytest.raises(ValueError, match=r"state\['weight_fingerprint'\]"):
        BalancedSelector.from_state_dict(plain, weight=w)


def test_sharded_base_does_not_use_the_selectors_private_methods():
    """The chunked / sharded backend drives the shared streaming-BASE wrapper, not the selector."""
    import inspect

    from alscale._backend import sharded

    source = inspect.getsource(sharded)
    assert "import BalancedSelector" not in source and "._feed(" not in source and "._merge_shards(" not in source


def test_one_streaming_base_wrapper_and_one_list_of_snapshot_fields():
    """BalancedSelector and the chunked / sharded select_balanced drive the same wrapper
    (alscale._backend.stream.BaseStream), whose field table is exactly what the C++ state writes,
    and a selector's state_dict holds those fields plus the selector's own three."""
    import inspect

    from alscale import _core, streaming
    from alscale._backend import sharded, stream

    for module in (streaming, sharded):
        source = inspect.getsource(module)
        assert "BaseStream" in source
        assert "BalancedState" not in source and "default_extra(" not in source and "_STATE_" not in source
    listed = set(stream.SCALARS) | set(stream.LATER_SCALARS) | set(stream.ARRAYS)
    assert len(listed) == len(stream.SCALARS) + len(stream.LATER_SCALARS) + len(stream.ARRAYS)
    assert set(_core.BalancedState(3, 5, 2).snapshot()) == listed
    assert set(stream.CANDIDATES) <= listed
    sel = BalancedSelector(3, 5).update(np.random.default_rng(0).normal(size=(40, 3)))
    assert set(sel.state_dict()) == listed | {"next_row", "torch_result", "weight_fingerprint"}
