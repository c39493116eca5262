"""Sharded pools over torch.distributed: the collectives alscale needs, and nothing more.

Selection over a sharded pool exchanges candidate sets only: each rank reduces its rows to the
few that could be selected (the top k of a score, or BASE's per-class candidates: O(C·k)), the
ranks all-gather those, and every rank merges them the same way, so all ranks get the identical
global result — the one a single process would give on the whole pool. Nothing proportional to
the pool's size N is ever sent. The group's backend decides where the messages travel: gloo on
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

__all__ = ["shard_rows", "Comm", "init_from_env"]


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
