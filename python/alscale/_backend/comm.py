"""The collectives a sharded selection needs over torch.distributed, and nothing more: agree
on success (or raise the same error on every rank) and all-gather packed candidate arrays.
See :mod:`alscale.distributed` for the public side (shard_rows, init_from_env)."""

from __future__ import annotations

from typing import Any

import numpy as np

_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "RuntimeError": RuntimeError, "IndexError": IndexError}


def _dist():
    import torch.distributed as dist

    return dist


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
