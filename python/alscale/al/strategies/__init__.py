"""Active-learning strategies, one module each, registered by name.

Each strategy declares what it needs from the model on the pool — ``logits``, ``embeddings``,
``weight`` (the linear head) or the true ``labels`` (oracle baselines) — so the loop computes
only that. Adding a strategy is one module: subclass :class:`Strategy` with a ``name`` and
``needs``, implement ``select``, and import the module below.

Examples
--------
>>> import numpy as np
>>> from alscale.al.strategies import PoolView, available, get
>>> "base" in available() and "coreset" in available()
True
>>> s = get("margin")
>>> sorted(s.needs)
['logits']
>>> pool = PoolView(labeled=np.array([True, False, False]), logits=np.array([[4.0, 0], [1, 1], [0, 2]]))
>>> s.select(pool, 1, np.random.default_rng(0)).tolist()
[1]
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, FrozenSet, List, Optional, Type

import numpy as np

__all__ = ["NEEDS", "PoolView", "Strategy", "available", "get", "register"]

#: What a strategy may ask the loop for.
NEEDS = frozenset({"logits", "embeddings", "weight", "labels", "mc_samples"})

_REGISTRY: Dict[str, Type["Strategy"]] = {}


@dataclass
class PoolView:
    """What the loop computed on the pool for one selection (only what the strategy needs).

    Attributes
    ----------
    labeled : numpy.ndarray of bool, shape (N,)
        The rows already labeled (never selected again).
    logits : numpy.ndarray of shape (N, C), or a re-iterable chunk source, optional
        The loop hands a chunk source (:meth:`alscale.al.train.TorchTrainer.logits`: (n_i, C)
        float32 chunks, rows in order, computed while they are walked) unless the strategy sets
        ``logits_in_memory``; alscale's selection functions take either.
    embeddings : numpy.ndarray, shape (N, D), optional
        The features the head reads (the penultimate layer; the inputs for a linear probe).
    weight : numpy.ndarray, shape (C, D), optional
        The linear head's weight.
    labels : numpy.ndarray of int64, shape (N,), optional
        True labels (oracle strategies only).
    num_classes : int, optional
    rows : numpy.ndarray of int64, optional
        Sharded runs (torchrun) with a strategy that is ``shardable``: ``logits``/``embeddings``
        hold only these global pool rows, this rank's shard; ``labeled`` and ``labels`` stay
        global.
    group : torch.distributed ProcessGroup, optional
        The ranks sharing the pool (with ``rows``).
    """

    labeled: np.ndarray
    logits: Optional[np.ndarray] = None
    embeddings: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    num_classes: Optional[int] = None
    rows: Optional[np.ndarray] = None
    group: Any = None
    mc_samples: Any = None  # T MC-dropout samples of the pool's logits: a re-iterable over T of (N, C)

    def selection_kwargs(self) -> dict:
        """``exclude=`` for a selection function over ``logits`` — and, when the pool is sharded
        over ranks (``rows`` set), that rank's ``row_ids=`` and ``group=``."""
        if self.rows is None:
            return {"exclude": self.labeled}
        return {"exclude": self.labeled[self.rows], "row_ids": self.rows, "group": self.group}

    @property
    def size(self) -> int:
        return int(self.labeled.shape[0])


class Strategy:
    """Base class: subclasses set ``name`` (registered on definition) and ``needs``."""

    name: ClassVar[str] = ""
    needs: ClassVar[FrozenSet[str]] = frozenset()
    #: True when ``select`` handles a sharded PoolView (``rows``/``group``): each rank then
    #: scores its shard only. Otherwise every rank scores the whole pool and selects alone.
    shardable: ClassVar[bool] = False
    #: True when ``select`` needs ``logits`` as one (N, C) array (BADGE); otherwise the loop
    #: hands a chunk source, so the pool's N x C logits are never held at once.
    logits_in_memory: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        unknown = set(cls.needs) - NEEDS
        if unknown:
            raise TypeError(f"strategy {cls.name!r} needs unknown inputs {sorted(unknown)}; choose from {sorted(NEEDS)}")
        register(cls)

    def __init__(self, num_threads: int = 0) -> None:
        self.num_threads = num_threads

    def options(self) -> dict:
        """Settings that change the picks (recorded in loop checkpoints)."""
        return {k: v for k, v in vars(self).items() if k != "num_threads"}

    def select(self, pool: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        """``min(budget, unlabeled)`` distinct unlabeled pool rows (int64, in pick order)."""
        raise NotImplementedError

    def state(self) -> dict:
        """What the strategy computed once and reuses in later rounds (JSON-able; saved in the
        loop's checkpoints so that a resumed run gives exactly the same picks)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restores :meth:`state`."""

    def check_state(self, pool_size: int) -> None:
        """After :meth:`load_state` from a checkpoint: a ValueError if the state does not fit a
        pool of ``pool_size`` rows."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def register(cls: Type[Strategy]) -> Type[Strategy]:
    """Adds a strategy class to the registry under ``cls.name`` (done by subclassing)."""
    other = _REGISTRY.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"two strategies are named {cls.name!r}: {other.__module__} and {cls.__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> List[str]:
    """The registered strategy names, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **options: Any) -> Strategy:
    """A new strategy by name; ``options`` go to its constructor (e.g. ``partitions=``)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(available())}") from None
    return cls(**options)


# One module per strategy; importing a module registers it.
_MODULES = (
    "random",
    "balanced_random",
    "uncertainty",
    "mase",
    "base",
    "coreset",
    "badge",
    "cluster_margin",
    "typiclust",
    "probcover",
    "bayes",
)
for _m in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _err:  # cluster_margin lands with the HAC issue
        if _err.name != f"{__name__}.{_m}":
            raise
