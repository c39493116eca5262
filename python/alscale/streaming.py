"""BalancedSelector: exact BASE over a pool fed in chunks, mergeable and serializable."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from ._backend import host_only, refuse_multilabel
from ._backend.arrays import (numpy_wrap, as_budget, as_exclude, as_int, as_logits, as_row_ids, as_threads,
                              inverse_norms)
from ._backend.stream import BaseStream, checked_snapshot, weight_fingerprint

__all__ = ["BalancedSelector"]

_MAX_CLASSES = 1 << 31  # beyond any classifier; per-class state of 2^62 classes cannot be allocated

_BUSY = ("BalancedSelector is in use by another thread; a selector takes one call at a time: give each "
         "thread its own selector and merge() them, or serialize the calls with a lock")


class BalancedSelector:
    """Streaming BASE: the same selection as :func:`alscale.select_balanced` on the whole pool,
    whatever the chunking, the row order or the number of selectors merged.

    Memory is O(C·k): each class keeps its best candidates only. When heavy ties let earlier
    classes take more of a class's candidates than it kept, :meth:`advance` returns False and the
    pool must be fed once more (the rows taken so far are skipped); the result stays exact.

    :meth:`result` returns the kind of the logits fed to :meth:`update`: a numpy int64 array, or
    an int64 torch tensor when the chunks were torch tensors.

    A selector is not shared between threads: it takes one call at a time, and a call made while
    another thread is inside one (``update`` runs without the GIL) raises RuntimeError rather
    than waiting. Feed one selector per thread and :meth:`merge` them.

    Parameters
    ----------
    num_classes : int
    budget : int
        Rows to select; clipped to the rows fed (minus those excluded).
    weight : array_like or torch.Tensor, shape (num_classes, D), optional
        The linear head's weight (see :func:`alscale.boundary_scores`).
    capacity : int, optional
        Candidates each class keeps beyond its quota (at most the quotas of the classes before
        it). Default: 64 + 4·(budget // C) (``_core.default_extra``).
    multilabel : bool, optional
        True raises ValueError: BASE is defined for one softmax, not for independent sigmoids
        (see :func:`alscale.select_balanced`).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> logits = np.random.default_rng(0).normal(size=(1000, 10))
    >>> sel = alscale.BalancedSelector(10, 50)
    >>> for start in range(0, 1000, 300):
    ...     _ = sel.update(logits[start:start + 300], row_offset=start)
    >>> while not sel.advance():            # only with heavy ties: feed the pool again
    ...     _ = sel.update(logits, row_offset=0)
    >>> bool((sel.result() == alscale.select_balanced(logits, 50)).all())
    True
    """

    def __init__(self, num_classes: Any, budget: Any, *, weight: Any = None, capacity: Any = None,
                 multilabel: bool = False):
        refuse_multilabel(multilabel, "BalancedSelector")
        classes = as_int(num_classes, "num_classes", minimum=1, maximum=_MAX_CLASSES,
                         hint=" (the selector keeps per-class state)")
        b = as_budget(budget)
        extra = None if capacity is None else as_int(capacity, "capacity")
        self._stream = BaseStream.new(classes, b, capacity=extra, inv=inverse_norms(weight, classes))
        self._next_row = 0
        self._wrap = None  # the result's kind: that of the logits given to update()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _busy(self, *others: BalancedSelector):
        """Holds this selector (and ``others``) for one call; refuses one already in use."""
        held = []
        try:
            for sel in (self, *others):
                if not sel._lock.acquire(blocking=False):
                    raise RuntimeError(_BUSY)
                held.append(sel._lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    @property
    def num_classes(self) -> int:
        return self._stream.classes

    @property
    def passes(self) -> int:
        """Passes over the pool started so far beyond the first (0 in the common case)."""
        with self._busy():
            return self._stream.passes

    def update(
        self,
        logits: Any,
        *,
        row_offset: Any = None,
        row_ids: Any = None,
        exclude: Any = None,
        num_threads: int = 0,
    ) -> BalancedSelector:
        """Feed a chunk of the pool. A NaN or inf in any of its rows, excluded ones included,
        raises ValueError and leaves the selector as it was.

        Parameters
        ----------
        logits : array_like or torch.Tensor, shape (n, num_classes)
        row_offset : int, optional
            The chunk's rows are row_offset + arange(n).
        row_ids : int array of shape (n,), optional
            The pool row of each chunk row (any order). Without either, rows continue from the
            previous chunk of this pass (0 for the first).
        exclude : index array or boolean mask over the chunk's rows, optional
        num_threads : int, optional

        Returns
        -------
        self
        """
        host_only(logits, "BalancedSelector.update", "logits")
        with self._busy():
            x = as_logits(logits, allow_empty=True)
            if row_offset is not None and row_ids is not None:
                raise ValueError("give row_offset or row_ids, not both")
            ids = None
            if row_ids is not None:
                ids = as_row_ids(row_ids, x.rows)
                offset = 0
            else:
                offset = self._next_row if row_offset is None else as_int(row_offset, "row_offset")
                if offset + x.rows - 1 > 2**63 - 1:
                    raise ValueError(f"row_offset {offset} + {x.rows} rows overflows int64 row ids")
            self._stream.feed(x, offset, ids, as_exclude(exclude, x.rows), as_threads(num_threads))
            if ids is None:
                self._next_row = offset + x.rows
            if self._wrap is None:
                self._wrap = x.wrap
        return self

    def merge(self, other: BalancedSelector) -> BalancedSelector:
        """Add the candidates of a selector fed with other rows of the same pool (in place)."""
        if not isinstance(other, BalancedSelector):
            raise TypeError(f"can only merge a BalancedSelector, got {type(other).__name__}")
        if other is self:
            raise ValueError("cannot merge a selector with itself")
        if not np.array_equal(self._stream.fingerprint(), other._stream.fingerprint()):
            raise ValueError("cannot merge selectors built with different head weights")
        with self._busy(other):
            self._stream.merge(other._stream)
            if self._wrap is None:
                self._wrap = other._wrap
        return self

    def advance(self) -> bool:
        """Serve the classes. True when the selection is complete; False when candidate sets ran
        short (heavy ties): feed the same pool once more with :meth:`update`, then advance again."""
        with self._busy():
            return self._advance()

    def _advance(self) -> bool:
        done = self._stream.advance()
        if not done:
            self._next_row = 0
        return done

    def result(self):
        """The selected pool rows (int64), class 0's picks first, each class's in score order:
        a numpy array, or a torch tensor when the logits fed were torch tensors."""
        with self._busy():
            if not self._stream.done and not self._advance():
                raise RuntimeError(
                    "BalancedSelector needs another pass over the pool: heavy ties exhausted the candidates "
                    f"kept (pass {self._stream.passes}); feed the pool again with update() and call "
                    "advance() until it returns True, or build the selector with a larger capacity"
                )
            return (self._wrap or numpy_wrap)(self._stream.result())

    def state_dict(self) -> dict:
        """The full state as numpy arrays and ints (for checkpoints or sending to other ranks)."""
        with self._busy():
            d = self._stream.snapshot()
            d["next_row"] = self._next_row
            d["torch_result"] = int(self._wrap is not None and self._wrap is not numpy_wrap)
        d["weight_fingerprint"] = self._stream.fingerprint()
        return d

    @classmethod
    def from_state_dict(cls, state: dict, *, weight: Any = None) -> BalancedSelector:
        """Rebuild a selector from :meth:`state_dict` (pass the same head weight).

        The state is checked on load (ValueError naming the field): counts, pass, picks, taken
        rows and candidates must be those of a selector, not an edited or truncated dict."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from BalancedSelector.state_dict(), got {type(state).__name__}")
        core = checked_snapshot(state, "BalancedSelector.state_dict()")
        torch_result = as_int(state.get("torch_result", 0), "state['torch_result']", maximum=1)
        classes = core["num_classes"]
        inv = inverse_norms(weight, classes)
        built = np.asarray(state.get("weight_fingerprint", []))
        if built.ndim != 1 or built.size not in (0, 16) or (
                built.size and (built.dtype.kind not in "iu" or built.min() < 0 or built.max() > 255)):
            raise ValueError("state['weight_fingerprint'] must be empty or 16 bytes, as state_dict() gives")
        built = built.astype(np.uint8)
        if built.size and inv is None:
            raise ValueError("the state was built with a head weight: pass the same weight= to from_state_dict()")
        if not built.size and inv is not None:
            raise ValueError("the state was built without a head weight, but weight= was given: "
                             "call from_state_dict() without weight=")
        if not np.array_equal(weight_fingerprint(inv), built):
            raise ValueError("the weight given does not match the one the state was built with")
        self = cls.__new__(cls)
        self._stream = BaseStream.from_snapshot(core, inv)
        self._next_row = as_int(state.get("next_row", 0), "state['next_row']")
        self._wrap = None
        if torch_result:
            try:
                import torch
            except ImportError:
                raise ValueError("state['torch_result'] is 1 but torch cannot be imported") from None
            self._wrap = as_logits(torch.zeros((0, 1)), allow_empty=True).wrap
        self._lock = threading.Lock()
        return self
