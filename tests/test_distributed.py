"""Sharded selection over torch.distributed (gloo): every rank must get exactly the selection one
process gives on the whole pool, and the numpy reference's, whatever the sharding — unequal,
empty and interleaved shards, row ids in any order — and each rank may feed its shard in chunks
or from a memmap."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st

import alscale
import reference as ref
import ranks
from hypotheses import SEEDS, examples, make_values, own_topk

WORLD = 3

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


@pytest.fixture(scope="module")
def group():
    pool = ranks.Ranks(WORLD)
    yield pool
    pool.close()


def shards(rng: np.random.Generator, n: int, world: int, mode: str) -> list[np.ndarray]:
    """Global row ids of each rank: contiguous blocks, interleaved, random unequal (some empty)."""
    if mode == "contiguous":
        return [alscale.shard_rows(n, rank=r, world_size=world) for r in range(world)]
    if mode == "interleaved":
        return [np.arange(r, n, world, dtype=np.int64) for r in range(world)]
    owner = rng.integers(0, world, n) if rng.random() < 0.5 else np.zeros(n, dtype=np.int64)  # all on rank 0
    return [rng.permutation(np.flatnonzero(owner == r)).astype(np.int64) for r in range(world)]


def local_args(logits, ids_by_rank, exclude, chunk, rng):
    """Per rank: its logits (a matrix, or a list of chunks), its row ids and its exclusion mask."""
    out = []
    for ids in ids_by_rank:
        x = logits[ids]
        if chunk and ids.size:
            cuts = np.sort(rng.integers(0, ids.size + 1, int(rng.integers(1, 4))))
            x = [x[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, ids.size])]
        kw = {"row_ids": ids}
        if exclude is not None:
            kw["exclude"] = exclude[ids]
        out.append((x, kw))
    return out


CASE = st.fixed_dictionaries(
    {
        "seed": SEEDS,
        "n": st.integers(1, 400),
        "c": st.integers(1, 9),
        "mode": st.sampled_from(["normal", "integer", "halves", "constant", "duplicate_rows", "peaked"]),
        "shard": st.sampled_from(["contiguous", "interleaved", "random"]),
        "budget": st.integers(0, 450),
        "exclude": st.booleans(),
        "chunk": st.booleans(),
    }
)


def draw(case):
    rng = np.random.default_rng(case["seed"])
    n, c = case["n"], case["c"]
    logits = make_values(rng, n, c, case["mode"])
    exclude = rng.random(n) < 0.3 if case["exclude"] else None
    ids = shards(rng, n, WORLD, case["shard"])
    return rng, logits, exclude, ids


def run_sharded(group, name, logits, budget, ids, exclude, chunk, rng, **extra):
    args = []
    for x, kw in local_args(logits, ids, exclude, chunk, rng):
        args.append((name, x, budget, {**kw, **extra}))
    out = group.run(ranks.select, args)
    for r in range(1, WORLD):
        np.testing.assert_array_equal(out[r], out[0], err_msg=f"rank {r} differs from rank 0")
    return out[0]


@examples(0.4)
@given(case=CASE, weighted=st.booleans())
def test_balanced_sharded_equals_one_process(group, case, weighted):
    rng, logits, exclude, ids = draw(case)
    weight = rng.standard_normal((logits.shape[1], 5)) if weighted else None
    got = run_sharded(group, "select_balanced", logits, case["budget"], ids, exclude, case["chunk"], rng, weight=weight)
    np.testing.assert_array_equal(got, alscale.select_balanced(logits, case["budget"], weight=weight, exclude=exclude))
    np.testing.assert_array_equal(got, ref.select_balanced(logits, case["budget"], weight, exclude))


@examples(0.3)
@given(case=CASE, name=st.sampled_from(["select_margin", "select_confidence", "select_entropy", "select_boundary"]))
def test_ranked_sharded_equals_one_process(group, case, name):
    rng, logits, exclude, ids = draw(case)
    got = run_sharded(group, name, logits, case["budget"], ids, exclude, case["chunk"], rng)
    np.testing.assert_array_equal(got, getattr(alscale, name)(logits, case["budget"], exclude=exclude))
    np.testing.assert_array_equal(got, own_topk(name, logits, case["budget"], exclude))


@examples(0.2)
@given(case=CASE, candidates=st.integers(0, 3), seed=st.integers(0, 2**64 - 1), n_clusters=st.integers(1, 12))
def test_cluster_margin_sharded_equals_one_process(group, case, candidates, seed, n_clusters):
    rng, logits, exclude, ids = draw(case)
    budget = case["budget"]
    clusters = rng.integers(0, n_clusters, logits.shape[0])
    km = None if candidates == 0 else budget * candidates
    kw = {"seed": seed, "candidates": km}
    args = [(x, clusters[i], budget, {**lkw, **kw}) for (x, lkw), i in zip(local_args(logits, ids, exclude, case["chunk"], rng), ids)]
    out = group.run(ranks.select_clusters, args)
    for r in range(1, WORLD):
        np.testing.assert_array_equal(out[r], out[0])
    one = alscale.select_cluster_margin(logits, clusters, budget, exclude=exclude, **kw)
    np.testing.assert_array_equal(out[0], one)
    scores = alscale.margin_scores(logits)  # the top-k rule on the kernel's own scores
    np.testing.assert_array_equal(out[0], ref.select_cluster_margin(scores, clusters, budget, seed, km, exclude))


def test_cluster_margin_seed_none_is_rank_zeros(group):
    """seed=None: every rank draws its own entropy; rank 0's seed must be used everywhere."""
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((300, 4))
    clusters = rng.integers(0, 10, 300)
    ids = shards(rng, 300, WORLD, "interleaved")
    out = group.run(ranks.select_clusters, [(logits[i], clusters[i], 40, {"row_ids": i}) for i in ids])
    for r in range(1, WORLD):
        np.testing.assert_array_equal(out[r], out[0])


