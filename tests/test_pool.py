"""Pools out of memory: selection over chunks (lists, generators, alscale.chunked), memmaps and
logits computed from embeddings must equal selection over the whole matrix, exactly."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
from alscale.pool import release_pages
from hypotheses import SEEDS, examples, make_values, own_topk

RANKED = ["select_margin", "select_confidence", "select_entropy", "select_boundary"]



def split(x, rng, pieces):
    cuts = np.sort(rng.integers(0, x.shape[0] + 1, pieces - 1))
    return [x[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, x.shape[0]])]


CASE = st.fixed_dictionaries(
    {
        "seed": SEEDS,
        "n": st.integers(1, 600),
        "c": st.integers(1, 12),
        "mode": st.sampled_from(["normal", "integer", "halves", "constant", "duplicate_rows", "peaked"]),
        "pieces": st.integers(1, 8),
        "budget": st.integers(0, 700),
        "exclude": st.sampled_from([None, "mask", "index"]),
        "form": st.sampled_from(["list", "generator", "chunked", "torch"]),
        "permute": st.booleans(),
    }
)


def draw(case):
    rng = np.random.default_rng(case["seed"])
    n = case["n"]
    logits = make_values(rng, n, case["c"], case["mode"])
    exclude = None
    if case["exclude"] == "mask":
        exclude = rng.random(n) < 0.3
    elif case["exclude"] == "index":
        exclude = rng.integers(0, n, int(rng.integers(0, n + 1)))
        if n >= 3 and exclude.size == n and exclude.max() <= 1:  # a 0/1 mask look-alike is refused
            exclude = exclude[:-1]
    return rng, logits, exclude


def chunks_of(x, rng, case):
    if case["form"] == "chunked":
        return alscale.chunked(x, int(rng.integers(1, x.shape[0] + 2)))
    parts = split(x, rng, case["pieces"])
    if case["form"] == "torch":
        return [torch.from_numpy(np.ascontiguousarray(p)) for p in parts]
    if case["form"] == "generator":
        return (p for p in parts)
    return parts


def run(name, logits, budget, exclude, rng, case, **kw):
    """The selection over chunks; with ``permute`` the rows come in another order, named by row_ids."""
    rows = rng.permutation(logits.shape[0]) if case["permute"] else np.arange(logits.shape[0])
    ex = exclude
    if ex is not None and case["permute"]:
        ex = np.isin(rows, np.flatnonzero(ref.exclude_mask(exclude, logits.shape[0])))
    out = getattr(alscale, name)(chunks_of(logits[rows], rng, case), budget, exclude=ex, row_ids=rows, **kw)
    return np.asarray(out)


@examples(0.5)
@given(case=CASE, weighted=st.booleans())
def test_balanced_over_chunks(case, weighted):
    rng, logits, exclude = draw(case)
    weight = rng.standard_normal((logits.shape[1], 4)) if weighted else None
    if case["form"] == "generator":
        one_pass = alscale.BalancedSelector(logits.shape[1], case["budget"], weight=weight)
        if not one_pass.update(logits, exclude=exclude).advance():  # a generator cannot be fed twice
            with pytest.raises(RuntimeError, match="one-shot iterator"):
                run("select_balanced", logits, case["budget"], exclude, rng, case, weight=weight)
            return
    got = run("select_balanced", logits, case["budget"], exclude, rng, case, weight=weight)
    np.testing.assert_array_equal(got, alscale.select_balanced(logits, case["budget"], weight=weight, exclude=exclude))
    np.testing.assert_array_equal(got, ref.select_balanced(logits, case["budget"], weight, exclude))


@examples(0.5)
@given(case=CASE, name=st.sampled_from(RANKED))
def test_ranked_over_chunks(case, name):
    rng, logits, exclude = draw(case)
    got = run(name, logits, case["budget"], exclude, rng, case)
    np.testing.assert_array_equal(got, own_topk(name, logits, case["budget"], exclude))


@examples(0.3)
@given(case=CASE, seed=st.integers(0, 2**64 - 1), n_clusters=st.integers(1, 20))
def test_cluster_margin_over_chunks(case, seed, n_clusters):
    rng, logits, exclude = draw(case)
    clusters = rng.integers(0, n_clusters, logits.shape[0])
    km = case["budget"] + int(rng.integers(0, 50))
    rows = rng.permutation(logits.shape[0]) if case["permute"] else np.arange(logits.shape[0])
    mask = ref.exclude_mask(exclude, logits.shape[0])
    got = alscale.select_cluster_margin(
        chunks_of(logits[rows], rng, case), clusters[rows], case["budget"], candidates=km, exclude=mask[rows],
        seed=seed, row_ids=rows,
    )
    want = ref.select_cluster_margin(alscale.margin_scores(logits), clusters, case["budget"], seed, km, exclude)
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_memmap_is_read_in_chunks(tmp_path, dtype):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3000, 20)).astype(dtype)
    path = tmp_path / "logits.npy"
    np.save(path, logits)
    m = np.load(path, mmap_mode="r")
    exclude = rng.random(3000) < 0.1
    w = rng.standard_normal((20, 3))
    np.testing.assert_array_equal(
        alscale.select_balanced(m, 500, weight=w, exclude=exclude),
        alscale.select_balanced(logits, 500, weight=w, exclude=exclude),
    )
    np.testing.assert_array_equal(alscale.select_entropy(m, 77), alscale.select_entropy(logits, 77))
    small = alscale.chunked(m, 7)
    np.testing.assert_array_equal(alscale.select_margin(small, 99), alscale.select_margin(logits, 99))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident set from /proc")
def test_memmap_pages_are_released(tmp_path):
    """After a chunk is used its pages leave the resident set, so a file larger than memory can
    be selected from: reading 64 MiB in 4 MiB chunks keeps far less than 64 MiB resident."""
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(0).standard_normal((16384, 1024)).astype(np.float32))
    m = np.load(path, mmap_mode="r")
    page = __import__("mmap").PAGESIZE

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    before = resident()
    peak = 0
    for chunk in alscale.chunked(m, 1024):
        float(np.asarray(chunk).sum())  # touches every page of the chunk
        peak = max(peak, resident() - before)
    assert peak < 16 << 20, f"{peak / 2**20:.1f} MiB resident while reading 64 MiB in 4 MiB chunks"
    release_pages(np.zeros((2, 2)))  # not mapped: nothing to do, no error


def test_logits_from_embeddings_match_their_chunks():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((1000, 32)).astype(np.float32)
    w = rng.standard_normal((10, 32)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    pool = alscale.logits_from_embeddings(z, w, b, chunk_rows=128)
    full = np.concatenate(list(pool))
    np.testing.assert_allclose(full, z @ w.T + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(alscale.select_balanced(pool, 50, weight=w), alscale.select_balanced(full, 50, weight=w))
    np.testing.assert_array_equal(alscale.select_margin(pool, 50), alscale.select_margin(full, 50))
    tpool = alscale.logits_from_embeddings(torch.from_numpy(z), torch.from_numpy(w), chunk_rows=300)
    out = alscale.select_balanced(tpool, 20, weight=w)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.shape == (20,)


def test_embedding_logits_shape_and_rows(tmp_path, monkeypatch):
    """.shape is (N, C); pool[rows] is those rows' logits (an integer array in any order, or a
    slice), numpy for numpy embeddings and torch for torch ones; bad indices are IndexErrors."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((700, 24)).astype(np.float16)
    w = rng.standard_normal((9, 24)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    pool = alscale.logits_from_embeddings(z, w, b, chunk_rows=100)
    assert pool.shape == (700, 9) and len(pool) == 700
    full = np.concatenate(list(pool))
    rows = np.array([699, 3, 3, 250, -1])
    got = pool[rows]
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (5, 9)
    np.testing.assert_allclose(got, full[rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pool[10:20], full[10:20], rtol=1e-5, atol=1e-5)
    assert pool[np.zeros(0, np.int64)].shape == (0, 9)
    tpool = alscale.logits_from_embeddings(torch.from_numpy(z.astype(np.float32)), w, b)
    trows = tpool[np.array([5, 1])]
    assert isinstance(trows, torch.Tensor) and trows.shape == (2, 9)
    np.testing.assert_allclose(trows.numpy(), full[[5, 1]], rtol=1e-2, atol=1e-2)  # fp16 vs fp32 inputs
    np.save(tmp_path / "z.npy", z)
    disk = alscale.logits_from_embeddings(np.load(tmp_path / "z.npy", mmap_mode="r"), w, b, chunk_rows=100)
    monkeypatch.setattr(alscale.pool, "_GATHER_ROWS", 2)  # a block of 2 rows at a time, pages let go after each
    many = np.array([5, 699, 0, 3, 3, 250, 1, -2, 42])
    np.testing.assert_allclose(disk[many], full[many], rtol=1e-5, atol=1e-5)
    assert disk[many].shape == (9, 9) and disk[many[:0]].shape == (0, 9)
    for bad, message in ((np.array([700]), "out of range for a pool of 700 rows"),
                         (np.array([-701]), "out of range"), (np.array([[1, 2]]), "1-D integer array"),
                         (np.array([1.5]), "1-D integer array")):
        with pytest.raises(IndexError, match=message):
            pool[bad]


def test_one_shot_generator_refuses_a_second_pass():
    """Heavy ties need a second pass over the pool: a generator cannot give it."""
    logits = np.zeros((3000, 120))
    gen = (logits[i : i + 500] for i in range(0, 3000, 500))
    with pytest.raises(RuntimeError, match="one-shot iterator"):
        alscale.select_balanced(gen, 1200)
    # a list is walked as often as needed
    parts = [logits[i : i + 500] for i in range(0, 3000, 500)]
    np.testing.assert_array_equal(alscale.select_balanced(parts, 1200), alscale.select_balanced(logits, 1200))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"exclude": np.ones(11, bool)}, "exclude mask has 11 entries"),
        ({"exclude": np.ones(9, bool)}, "exclude mask has 9 entries"),
        ({"exclude": [10]}, "exclude index 10 is out of range"),
        ({"exclude": [-11]}, "exclude index -11 is out of range"),
        ({"exclude": np.array([0, 1, 1, 0, 0, 1, 0, 0, 1, 1])}, "looks like a 0/1 mask"),
        ({"exclude": [0.5]}, "integer row indices"),
        ({"row_ids": np.arange(11)}, "row_ids has 11 entries"),
        ({"row_ids": np.arange(9)}, "row_ids has 9 entries"),
        ({"row_ids": -np.arange(10)}, "non-negative"),
        ({"row_ids": np.zeros(10, np.int64)}, "more than one"),
    ],
)
def test_chunked_input_errors(kwargs, match):
    parts = [np.random.default_rng(0).standard_normal((5, 3)) for _ in range(2)]
    with pytest.raises((ValueError, TypeError), match=match):
        alscale.select_margin(parts, 10, **kwargs)


