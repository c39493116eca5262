"""Sharded pools over torch.distributed: the collectives alscale needs, and nothing more.

Selection over a sharded pool exchanges candidate sets only: each rank reduces its rows to the
few that could be selected (the top k of a score, or BASE's per-class candidates: O(C·k)), the
ranks all-gather those, and every rank merges them the same way, so all ranks get the identical
global result — the one a single process would give on the whole pool. Nothing proportional to
the pool's size N is sent by a selection (:func:`gather_rows` and :func:`broadcast_array` are for
what one rank computes once per run: Cluster-Margin's clustering of the embeddings). The group's backend decides where the messages travel: gloo on
CPU tensors, NCCL on the current CUDA device (set it with ``torch.cuda.set_device``).

A rank whose local work fails (bad input, a chunk of the wrong width) does not leave the others
waiting in a collective: the ranks first agree that every one succeeded, and otherwise all raise
the same error, naming the rank.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend.arrays import as_int
from ._backend.comm import Comm, _dist

__all__ = ["shard_rows", "Comm", "init_from_env", "gather_rows", "broadcast_array"]


def shard_rows(n: int, *, group: Any = None, rank: int | None = None, world_size: int | None = None) -> np.ndarray:
    """The global rows of this rank's contiguous shard of a pool of ``n`` rows (int64).

    Rows are split as evenly as possible in rank order (the first ``n % world_size`` ranks get
    one row more), as :func:`numpy.array_split` does. Pass ``rank``/``world_size``, or take them
    from ``group`` (the default group when neither is given and torch.distributed is initialized).

    Examples
    --------
    >>> import alscale
    >>> alscale.shard_rows(10, rank=1, world_size=3)
    array([4, 5, 6])
    """
    n = as_int(n, "n")
    if rank is None or world_size is None:
        comm = Comm(group if group is not None else _dist().group.WORLD)
        rank, world_size = comm.rank, comm.size
    world_size = as_int(world_size, "world_size", minimum=1)
    rank = as_int(rank, "rank", maximum=world_size - 1)
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return np.arange(start, start + base + (rank < extra), dtype=np.int64)


def init_from_env(device: str | None = None) -> Any:
    """Under ``torchrun`` (WORLD_SIZE > 1 in the environment): initialise the default process
    group — NCCL when ``device`` is a CUDA device (each rank on cuda:LOCAL_RANK), else gloo — and
    return it; otherwise None (one process)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    dist = _dist()
    if not dist.is_initialized():
        cuda = device is not None and str(device).startswith("cuda")
        if cuda:
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.group.WORLD


def _torch_of(comm: Comm, a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(comm._device())


def gather_rows(local: Any, row_ids: Any, n: int, *, group: Any, root: int = 0) -> np.ndarray | None:
    """Every rank's rows assembled into one (n, D) array on rank ``root`` (None on the others):
    row ``row_ids[i]`` of the result is ``local[i]`` of the rank holding it. The ranks' row ids
    must be disjoint and cover 0..n-1, their arrays share D and dtype (else every rank raises
    the same ValueError). Used once per run, e.g. to cluster a sharded pool's embeddings on one
    rank; its cost is the whole array's size, sent once.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.distributed.gather_rows(np.eye(2), [1, 0], 2, group=None)  # one process
    array([[0., 1.],
           [1., 0.]])
    """
    comm = Comm(group)
    ids, x, error, info = None, None, None, None
    try:
        n = as_int(n, "n")
        x = np.asarray(local)
        if x.ndim != 2:
            raise ValueError(f"local must be 2-D (rows, features), got shape {x.shape}")
        ids = np.asarray(row_ids)
        if ids.shape != (x.shape[0],) or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"row_ids must be {x.shape[0]} integer row ids (one per local row), got {ids.dtype} "
                             f"of shape {ids.shape}")
        ids = ids.astype(np.int64)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise ValueError(f"row_ids must lie in [0, {n}), got {int(ids.min())}..{int(ids.max())}")
        info = (x.shape[0], x.shape[1], x.dtype.str)
    except Exception as err:
        error = err
    infos = comm.agree(error, info)
    if len({i[1:] for i in infos}) > 1:
        raise ValueError(f"the ranks' arrays differ in width or dtype: {[i[1:] for i in infos]}")
    if sum(i[0] for i in infos) != n:
        raise ValueError(f"the ranks hold {sum(i[0] for i in infos)} rows in all, not the {n} of the pool")
    if not comm.sharded:
        out = np.empty((n, x.shape[1]), dtype=x.dtype)
        if np.unique(ids).size != n:
            raise ValueError("row_ids repeat a row")
        out[ids] = x
        return out
    dist = _dist()
    width, rows = x.shape[1], max(i[0] for i in infos)
    pad_x = np.zeros((rows, width), dtype=x.dtype)
    pad_x[: x.shape[0]] = x
    pad_ids = np.full(rows, -1, dtype=np.int64)
    pad_ids[: ids.size] = ids
    mine = root == comm.rank
    send_x, send_ids = _torch_of(comm, pad_x), _torch_of(comm, pad_ids)
    got_x = [send_x.clone() for _ in range(comm.size)] if mine else None  # own buffers (from_numpy shares)
    got_ids = [send_ids.clone() for _ in range(comm.size)] if mine else None
    dst = dist.get_global_rank(group, root)
    dist.gather(send_x, got_x, dst=dst, group=group)
    dist.gather(send_ids, got_ids, dst=dst, group=group)
    out, error = None, None
    if mine:
        out = np.empty((n, width), dtype=x.dtype)
        seen = np.zeros(n, dtype=bool)
        for r, (px, pi) in enumerate(zip(got_x, got_ids)):
            k = infos[r][0]
            rid = pi.cpu().numpy()[:k]
            if seen[rid].any() or np.unique(rid).size != k:
                error = ValueError(f"row_ids repeat a row (rank {r}'s row {int(rid[np.argmax(seen[rid])])} is "
                                   "held twice)")
                break
            seen[rid] = True
            out[rid] = px.cpu().numpy()[:k]
    comm.agree(error, None)
    return out


def broadcast_array(a: Any, *, group: Any, root: int = 0) -> np.ndarray:
    """Rank ``root``'s numpy array (any shape, a numeric dtype) on every rank; ``a`` is ignored
    on the others. One process (``group=None``): ``a`` itself.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.distributed.broadcast_array(np.arange(3), group=None)
    array([0, 1, 2])
    """
    comm = Comm(group)
    if not comm.sharded:
        return np.asarray(a)
    dist = _dist()
    src = dist.get_global_rank(group, root)
    head = [(np.asarray(a).shape, np.asarray(a).dtype.str) if comm.rank == root else None]
    dist.broadcast_object_list(head, src=src, group=group)
    shape, dtype = head[0]
    buf = np.ascontiguousarray(a, dtype=dtype) if comm.rank == root else np.empty(shape, dtype=dtype)
    t = _torch_of(comm, buf)
    dist.broadcast(t, src=src, group=group)
    return t.cpu().numpy().reshape(shape)