def test_balanced_heavy_ties_need_more_passes_on_every_rank(group):
    """All rows tie for every class: earlier classes take more than later classes kept, so the
    ranks must feed their shards again (several passes), and still agree with one process."""
    n, c, budget = 3000, 120, 1200
    logits = np.zeros((n, c))
    sel = alscale.BalancedSelector(c, budget)
    sel.update(logits)
    assert not sel.advance(), "the case must need another pass"
    rng = np.random.default_rng(1)
    for mode in ("contiguous", "random"):
        ids = shards(rng, n, WORLD, mode)
        got = run_sharded(group, "select_balanced", logits, budget, ids, None, True, rng)
        np.testing.assert_array_equal(got, alscale.select_balanced(logits, budget))


def test_memmap_shards(group, tmp_path):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5000, 16)).astype(np.float32)
    path = str(tmp_path / "logits.npy")
    np.save(path, logits)
    blocks = [(0, 1234), (1234, 1234), (1234, 5000)]  # one empty shard
    for name in ("select_balanced", "select_margin"):
        out = group.run(ranks.select_memmap, [(name, path, b, 321, {}) for b in blocks])
        for r in range(WORLD):
            np.testing.assert_array_equal(out[r], getattr(alscale, name)(logits, 321))


def test_a_failing_rank_fails_every_rank(group):
    """Bad input on one rank raises on all ranks (naming it), instead of a deadlock."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((90, 5))
    ids = shards(rng, 90, WORLD, "contiguous")
    args = [("select_balanced", logits[i], 10, {"row_ids": i}) for i in ids]
    args[1] = ("select_balanced", logits[ids[1]][:, :4], 10, {"row_ids": ids[1]})  # 4 classes, not 5
    with pytest.raises(ranks.RankError) as info:
        group.run(ranks.select, args)
    errors = info.value.args[0]
    assert all(kind == "ValueError" for _, kind, _ in errors), errors
    assert "classes" in " ".join(msg for _, _, msg in errors)
    # the same group still works afterwards
    args = [("select_margin", logits[i], 10, {"row_ids": i}) for i in ids]
    assert (group.run(ranks.select, args)[2] == alscale.select_margin(logits, 10)).all()


def test_overlapping_row_ids_are_refused(group):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((60, 3))
    ids = [np.arange(0, 30), np.arange(25, 55), np.arange(55, 60)]  # rows 25..29 twice
    for name in ("select_margin", "select_balanced"):
        with pytest.raises(ranks.RankError) as info:
            group.run(ranks.select, [(name, logits[i], 60, {"row_ids": i}) for i in ids])
        assert all(kind == "ValueError" for _, kind, _ in info.value.args[0])


def test_bad_exclude_on_one_rank(group):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((60, 3))
    ids = shards(rng, 60, WORLD, "contiguous")
    args = [("select_margin", logits[i], 5, {"row_ids": i, "exclude": [0]}) for i in ids]
    args[2][3]["exclude"] = [99]  # out of range for rank 2's 20 rows
    with pytest.raises(ranks.RankError) as info:
        group.run(ranks.select, args)
    assert all("rank 2" in msg or "99" in msg for _, _, msg in info.value.args[0])


def test_group_without_init_process_group():
    if dist.is_initialized():
        pytest.skip("this process already has a process group")
    with pytest.raises(RuntimeError, match="not initialized"):
        alscale.select_margin(np.zeros((3, 2)), 1, group=object(), row_ids=[0, 1, 2])


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shard_rows_cover_the_pool(world):
    for n in (0, 1, 7, 100):
        parts = [alscale.shard_rows(n, rank=r, world_size=world) for r in range(world)]
        np.testing.assert_array_equal(np.concatenate(parts), np.arange(n))
        assert max(p.size for p in parts) - min(p.size for p in parts) <= 1


# ------------------------------------------------------------------ Cluster-Margin: edge cases
def _cm_sharded(group, logits, clusters, budget, ids, exclude=None, **kw):
    args = []
    for i in ids:
        local = {"row_ids": i, **kw}
        if exclude is not None:
            local["exclude"] = exclude[i]
        args.append((logits[i], clusters[i], budget, local))
    out = group.run(ranks.select_clusters, args)
    for r in range(1, WORLD):
        np.testing.assert_array_equal(out[r], out[0], err_msg=f"rank {r} differs from rank 0")
    return out[0]


@pytest.mark.parametrize("layout", ["all_on_last", "one_row_each", "uneven", "clusters_by_rank"])
def test_cluster_margin_sharded_edge_cases(group, layout):
    """Uneven shards, ranks with no rows, one row per rank, clusters held whole by one rank or
    spread over all, exclusions that empty a whole shard: always the single-process selection."""
    rng = np.random.default_rng(11)
    n = 3 if layout == "one_row_each" else 240
    logits = np.round(rng.standard_normal((n, 4)), 1)  # tied margins across ranks
    clusters = rng.integers(0, 9, n)
    if layout == "all_on_last":
        ids = [np.zeros(0, np.int64), np.zeros(0, np.int64), rng.permutation(n)]
    elif layout == "one_row_each":
        ids = [np.array([2]), np.array([0]), np.array([1])]
    elif layout == "uneven":
        ids = [np.arange(0, 7), np.arange(7, 200)[::-1].copy(), np.arange(200, n)]
    else:  # every cluster's rows on one rank, and rank 1's rows all excluded
        order = np.argsort(clusters % WORLD, kind="stable")
        ids = [order[clusters[order] % WORLD == r] for r in range(WORLD)]
    exclude = np.zeros(n, bool)
    if layout == "clusters_by_rank":
        exclude[ids[1]] = True
    exclude[rng.integers(0, n, n // 10)] = True
    for budget, candidates in ((1, None), (5, 5), (17, 60), (n, None), (n + 5, 3 * n)):
        kw = {"seed": 2**64 - 1 - budget, "candidates": candidates}
        got = _cm_sharded(group, logits, clusters, budget, ids, exclude, **kw)
        one = alscale.select_cluster_margin(logits, clusters, budget, exclude=exclude, **kw)
        np.testing.assert_array_equal(got, one)
        want = ref.select_cluster_margin(alscale.margin_scores(logits), clusters, budget, kw["seed"], candidates, exclude)
        np.testing.assert_array_equal(got, want)


def test_cluster_margin_sharded_bad_clusters_fail_every_rank(group):
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((90, 5))
    clusters = rng.integers(0, 6, 90)
    ids = shards(rng, 90, WORLD, "contiguous")
    args = [(logits[i], clusters[i], 10, {"row_ids": i, "seed": 1}) for i in ids]
    args[1] = (logits[ids[1]], clusters[ids[1]][:-1], 10, {"row_ids": ids[1], "seed": 1})  # one label short
    with pytest.raises(ranks.RankError) as info:
        group.run(ranks.select_clusters, args)
    errors = info.value.args[0]
    assert all(kind == "ValueError" for _, kind, _ in errors), errors
    assert all("clusters" in msg and ("rank 1" in msg or r == 1) for r, _, msg in errors), errors
    args[1] = (logits[ids[1]], clusters[ids[1]].astype(float), 10, {"row_ids": ids[1], "seed": 1})
    with pytest.raises(ranks.RankError) as info:
        group.run(ranks.select_clusters, args)
    assert any(kind == "TypeError" for _, kind, _ in info.value.args[0])
    # the group still works afterwards
    good = _cm_sharded(group, logits, clusters, 10, ids, seed=1)
    np.testing.assert_array_equal(good, alscale.select_cluster_margin(logits, clusters, 10, seed=1))


# ------------------------------------------------------------------ gather_rows / broadcast_array
@pytest.mark.parametrize("mode", ["contiguous", "interleaved", "random"])
def test_gather_rows_assembles_the_pool_on_rank_zero(group, mode):
    rng = np.random.default_rng(13)
    for n, d, dtype in ((50, 3, np.float32), (7, 1, np.float64), (0, 2, np.float32)):
        x = rng.standard_normal((n, d)).astype(dtype)
        ids = shards(rng, n, WORLD, mode)
        out = group.run(ranks.gather_then_broadcast, [(x[i], i, n) for i in ids])
        assert [has for has, _ in out] == [True, False, False]
        for _, got in out:
            assert got.dtype == dtype and got.shape == (n, d)
            np.testing.assert_array_equal(got, x)  # bit for bit: the same clustering input as one process
    np.testing.assert_array_equal(alscale.distributed.gather_rows(x[::-1], np.arange(n)[::-1], n, group=None), x)


def test_gather_rows_refuses_bad_shards_on_every_rank(group):
    x = np.arange(12.0).reshape(6, 2)
    cases = [
        ([np.arange(0, 3), np.arange(2, 4), np.arange(4, 5)], "repeat a row"),  # row 2 twice, row 5 missing
        ([np.arange(0, 2), np.arange(2, 4), np.arange(4, 5)], "5 rows in all, not the 6"),
        ([np.arange(0, 2), np.arange(2, 4), np.array([4, 9])], r"row_ids must lie in \[0, 6\)"),
    ]
    for ids, message in cases:
        with pytest.raises(ranks.RankError) as info:
            group.run(ranks.gather_then_broadcast, [(x[np.minimum(i, 5)], i, 6) for i in ids])
        errors = info.value.args[0]
        assert all(kind == "ValueError" for _, kind, _ in errors), errors
        assert all(re.search(message, msg) for _, _, msg in errors), (message, errors)
    ids = [np.arange(0, 2), np.arange(2, 4), np.arange(4, 6)]
    args = [(x[i], i, 6) for i in ids]
    args[2] = (x[ids[2]].astype(np.float32), ids[2], 6)
    with pytest.raises(ranks.RankError, match="differ in width or dtype"):
        group.run(ranks.gather_then_broadcast, args)


# ------------------------------------------------------------------ the loop's cluster-margin, sharded
LOOP_KW = dict(initial=20, budget=15, rounds=3, seed=4)


def test_loop_cluster_margin_sharded_equals_one_process(group, tmp_path):
    """torchrun-style: each rank scores its shard, rank 0 clusters the gathered embeddings once,
    the selection is sharded — and the labeled rows equal one process's, round by round."""
    from alscale.al.datasets import make_synthetic
    from alscale.al.loop import ActiveLearningLoop
    from alscale.al.train import linear_probe

    data = make_synthetic(300, 6, 4, seed=0)
    one = ActiveLearningLoop(data, "cluster-margin", linear_probe(epochs=3), **LOOP_KW)
    one.run()
    out = group.run(ranks.run_loop, [("cluster-margin", LOOP_KW)] * WORLD)
    for r, (order, clustered) in enumerate(out):
        np.testing.assert_array_equal(order, one.labeled_order, err_msg=f"rank {r}")
        assert clustered == (1 if r == 0 else 0), "rank 0 clusters once per run; the others receive the labels"


def test_loop_cluster_margin_sharded_resume(group, tmp_path):
    """A one-process run stopped after round 1, resumed sharded over the ranks from its
    checkpoint: no rank clusters again, and the picks equal the uninterrupted run's."""
    from alscale.al.datasets import make_synthetic
    from alscale.al.loop import ActiveLearningLoop
    from alscale.al.train import linear_probe

    data = make_synthetic(300, 6, 4, seed=0)
    whole = ActiveLearningLoop(data, "cluster-margin", linear_probe(epochs=3), **LOOP_KW)
    whole.run()

    class Stop(Exception):
        pass

    def stop(record):
        if record["round"] == 1:
            raise Stop

    path = tmp_path / "c.json"
    with pytest.raises(Stop):
        ActiveLearningLoop(data, "cluster-margin", linear_probe(epochs=3), checkpoint=path, progress=stop,
                           **LOOP_KW).run()
    out = group.run(ranks.run_loop, [("cluster-margin", LOOP_KW, str(path))] * WORLD)
    for r, (order, clustered) in enumerate(out):
        np.testing.assert_array_equal(order, whole.labeled_order, err_msg=f"rank {r}")
        assert clustered == 0, f"rank {r} clustered again"
