"""A pool of gloo processes for the sharded-selection tests.

The processes start once (importing torch costs seconds) and then run task after task, so
hypothesis can send them many random cases. Each task is a module-level function and one set of
arguments per rank; every rank runs it in a torch.distributed gloo group and sends back its
result or its exception. A task that does not finish in time (a deadlock) fails the test and the
pool is torn down, never hangs the suite.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import tempfile
from typing import Any, Callable

TIMEOUT_S = 120


class RankError(Exception):
    """A rank raised: (rank, exception type name, message)."""


def _serve(rank: int, world: int, store: str, tasks: Any, results: Any) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        while True:
            task = tasks.get()
            if task is None:
                break
            fn, args = task
            try:
                results.put((rank, True, fn(*args)))
            except Exception as err:  # reported to the parent, which raises
                results.put((rank, False, (type(err).__name__, str(err))))
    finally:
        dist.destroy_process_group()


class Ranks:
    def __init__(self, world: int):
        ctx = mp.get_context("spawn")
        self.world = world
        self._dir = tempfile.TemporaryDirectory()
        store = os.path.join(self._dir.name, "store")
        self._tasks = [ctx.Queue() for _ in range(world)]
        self._results = ctx.Queue()
        self._procs = [
            ctx.Process(target=_serve, args=(r, world, store, self._tasks[r], self._results), daemon=True)
            for r in range(world)
        ]
        for p in self._procs:
            p.start()

    def run(self, fn: Callable, per_rank_args: list[tuple]) -> list[Any]:
        """fn(*per_rank_args[r]) on every rank r; the results in rank order. If any rank raised,
        returns the list of (type name, message) per rank wrapped in RankError."""
        assert len(per_rank_args) == self.world
        for r, args in enumerate(per_rank_args):
            self._tasks[r].put((fn, args))
        out: list[Any] = [None] * self.world
        ok = [True] * self.world
        for _ in range(self.world):
            try:
                rank, good, value = self._results.get(timeout=TIMEOUT_S)
            except queue.Empty:
                self.close(force=True)
                raise TimeoutError(f"a sharded task did not finish in {TIMEOUT_S} s (deadlock?)") from None
            out[rank], ok[rank] = value, good
        if not all(ok):
            raise RankError([(r, *out[r]) if not ok[r] else (r, None, None) for r in range(self.world)])
        return out

    def close(self, force: bool = False) -> None:
        for p, q in zip(self._procs, self._tasks):
            if p.is_alive() and not force:
                q.put(None)
        for p in self._procs:
            p.join(timeout=0 if force else 20)
            if p.is_alive():
                p.kill()
        self._dir.cleanup()


# Tasks (module level, so the spawned processes can unpickle them).

def select(name: str, logits: Any, budget: int, kwargs: dict) -> Any:
    """alscale.<name>(logits, budget, **kwargs, group=WORLD) as a numpy array."""
    import numpy as np
    import torch.distributed as dist

    import alscale

    out = getattr(alscale, name)(logits, budget, group=dist.group.WORLD, **kwargs)
    return np.asarray(out)


def select_clusters(logits: Any, clusters: Any, budget: int, kwargs: dict) -> Any:
    import numpy as np
    import torch.distributed as dist

    import alscale

    return np.asarray(alscale.select_cluster_margin(logits, clusters, budget, group=dist.group.WORLD, **kwargs))


def select_memmap(name: str, path: str, rows: Any, budget: int, kwargs: dict) -> Any:
    """Each rank reads its rows' block [lo, hi) of an .npy file through a memmap."""
    import numpy as np
    import torch.distributed as dist

    import alscale

    lo, hi = rows
    m = np.load(path, mmap_mode="r")[lo:hi]
    out = getattr(alscale, name)(m, budget, group=dist.group.WORLD, row_ids=np.arange(lo, hi), **kwargs)
    return np.asarray(out)


def gather_then_broadcast(local: Any, row_ids: Any, n: int) -> Any:
    """alscale.distributed.gather_rows to rank 0, then broadcast_array of the result (tests)."""
    import numpy as np
    import torch.distributed as dist

    from alscale.distributed import broadcast_array, gather_rows

    whole = gather_rows(local, row_ids, n, group=dist.group.WORLD)
    return whole is not None, broadcast_array(whole if whole is not None else np.zeros(0), group=dist.group.WORLD)


def run_loop(strategy: str, kwargs: dict, checkpoint: Any = None) -> Any:
    """A small ActiveLearningLoop sharded over the ranks (make_synthetic(300, 6, 4, seed=0),
    linear_probe(epochs=3)); resumed from ``checkpoint`` when it exists. Returns the labeled
    order and whether the strategy clustered in this process."""
    import torch.distributed as dist

    from alscale.al.datasets import make_synthetic
    from alscale.al.loop import ActiveLearningLoop
    from alscale.strategies import cluster_margin as module
    from alscale.al.train import linear_probe

    calls = []
    real = module.cluster_embeddings
    module.cluster_embeddings = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        data = make_synthetic(300, 6, 4, seed=0)
        if checkpoint is not None:
            loop = ActiveLearningLoop.resume(checkpoint, data, strategy, linear_probe(epochs=3),
                                             group=dist.group.WORLD, **kwargs)
        else:
            loop = ActiveLearningLoop(data, strategy, linear_probe(epochs=3), group=dist.group.WORLD, **kwargs)
        loop.run()
    finally:
        module.cluster_embeddings = real
    return loop.labeled_order, len(calls)
