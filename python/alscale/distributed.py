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

__all__ = ["shard_rows", "Comm", "init_from_env"]

_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "RuntimeError": RuntimeError, "IndexError": IndexError}


def _dist():
    import torch.distributed as dist

    return dist


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
    from ._backend.arrays import as_int

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


class Comm:
    """One process (``group=None``) or a torch.distributed process group."""

    def __init__(self, group: Any = None):
        self.group = group
        self.rank, self.size = 0, 1
        if group is None:
            return
        dist = _dist()
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "group= was given but torch.distributed is not initialized: call "
                "torch.distributed.init_process_group(...) first (torchrun sets up the environment)"
            )
        if not isinstance(group, dist.ProcessGroup):
            raise TypeError(f"group must be a torch.distributed ProcessGroup (e.g. dist.group.WORLD), got {group!r}")
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        if self.rank < 0:
            raise ValueError("this process is not a member of the group it passed")

    @property
    def sharded(self) -> bool:
        return self.group is not None

    def _device(self):
        import torch

        if _dist().get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def agree(self, error: BaseException | None, info: Any) -> list[Any]:
        """Every rank's ``info``, in rank order — or, if any rank failed, that rank's error
        raised on every rank (the first failing rank's, by rank)."""
        if not self.sharded:
            if error is not None:
                raise error
            return [info]
        failure = None if error is None else (type(error).__name__, str(error))
        gathered: list[Any] = [None] * self.size
        _dist().all_gather_object(gathered, (failure, info), group=self.group)
        for rank, (fail, _) in enumerate(gathered):
            if fail is None:
                continue
            if rank == self.rank and error is not None:
                raise error
            name, message = fail
            raise _ERRORS.get(name, RuntimeError)(f"rank {rank} failed: {message}")
        return [info for _, info in gathered]

    def all_gather(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
        """``out[r][j]``: rank r's ``arrays[j]``. 8-byte dtypes (int64/float64); one message.

        All arrays travel packed in one int64 buffer, padded to the largest rank's length.
        """
        if not self.sharded:
            return [arrays]
        import torch

        for a in arrays:
            if a.dtype.itemsize != 8 or a.ndim != 1:
                raise TypeError(f"all_gather packs 1-D 8-byte arrays, got {a.dtype} of shape {a.shape}")
        sizes = self.agree(None, [int(a.size) for a in arrays])
        width = max(sum(s) for s in sizes)
        packed = np.zeros(width, dtype=np.int64)
        at = 0
        for a in arrays:
            packed[at : at + a.size] = np.ascontiguousarray(a).view(np.int64)
            at += a.size
        device = self._device()
        mine = torch.from_numpy(packed).to(device)
        parts = [torch.empty_like(mine) for _ in range(self.size)]
        _dist().all_gather(parts, mine, group=self.group)
        out = []
        for rank, part in enumerate(parts):
            flat = part.cpu().numpy()
            at, mine_out = 0, []
            for a, n in zip(arrays, sizes[rank]):
                mine_out.append(flat[at : at + n].view(a.dtype).copy())
                at += n
            out.append(mine_out)
        return out
