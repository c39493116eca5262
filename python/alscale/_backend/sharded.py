"""Selection over local pools: chunks (memmaps, iterators, embeddings) and shards (group=).

Two reductions cover every selection rule:

- ranked: the k smallest (key, global id) over all rows, keys = ±score. Each chunk contributes
  its own top k (:func:`alscale._core.topk_ranked`, ties to the smaller global id), a running
  merge keeps O(k) of them, and the ranks' candidates are gathered and merged the same way, so
  the result is exactly the single-process top k of the whole pool.
- balanced: each rank feeds its chunks to a :class:`~alscale._backend.stream.BaseStream` (the
  state behind :class:`alscale.BalancedSelector` too); the ranks gather their
  per-class candidates (O(C·k) each), every rank merges them in rank order and serves the
  classes; if heavy ties exhaust the candidates, all ranks feed their shard once more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .comm import Comm
from .arrays import numpy_wrap
from .chunks import LocalPool
from .rules import Head, Rule
from .stream import BaseStream


class _Ranked:
    """The k smallest (key, id) candidates seen so far, with an int64 payload per candidate."""

    def __init__(self, k: int):
        self.k = k
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0

    def add(self, keys: np.ndarray, ids: np.ndarray, payload: np.ndarray) -> None:
        self.parts.append((keys, ids, payload))
        self.size += keys.size
        if self.size > 2 * self.k + 4096:
            self.parts = [self.merged()]
            self.size = self.parts[0][0].size

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys = np.concatenate([p[0] for p in self.parts])
        ids = np.concatenate([p[1] for p in self.parts])
        payload = np.concatenate([p[2] for p in self.parts])
        k, i, pos = _core.merge_ranked(keys, ids, self.k)
        return k, i, payload[pos]


def _empty_pool() -> ValueError:
    return ValueError("logits have no rows: the pool is empty")


def ranked(pool: LocalPool, k: int, rule: Rule, comm: Comm, num_threads: int,
           labels: np.ndarray | Exception | None = None) -> tuple[Any, np.ndarray, np.ndarray]:
    """The global top k: (wrap, global ids, labels of the picks); without ``labels`` the third
    is not meaningful across ranks (positions in the gathered candidates). ``labels`` may be
    this rank's argument error, raised on every rank."""
    best = _Ranked(k)
    error = None
    try:
        if isinstance(labels, Exception):  # this rank's bad arguments (select_cluster_margin)
            raise labels
        for chunk in pool.chunks():
            with chunk.rows_named():
                scores = rule.host_scores(chunk.x, num_threads)
            keys, ids, pos = _core.topk_ranked(scores, k, chunk.mask, rule.largest, chunk.ids, chunk.start,
                                               num_threads)
            pos = pos + chunk.start
            if labels is not None:
                if chunk.start + chunk.x.rows > labels.shape[0]:
                    raise ValueError(f"clusters has {labels.shape[0]} labels but the local pool has more rows")
                pos = labels[pos]
            best.add(keys, ids, pos)
        if labels is not None and pool.rows != labels.shape[0]:
            raise ValueError(f"clusters must have one label per local row ({pool.rows}), got {labels.shape[0]}")
    except Exception as err:  # shared with the other ranks before raising
        error = err
    rows = comm.agree(error, pool.rows or 0)
    if sum(rows) == 0:
        raise _empty_pool()
    keys, ids, payload = best.merged()
    if comm.sharded:  # the labels travel only when there are some (Cluster-Margin)
        parts = comm.all_gather([keys, ids] if labels is None else [keys, ids, payload])
        keys, ids = (np.concatenate([p[j] for p in parts]) for j in range(2))
        _, ids, pos = _core.merge_ranked(keys, ids, k)
        payload = pos if labels is None else np.concatenate([p[2] for p in parts])[pos]
    return pool.wrap or numpy_wrap, ids, payload


def balanced(pool: LocalPool, budget: int, head: Head, comm: Comm, num_threads: int):
    """BASE over a local pool, exact across chunks and ranks: each rank feeds its chunks into the
    streaming BASE state (:class:`~alscale._backend.stream.BaseStream`, the one behind
    :class:`alscale.BalancedSelector`),
    the ranks merge their per-class candidates in rank order and every rank serves the classes;
    when heavy ties exhaust the candidates, every rank feeds its shard once more."""
    stream = None
    while True:
        error = None
        try:
            for chunk in pool.chunks():
                if stream is None:
                    stream = BaseStream.new(chunk.x.classes, budget, inv=head.inv(chunk.x.classes))
                with chunk.rows_named():
                    stream.feed(chunk.x, chunk.start, chunk.ids, chunk.mask, num_threads)
            info = (pool.rows or 0, pool.classes, None if stream is None else head.fingerprint(pool.classes))
        except Exception as err:
            error, info = err, None
        infos = comm.agree(error, info)
        if sum(i[0] for i in infos) == 0:
            raise _empty_pool()
        classes = {i[1] for i in infos if i[1] is not None}
        if len(classes) > 1:
            raise ValueError(f"ranks disagree on the number of classes: {sorted(classes)}")
        prints = {i[2] for i in infos if i[2] is not None}
        if len(prints) > 1:
            raise ValueError("ranks passed different head weights (weight=) to select_balanced")
        if stream is None:  # an empty shard: an empty state of the agreed shape
            classes_agreed = classes.pop()
            stream = BaseStream.new(classes_agreed, budget, inv=head.inv(classes_agreed))  # the others' checks
        if comm.sharded:
            stream = stream.merged(comm.all_gather(stream.candidates()))
        if stream.advance():
            return pool.wrap or numpy_wrap, stream.result()


class ShardPool:
    """The chunked / sharded backend: a :class:`LocalPool` (a memmap, chunks, or this rank's
    shard with its global ``row_ids``) over a :class:`Comm` (one process, or a process group).
    Every method gives every rank the result one process would give on the whole pool."""

    def __init__(self, logits: Any, exclude: Any, row_ids: Any, group: Any, threads: int):
        self.pool = LocalPool(logits, row_ids=row_ids, exclude=exclude)
        self.comm = Comm(group)
        self.threads = threads

    def scores(self, rule: Rule):
        """This rank's scores, in local row order (a chunk source's scores concatenated)."""
        parts = []
        for chunk in self.pool.chunks():
            with chunk.rows_named():
                parts.append(rule.true_scores(rule.host_scores(chunk.x, self.threads), chunk.x.classes))
        if not parts:
            raise _empty_pool()
        return (self.pool.wrap or numpy_wrap)(np.concatenate(parts))

    def top(self, rule: Rule, k: int):
        wrap, ids, _ = ranked(self.pool, k, rule, self.comm, self.threads)
        return wrap(ids)

    def balanced(self, k: int, head: Head):
        wrap, rows = balanced(self.pool, k, head, self.comm, self.threads)
        return wrap(rows)

    def cluster_margin(self, rule: Rule, labels: np.ndarray, k: int, km: int, seed: int):
        seed = self.comm.agree(None, seed)[0]  # rank 0's seed everywhere
        wrap, rows, picked = ranked(self.pool, km, rule, self.comm, self.threads, labels=labels)
        return wrap(_core.cluster_round_robin(rows, picked, k, seed))
