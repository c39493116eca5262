"""The strategy layer: every active-learning strategy, one class each, in one registry.

numpy only (torch tensors are accepted where the library takes them). The loop (``alscale
run``, :class:`alscale.al.loop.ActiveLearningLoop`), the labelling projects (``alscale query``,
:class:`alscale.ActiveLearner`) and user code all pick strategies here, so the same name, options
and inputs give the same picks everywhere.

Each strategy declares what it needs from the model on the pool — ``logits``, ``mc_samples``
(T stochastic passes), ``embeddings``, ``weight`` (the linear head) or the true ``labels``
(oracle baselines) — so a front end computes only that; its options are its constructor's
keyword arguments, with their defaults written once there (:meth:`Strategy.option_defaults`);
what it computes once and reuses (Cluster-Margin's clusters, ProbCover's δ) is its state
(:meth:`Strategy.state` / :meth:`Strategy.load_state`), saved in the loop's checkpoints and in
a labelling project.

Registering a strategy of your own is one subclass with a ``name``: defining it registers it,
and ``alscale run``, ``alscale query`` and :class:`alscale.ActiveLearner` all see it.

>>> import numpy as np
>>> from alscale.strategies import PoolView, Strategy, get
>>> class LowestFirst(Strategy):
...     '''The unlabeled rows in index order.'''
...     name = "lowest-first"
...     def select(self, pool, budget, rng):
...         return np.flatnonzero(~pool.labeled)[:budget]
>>> get("lowest-first").select(PoolView(labeled=np.array([True, False, False])), 1, 0).tolist()
[1]
>>> unregister("lowest-first")

Examples
--------
>>> from alscale.strategies import available
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
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, FrozenSet, List, Optional, Type

import numpy as np

__all__ = ["NEEDS", "PoolView", "Strategy", "available", "describe", "get", "get_class", "register", "unregister"]

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
    mc_samples : re-iterable over T of (N, C) logits, or a (T, N, C) array, optional
        T stochastic passes of the model over the pool (MC dropout), for the Bayesian strategies.
    clusters : numpy.ndarray of int64, shape (N,), optional
        The pool's cluster ids, given by the user (Cluster-Margin then does not cluster).
    progress : callable (str) -> None, optional
        Told one line at each stage of long work (the kNN graph, HAC).
    """

    labeled: np.ndarray
    logits: Optional[np.ndarray] = None
    embeddings: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    num_classes: Optional[int] = None
    rows: Optional[np.ndarray] = None
    group: Any = None
    mc_samples: Any = None
    clusters: Any = None
    progress: Optional[Callable[[str], None]] = None

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
    #: The name of the score column of the picks (``alscale query``'s CSV), or None.
    score_column: ClassVar[Optional[str]] = None
    #: The options that the state depends on (a project reuses a saved state only while they and
    #: the inputs are the same); empty for strategies without state.
    state_options: ClassVar[tuple] = ()

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

    @classmethod
    def option_defaults(cls) -> dict:
        """The options (constructor keywords other than ``num_threads``) and their defaults;
        keyword-only ones are old names kept for one minor version, not listed."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.name not in ("self", "num_threads")
                and p.kind == p.POSITIONAL_OR_KEYWORD and p.default is not p.empty}

    @classmethod
    def summary(cls) -> str:
        """One line on the strategy: the first sentence of its class's own docstring, else of its
        module's (the part after 'name, name:'), roles and ``literals`` unwrapped, at most 100
        characters."""
        import re
        import sys
        import textwrap

        doc = cls.__dict__.get("__doc__")
        if not doc:
            head, _, rest = (getattr(sys.modules.get(cls.__module__), "__doc__", None) or "").partition(":")
            doc = rest if cls.name in head.replace(",", " ").split() else ""
        text = " ".join(doc.strip().split("\n\n")[0].split())
        text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "")
        first = re.match(r"(.+?[.!?])(?=\s+[A-Z(]|$)", text)
        text = textwrap.shorten(first.group(1) if first else text, 100, placeholder="...")
        return text[:1].upper() + text[1:] if text else "(no description)"

    def options(self) -> dict:
        """Settings that change the picks (recorded in loop checkpoints)."""
        return {k: v for k, v in vars(self).items() if k != "num_threads" and not k.startswith("_")}

    def select(self, pool: PoolView, budget: int, rng: Any) -> np.ndarray:
        """``min(budget, unlabeled)`` distinct unlabeled pool rows (int64, in pick order).

        ``rng`` is the randomness: a ``numpy.random.Generator`` (the loop's) or an integer seed
        (a labelling project's, recorded in its history); passed to the library's ``seed=``."""
        raise NotImplementedError

    def scores(self, pool: PoolView, ids: np.ndarray) -> Optional[np.ndarray]:
        """The score of each picked row (``score_column``), in the order of ``ids``; None when
        the strategy has no per-row score. Some use what their last :meth:`select` computed
        (TypiClust's clusters): call it with the ids that returned, on the same instance."""
        return None

    def columns(self, pool: PoolView, ids: np.ndarray) -> Dict[str, np.ndarray]:
        """The columns of the picks beside their id (``alscale query``'s CSV, a Label Studio
        task's meta), in order: ``{score_column: scores}``, or more where a strategy has more
        to say (BASE: the distance and the class each pick was taken for); empty without."""
        values = None if self.score_column is None else self.scores(pool, ids)
        return {} if values is None else {self.score_column: np.asarray(values)}

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


def unregister(name: str) -> None:
    """Removes a strategy from the registry (e.g. a test's or an example's)."""
    _REGISTRY.pop(name, None)


def available() -> List[str]:
    """The registered strategy names, sorted."""
    return sorted(_REGISTRY)


def get_class(name: str) -> Type[Strategy]:
    """The strategy class registered as ``name``; a ValueError naming the close matches and
    every strategy otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(name), available(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown strategy {name!r}{hint}; available: {', '.join(available())}") from None


def get(name: str, **options: Any) -> Strategy:
    """A new strategy by name; ``options`` go to its constructor (e.g. ``partitions=``). An
    option the strategy does not take is a ValueError naming the ones it takes."""
    cls = get_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in cls.option_defaults().items()) or "none"
        raise ValueError(f"strategy {name!r} has no option {', '.join(unknown)} (its options: {takes})")
    return cls(**options)


def describe(*, options: bool = False) -> List[str]:
    """One line per registered strategy, sorted by name: ``name  summary`` (``alscale run
    --list``), and with ``options`` the strategy's options and defaults after it (``alscale
    query --help``, ``alscale run --help``)."""
    names = available()
    width = max(map(len, names), default=0)
    lines = []
    for name in names:
        cls = _REGISTRY[name]
        line = f"{name:<{width}}  {cls.summary()}"
        if options:
            opts = ", ".join(f"{k}={v!r}" for k, v in cls.option_defaults().items())
            line += f" [needs: {', '.join(sorted(cls.needs)) or 'nothing'}" + (f"; options: {opts}]" if opts else "]")
        lines.append(line)
    return lines


def multilabel_options(multilabel: Any, reduction: Any) -> dict:
    """The keywords a strategy passes to the library's uncertainty functions: ``{}`` for one
    softmax, ``{"multilabel": True, "reduction": ...}`` for one sigmoid per class; a TypeError
    or ValueError naming a bad value."""
    if not isinstance(multilabel, (bool, np.bool_)):
        raise TypeError(f"multilabel must be True or False, got {multilabel!r}")
    if reduction not in ("mean", "min"):
        raise ValueError(f"reduction must be 'mean' or 'min', got {reduction!r}")
    return {"multilabel": True, "reduction": reduction} if multilabel else {}


def picked_scores(score: Callable[..., Any], logits: Any, ids: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``score(rows, **kwargs)`` of the picked rows only (read in ascending row order, so a
    memmap is read forward), returned in the order of ``ids`` as float64."""
    return picked_values(lambda rows, at: score(rows, **kwargs), logits, ids)


def picked_values(fn: Callable[[np.ndarray, np.ndarray], Any], logits: Any, ids: np.ndarray) -> np.ndarray:
    """``fn(rows, at)`` over the picked rows, a chunk at a time (rows: the logits of
    ``ids[at]`` as stored, ``at`` positions in ``ids``, ascending by id so that a memmap is read forward),
    gathered in the order of ``ids`` as float64: a batch of 1M picks never needs its (B, C)
    logits at once (80 GB at C = 20,000)."""
    from .._backend.chunks import default_chunk_rows

    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    out = np.empty(ids.size, dtype=np.float64)
    step = default_chunk_rows(8 * int(logits.shape[-1]))
    for s in range(0, ids.size, step):
        at = order[s : s + step]
        out[at] = np.asarray(fn(np.asarray(logits[ids[at]]), at), dtype=np.float64)
    return out


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
    importlib.import_module(f"{__name__}.{_m}")