def test_chunks_must_agree_on_classes():
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        alscale.select_balanced([np.zeros((3, 4)), np.zeros((3, 5))], 2)
    with pytest.raises(ValueError, match="the pool is empty"):
        alscale.select_margin(iter([]), 2)
    with pytest.raises(ValueError, match="the pool is empty"):
        alscale.select_balanced([np.zeros((0, 4))], 2)


@examples(0.5)
@given(seed=SEEDS, n=st.integers(0, 300), k=st.integers(0, 320), largest=st.booleans(), ties=st.booleans(),
       offset=st.integers(0, 2**40), with_ids=st.booleans(), excluded=st.booleans())
def test_topk_ranked_and_merge_ranked_match_numpy(seed, n, k, largest, ties, offset, with_ids, excluded):
    """The kernels under chunked and sharded selection: the k smallest (±score, global id),
    sorted, against numpy's lexsort; merging any split of candidates gives the same."""
    from alscale import _core

    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 4, n).astype(np.float64) if ties else rng.standard_normal(n)
    ids = rng.permutation(n * 3)[:n].astype(np.int64) if with_ids else None
    mask = (rng.random(n) < 0.3).astype(np.uint8) if excluded else None
    gid = ids if with_ids else offset + np.arange(n, dtype=np.int64)
    key = -scores if largest else scores
    keep = np.flatnonzero(mask == 0) if excluded else np.arange(n)
    order = keep[np.lexsort((gid[keep], key[keep]))][:k]
    keys, got_ids, pos = _core.topk_ranked(scores, k, mask, largest, ids, offset, 2)
    np.testing.assert_array_equal(pos, order)
    np.testing.assert_array_equal(got_ids, gid[order])
    np.testing.assert_array_equal(keys, key[order])
    cut = int(rng.integers(0, n + 1))
    parts = [_core.topk_ranked(scores[a:b], k, None if mask is None else mask[a:b], largest,
                               None if ids is None else ids[a:b], offset + a, 1) for a, b in ((0, cut), (cut, n))]
    mkeys, mids, mpos = _core.merge_ranked(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), k)
    np.testing.assert_array_equal(mids, gid[order])
    np.testing.assert_array_equal(mkeys, key[order])


