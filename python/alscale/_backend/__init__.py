"""The backend layer: every public call checks its inputs here once and runs on one backend.

:func:`pool_of` looks at the logits once and builds the one backend that serves the call:

- :class:`~alscale._backend.host.HostPool` — one matrix in host memory (numpy, CPU torch);
- :class:`~alscale._backend.device.DevicePool` — a CUDA array (torch, CuPy) read in place;
- :class:`~alscale._backend.sharded.ShardPool` — a chunk source (memmap, iterable of chunks,
  :func:`alscale.logits_from_embeddings`) and/or one rank's shard of a process group.

Each backend validates the logits, ``exclude`` and ``row_ids`` by the same rules
(:mod:`alscale._backend.arrays`) and offers the same operations — ``scores(rule)``,
``top(rule, k)``, ``balanced(k, head)``, ``cluster_margin(rule, labels, k, km, seed)`` — so a
public function is: check the scalars, build the pool, one call.
"""

from __future__ import annotations

from typing import Any

from .chunks import is_chunked
from . import device
from .arrays import UnitEmbeddings, as_threads, as_unit_embeddings
from .host import HostPool
from .rules import DEFAULT_REDUCTION, Head, Rule, boundary, confidence, entropy, margin, refuse_multilabel
from .sharded import ShardPool

__all__ = ["DEFAULT_REDUCTION", "Head", "Rule", "boundary", "confidence", "embeddings_of", "entropy", "margin", "pool_of",
           "host_only", "refuse_multilabel"]


def pool_of(logits: Any, *, exclude: Any = None, row_ids: Any = None, group: Any = None, num_threads: Any = 0,
            rule: Rule | None = None):
    """The backend for these logits (see the module docstring). ``rule``: the call's rule, when
    it decides whether a backend can serve it (multi-label scores have no GPU kernel yet)."""
    threads = as_threads(num_threads)
    if group is not None or row_ids is not None or is_chunked(logits):
        return ShardPool(logits, exclude, row_ids, group, threads)
    if device.is_device_array(logits):
        if rule is not None and rule.multilabel:
            raise NotImplementedError(
                "multilabel=True on CUDA tensors is not built yet (no GPU kernel for multi-label scores); "
                "pass logits.cpu() (or cupy.asnumpy(logits)): the CPU kernel reads it in one fused pass"
            )
        device.wants(logits)  # the clear error when this build has no GPU kernels
        return device.DevicePool(logits, exclude)
    return HostPool(logits, exclude, threads)


def embeddings_of(embeddings: Any, function: str, *, labeled: Any = None) -> UnitEmbeddings:
    """The cold-start input checked once: host memory (no GPU kernel yet), the embeddings as unit
    rows, ``labeled`` as a mask over them, and how to give the result back (numpy or torch)."""
    host_only(embeddings, function, "embeddings")
    return as_unit_embeddings(embeddings, labeled)


def host_only(x: Any, function: str, name: str) -> None:
    """Refuses a device array for a function that has no GPU kernel, saying so."""
    if device.is_device_array(x):
        raise ValueError(
            f"{function} has no GPU kernel yet; pass {name} in host memory (e.g. {name}.cpu() or cupy.asnumpy({name}))"
        )
