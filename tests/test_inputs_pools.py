"""One set of input rules for every form of pool: an in-memory array, a memmap, a list of chunks,
a generator, a shard with row_ids — exclusions, row ids, NaN rows and scores are checked the same
way and give the same answer or the same error; one fingerprint whatever the array's layout.
The per-argument checks on in-memory logits are in test_inputs_selection.py."""

from __future__ import annotations

import numpy as np
import pytest

import alscale

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
    with pytest.raises(ValueError, match=r"NaN or inf at row 27$"):
        SELECT[name]([local[:10], local[10:]], 5, row_ids=perm)


@pytest.mark.parametrize("kind", ["margin", "entropy", "boundary"])
def test_scores_of_chunk_sources_equal_the_in_memory_scores(tmp_path, kind):
    fn = {"margin": alscale.margin_scores, "entropy": alscale.entropy_scores,
          "boundary": lambda x: alscale.boundary_scores(x, weight=W)}[kind]
    expected = fn(X)
    for form, make in forms(tmp_path, X).items():
        if form != "row_ids":
            np.testing.assert_array_equal(fn(make()), expected, err_msg=form)


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
