"""Streaming BASE: the one wrapper over the C++ state (csrc/balanced.hpp).

:class:`BaseStream` is what :class:`alscale.BalancedSelector` and the chunked / sharded
:func:`alscale.select_balanced` (:mod:`alscale._backend.sharded`) both drive: feed validated
chunks, merge other states or other ranks' candidates, serve the classes, and write / read the
snapshot. The snapshot's fields are listed here once (:data:`SCALARS`, :data:`ARRAYS`); a
rank sends the subset :data:`CANDIDATES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .arrays import Logits, as_int, fingerprint

#: The snapshot's integer fields (``done`` is written as 0 or 1).
SCALARS = ("num_classes", "budget", "extra", "pass", "start_class", "available", "fed", "done")
#: Integer fields absent from snapshots saved before they existed, with the value they then had.
LATER_SCALARS = {"pass_memory": 0}
#: The snapshot's 1-D arrays and the dtype kinds each accepts.
ARRAYS = {"capacity": "iu", "taken": "iu", "picks": "iu", "counts": "iu", "keys": "f", "rows": "iu"}
#: What a rank sends the others (O(C·k)): its per-class candidates and the rows it fed.
CANDIDATES = {"counts": np.int64, "keys": np.float64, "rows": np.int64, "fed": np.int64}


def weight_fingerprint(inv: Any) -> np.ndarray:
    """16 bytes that identify the head weight (empty without one): of its inverse-norm table, or of
    the weight itself when the norms are computed pair by pair (many classes)."""
    if inv is None:
        return np.zeros(0, dtype=np.uint8)
    data = inv.weight if isinstance(inv, _core.PairNorms) else np.ascontiguousarray(inv)
    return np.frombuffer(fingerprint(np.asarray(data)), dtype=np.uint8).copy()  # no copy of the data


class BaseStream:
    """The streaming BASE state of one pool: its per-class candidates, with the head's inverse
    norms ``inv`` (None without a head weight) it scores every chunk with."""

    def __init__(self, state: Any, inv: Any = None):
        self.state = state
        self.inv = inv

    @classmethod
    def new(cls, classes: int, budget: int, *, capacity: int | None = None, inv: Any = None) -> BaseStream:
        """An empty state; ``capacity``: candidates each class keeps beyond its quota (default
        ``_core.default_extra``)."""
        b = min(budget, 1 << 62)  # clipped to the rows fed anyway; keeps int64 sums exact
        extra = _core.default_extra(classes, b) if capacity is None else capacity
        return cls(_core.BalancedState(classes, b, extra), inv)

    @property
    def classes(self) -> int:
        return self.state.num_classes

    @property
    def passes(self) -> int:
        return self.state.pass_index

    @property
    def done(self) -> bool:
        return self.state.done

    def fingerprint(self) -> np.ndarray:
        return weight_fingerprint(self.inv)

    def feed(self, x: Logits, offset: int, ids: np.ndarray | None, mask: np.ndarray | None, num_threads: int) -> None:
        """Feed a validated chunk: rows ``offset + arange(n)``, or ``ids`` when given."""
        if x.classes != self.classes:
            raise ValueError(f"logits chunk has {x.classes} classes but the selector was built for {self.classes}")
        if x.rows:
            self.state.update(x.array, x.bf16, offset, ids, mask, self.inv, num_threads)

    def merge(self, other: BaseStream) -> None:
        """Add the candidates of a state fed with other rows of the same pool (in place)."""
        self.state.merge(other.state)

    def candidates(self) -> list[np.ndarray]:
        """What this rank sends the others (:data:`CANDIDATES`, in that order)."""
        s = self.state.snapshot()
        return [np.asarray(s[k], dtype).reshape(-1) for k, dtype in CANDIDATES.items()]

    def merged(self, parts: list[list[np.ndarray]]) -> BaseStream:
        """Every rank's :meth:`candidates` merged in rank order into a state of this pass."""
        mine = dict(self.state.snapshot())
        merged = None
        for part in parts:
            fields = dict(zip(CANDIDATES, part))
            fields["fed"] = int(fields["fed"][0])
            state = _core.BalancedState.from_snapshot(dict(mine, **fields))
            if merged is None:
                merged = state
            else:
                merged.merge(state)
        return BaseStream(merged, self.inv)

    def advance(self) -> bool:
        """Serve the classes: True when the selection is complete, False when the pool must be
        fed once more (heavy ties exhausted the candidates kept)."""
        return self.state.advance()

    def result(self) -> np.ndarray:
        return self.state.result()

    def snapshot(self) -> dict:
        """The state's fields (:data:`SCALARS`, :data:`LATER_SCALARS`, :data:`ARRAYS`) as ints
        and numpy arrays."""
        d = dict(self.state.snapshot())
        d["done"] = int(d["done"])
        return d

    @classmethod
    def from_snapshot(cls, core: dict, inv: Any) -> BaseStream:
        """Rebuild from a snapshot checked by :func:`checked_snapshot`."""
        return cls(_core.BalancedState.from_snapshot(core), inv)


def checked_snapshot(state: dict, what: str) -> dict:
    """The fields of a :meth:`BaseStream.snapshot`, each checked (ValueError naming it): ints,
    ``done`` 0 or 1, 1-D arrays of the right kind; ``what`` names the method that writes such
    dicts, for the error when fields are missing. The C++ state checks their consistency."""
    missing = [k for k in SCALARS + tuple(ARRAYS) if k not in state]
    if missing:
        raise ValueError(f"state lacks {', '.join(map(repr, missing))}: not a {what}")
    core: dict = {k: as_int(int(state[k]) if isinstance(state[k], (bool, np.bool_)) else state[k],
                            f"state[{k!r}]", minimum=-(2**63)) for k in SCALARS}
    if core["done"] not in (0, 1):
        raise ValueError(f"state['done'] must be 0 or 1, got {core['done']}")
    for k, kind in ARRAYS.items():
        a = np.asarray(state[k])
        if a.ndim != 1 or (a.size and a.dtype.kind not in kind):
            raise ValueError(f"state[{k!r}] must be a 1-D numeric array, got {a.dtype} of shape {a.shape}")
        core[k] = a
    for k, before in LATER_SCALARS.items():
        core[k] = as_int(state.get(k, before), f"state[{k!r}]")
    core["num_classes"] = as_int(core["num_classes"], "state['num_classes']", minimum=1)
    return core