def test_merge_ranked_refuses_a_repeated_id():
    from alscale import _core

    with pytest.raises(ValueError, match="row id 7 belongs to more than one"):
        _core.merge_ranked(np.array([0.0, 1.0, 0.5]), np.array([7, 3, 7]), 3)


def test_logits_from_embeddings_reads_a_read_only_memmap_without_a_warning(tmp_path):
    """np.load(..., mmap_mode="r") gives a read-only array; torch warns on such arrays (an error
    under this suite's filterwarnings), though the GEMM only reads them."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 8)).astype(np.float32)
    w = rng.standard_normal((5, 8)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    m = np.load(tmp_path / "z.npy", mmap_mode="r")
    assert not m.flags.writeable
    got = np.concatenate(list(alscale.logits_from_embeddings(m, w, chunk_rows=64)))
    np.testing.assert_array_equal(got, np.concatenate(list(alscale.logits_from_embeddings(z, w, chunk_rows=64))))


class _PoisonedBuffer(alscale.pool.EmbeddingLogits):
    """Chunks written into one buffer, which is overwritten with NaN as soon as the next chunk
    (or the end) is asked for: a consumer that read a chunk after that would see NaN."""

    served = 0

    def chunks_reusing_buffer(self):
        for chunk in super().chunks_reusing_buffer():
            type(self).served += 1
            yield chunk
            chunk.fill(np.nan)


def test_selection_reads_embedding_logits_through_one_buffer_and_keeps_no_chunk():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((700, 16)).astype(np.float32)
    w = rng.standard_normal((9, 16)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    pool = _PoisonedBuffer(z, w, b, chunk_rows=64)
    full = np.concatenate(list(pool))  # __iter__: new arrays, never poisoned
    assert np.isfinite(full).all() and _PoisonedBuffer.served == 0
    clusters = rng.integers(0, 12, 700)
    for fn, args, kw in ((alscale.select_margin, (40,), {}), (alscale.select_entropy, (40,), {}),
                         (alscale.select_boundary, (40,), {"weight": w}),
                         (alscale.select_balanced, (40,), {"weight": w}), (alscale.select_balanced, (650,), {}),
                         (alscale.select_margin, (40,), {"multilabel": True}),
                         (alscale.margin_scores, (), {}), (alscale.entropy_scores, (), {}),
                         (alscale.select_cluster_margin, (clusters, 30), {"seed": 0})):
        before = _PoisonedBuffer.served
        got = fn(pool, *args, **kw)
        assert _PoisonedBuffer.served - before >= 11, fn.__name__  # read through the buffer
        np.testing.assert_array_equal(got, fn(full, *args, **kw), err_msg=fn.__name__)


def host(a):
    return a.numpy() if isinstance(a, torch.Tensor) else a


def test_embedding_logits_reuse_one_buffer_but_kept_chunks_stay_intact():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((300, 8)).astype(np.float32)
    w = rng.standard_normal((5, 8)).astype(np.float32)
    for bias in (None, rng.standard_normal(5).astype(np.float32)):
        for emb in (z, torch.from_numpy(z)):
            pool = alscale.logits_from_embeddings(emb, w, bias, chunk_rows=70)
            kept = list(pool)  # the public iteration: the caller keeps every chunk
            copies = [host(k).copy() for k in kept]
            reused = [host(c).copy() for c in pool.chunks_reusing_buffer()]
            alscale.select_margin(pool, 10)  # a selection reads through the one buffer
            for k, c, r in zip(kept, copies, reused):
                np.testing.assert_array_equal(host(k), c)  # not overwritten by the buffer
                np.testing.assert_array_equal(r, c)  # the buffer's chunks are the same logits
            assert [r.shape[0] for r in reused] == [70, 70, 70, 70, 20]
            pointers = {int(host(c).__array_interface__["data"][0]) for c in pool.chunks_reusing_buffer()}
            assert len(pointers) == 1  # one buffer for every chunk
            assert len({int(host(k).__array_interface__["data"][0]) for k in kept}) == len(kept)


def test_take_rows_gathers_a_memmap_in_blocks_letting_each_blocks_pages_go(tmp_path, monkeypatch):
    """take_rows(a, rows) is a[rows]; from a memmap the rows come GATHER_ROWS at a time and the
    pages each block spans are let go after it (a scattered gather maps the pages around every
    row: one 65,536-row sample of a 2M x 2048 file held 8 GB)."""
    from alscale._backend import arrays

    z = np.random.default_rng(3).standard_normal((500, 7)).astype(np.float16)
    np.save(tmp_path / "z.npy", z)
    disk = np.load(tmp_path / "z.npy", mmap_mode="r")
    released = []
    real = arrays.release_pages
    monkeypatch.setattr(arrays, "release_pages", lambda chunk: released.append(chunk.shape[0]) or real(chunk))
    monkeypatch.setattr(arrays, "GATHER_ROWS", 3)
    rows = np.array([0, 4, 5, 90, 91, 300, 498, 499])
    got = arrays.take_rows(disk, rows)
    assert type(got) is np.ndarray and got.dtype == np.float16
    np.testing.assert_array_equal(got, z[rows])
    assert released == [6, 211, 2]  # the blocks of 3 rows span 0..5, 90..300, 498..499
    assert arrays.take_rows(disk, rows[:0]).shape == (0, 7)
    np.testing.assert_array_equal(arrays.take_rows(z, rows), z[rows])  # in memory: plain indexing
    assert released == [6, 211, 2]
    plain = np.asarray(disk)  # a memmap seen as an ndarray (as real_matrix passes it on) is mapped all the same
    assert type(plain) is np.ndarray
    np.testing.assert_array_equal(arrays.take_rows(plain, rows), z[rows])
    assert released == [6, 211, 2] * 2
