"""Annotation projects: query a batch from a model's outputs, have people label it, teach the
labels back — round after round, with no label lost or misplaced (``alscale init`` / ``query`` /
``teach`` / ``status``).

The store
---------
A project is a folder whose state is ONE file, ``project.json``, replaced whole by every command
that changes anything (written to a temporary file beside it, fsynced, ``os.replace``d, the folder
fsynced): the settings (default strategy and options, class names, number of classes, pool size,
single- or multi-label), every batch queried (round, strategy, options, budget, seed, ids), every
label (id, class or classes, round) and every correction. So a command is one atomic write:
killed at any point, it leaves the project exactly as it was, and a refused command writes
nothing (a refused ``teach --classes cat,dgo`` stores no classes; a query that fails stores no
settings and no round). We chose one state file over SQLite because the project's size (a few
numbers per label: 13 MB at a million labels, a few seconds to read, check and rewrite) makes
rewriting it per command affordable, it
keeps the atomicity argument to one ``os.replace`` that the tests can kill mid-way, and the file
stays readable JSON. ``clusters.npz`` / ``probcover.npz`` are caches beside it (a strategy's state,
keyed by a fingerprint of its inputs and settings; a damaged one is computed again).

- Writers (``query``, ``teach``, changed settings) hold an exclusive lock on ``.lock`` for the
  whole command; a second writer is refused at once. Readers (``status``, :attr:`labels`) take a
  shared lock, never block, and work on a read-only project (without a lock when ``.lock`` cannot
  be opened); while a writer runs they read the last committed state, which is whole.
- Every field is validated on read; a damaged file is one ValueError naming the file and the
  field (``project.json: labels.ids[3]: id 20 is outside the pool (ids 0..9)``), never a
  traceback.
- Ids must be in the pool: a project learns its pool size at creation (``pool_size=``, ``alscale
  init --pool-size``) or from its first query's arrays; teaching before it is known is refused.
  Labels must be classes: the number of classes is known from ``classes=`` (names), ``num_classes=``
  or a query's logits, and teaching before it is known is refused.
- A multi-label project (``multilabel=True``, stored at creation or set by the first query with
  ``--multilabel`` before any label) records each id's set of positive classes, possibly empty;
  a single-label one exactly one class per id. The two are never mixed.
- Projects of alscale 0.x's first layout (``project.json`` version 1 + ``labels.csv`` +
  ``history.json``) are read as they are (validated the same way, a labels.csv missing its last
  newline included) and migrated on their first write: the version-2 ``project.json`` is written
  atomically, then the two old files are removed.

A missing project is an error naming its path for every command line; ``alscale init`` (or
``alscale query --new``) creates one. ``ActiveLearner(path)`` in Python still creates a missing
project (``create=False`` refuses instead).

numpy only: no torch needed (torch tensors are accepted where the library accepts them). The file
formats (label CSVs, Label Studio files, the atomic writer) are :mod:`alscale.formats`.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import os
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import strategies as _strategies
from ._backend.arrays import fingerprint
from .formats import (LS_ID, Answers, as_id, label_studio_config, label_studio_tasks, plural, read_answers,
                      read_label_studio, read_labels_csv, write_atomic)

__all__ = ["ActiveLearner", "Batch", "Labels", "QueryContext", "STRATEGIES", "register", "format_status",
           "read_label_studio", "label_studio_tasks", "label_studio_config", "read_labels_csv", "write_atomic"]

CONFIG, LABELS, HISTORY, CLUSTERS, LOCK = "project.json", "labels.csv", "history.json", "clusters.npz", ".lock"
#: Every file a project may hold (never a valid output file of ``alscale query --out``).
PROJECT_FILES = (CONFIG, LABELS, HISTORY, CLUSTERS, LOCK)
FORMAT = "alscale-project"
VERSION = 2
_as_id = as_id
_ = LS_ID  # re-exported for old imports (alscale.project.LS_ID)

# ------------------------------------------------------------------------------ strategies
# The strategies are alscale.strategies' (one registry for the loop, alscale query and this
# class); what follows adapts the project's inputs to them.

#: The strategies by name (a read-only view of :mod:`alscale.strategies`' registry).
STRATEGIES = types.MappingProxyType(_strategies._REGISTRY)

#: What a project can hand a strategy (the loop can also hand the true labels, for oracles).
_PROJECT_NEEDS = frozenset({"logits", "mc_samples", "embeddings", "weight"})


@dataclass
class QueryContext:
    """Deprecated (alscale.strategies.PoolView replaces it): what a strategy registered with
    :func:`register` gets — the logits, the budget, the labeled rows (a boolean mask, never to
    be picked), the seed and the other inputs."""

    logits: Any
    budget: int
    labeled: np.ndarray
    seed: Any
    embeddings: Any = None
    weight: Any = None
    clusters: Any = None
    learner: Optional["ActiveLearner"] = None
    options: dict = field(default_factory=dict)

    @property
    def pool_size(self) -> int:
        return int(self.labeled.size)


def register(name: str, select: Callable[[QueryContext], Any], *, needs: Iterable[str] = ("logits",),
             summary: str = "", **_ignored: Any) -> type:
    """Deprecated: define a :class:`alscale.strategies.Strategy` subclass instead (one registry
    for the loop, ``alscale query`` and :class:`ActiveLearner`). Registers ``select(ctx) -> ids``
    under ``name`` as such a subclass."""
    import warnings

    warnings.warn("alscale.project.register is deprecated: subclass alscale.strategies.Strategy with a name "
                  "(one registry for alscale run, alscale query and ActiveLearner)", DeprecationWarning, stacklevel=2)
    unknown = set(needs) - {"logits", "embeddings"}
    if unknown:
        raise ValueError(f"needs: unknown inputs {sorted(unknown)} (logits, embeddings)")

    def run(self, pool, budget, rng):
        return select(QueryContext(pool.logits, budget, pool.labeled, rng, pool.embeddings, pool.weight,
                                   pool.clusters))

    return type(f"Registered_{name}", (_strategies.Strategy,),
                {"name": name, "needs": frozenset(needs), "select": run, "__doc__": summary})


def _pool_shape(cls: type, logits: Any) -> tuple:
    """(pool rows, classes) of a strategy's logits: (N, C), or (T, N, C) MC samples."""
    shape = getattr(logits, "shape", None)
    want = 3 if "mc_samples" in cls.needs else 2
    if shape is None or len(shape) != want:
        what = "(T, N, C): T stochastic passes (MC dropout) over the pool" if want == 3 else "(pool, classes)"
        raise ValueError(f"logits must be an array of shape {what} for strategy {cls.name!r}, got "
                         f"{type(logits).__name__}"
                         + (f" of shape {tuple(shape)}" if shape is not None else ""))
    return int(shape[-2]), int(shape[-1])


def _strategy_options(cls: type, options: dict) -> dict:
    """The project's stored options that the strategy takes (its constructor's keywords)."""
    takes = cls.option_defaults()
    return {k: v for k, v in options.items() if k in takes and v is not None}


# ------------------------------------------------------------------------------ the store
class Labels(NamedTuple):
    """The labels so far, in the order they were taught: pool ids, classes, rounds. ``labels``
    is an int64 array of class indices (single-label), or a list with each id's tuple of positive
    classes (multi-label; an empty tuple: no positive class)."""

    ids: np.ndarray
    labels: Any
    rounds: np.ndarray


class Batch(NamedTuple):
    """One queried batch: its round (1, 2, …), strategy, budget, seed and the ids picked."""

    round: int
    strategy: str
    budget: int
    seed: int
    ids: np.ndarray


def _bad(where: str, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem}")


def _int(value: Any, where: str, low: Optional[int] = None, *, none: bool = False) -> Optional[int]:
    if value is None and none:
        return None
    if type(value) is not int or (low is not None and value < low):
        want = "an integer" + (f" >= {low}" if low is not None else "") + (" or null" if none else "")
        raise _bad(where, f"must be {want}, got {value!r}")
    return value


def _ints(values: Any, where: str) -> np.ndarray:
    """A JSON list of integers as int64 (each checked: one line naming the first bad entry)."""
    if not isinstance(values, list):
        raise _bad(where, f"must be a list of integers, got {type(values).__name__}")
    if not set(map(type, values)) <= {int}:  # (bools, floats and strings are refused, not converted)
        k = next(k for k, v in enumerate(values) if type(v) is not int)
        raise _bad(f"{where}[{k}]", f"must be an integer, got {values[k]!r}")
    try:
        return np.array(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    except OverflowError:
        k = next(k for k, v in enumerate(values) if not -2**63 <= v < 2**63)
        raise _bad(f"{where}[{k}]", f"{values[k]} is not a 64-bit integer") from None


def _in_pool(ids: np.ndarray, n: Optional[int], where: str) -> None:
    bad = np.flatnonzero((ids < 0) | (ids >= n)) if n is not None else np.flatnonzero(ids < 0)
    if bad.size:
        k = int(bad[0])
        pool = f" (the pool has ids 0..{n - 1})" if n else (" (the pool is empty)" if n == 0 else "")
        raise _bad(f"{where}[{k}]", f"id {int(ids[k])} is outside the pool{pool}")


def _distinct(ids: np.ndarray, where: str) -> None:
    if ids.size > 1:
        order = np.argsort(ids, kind="stable")
        dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
        if dup.size:
            k = int(order[dup[0] + 1])
            raise _bad(f"{where}[{k}]", f"id {int(ids[k])} appears twice")


class _State:
    """A project's whole state (what ``project.json`` holds), validated when read."""

    SETTINGS = ("strategy", "options", "classes", "num_classes", "pool_size", "multilabel")

    def __init__(self, settings: dict, rounds: list, ids: np.ndarray, labels: Any, taught: np.ndarray,
                 corrections: list, legacy: bool = False):
        self.settings, self.rounds, self.ids, self.labels, self.taught = settings, rounds, ids, labels, taught
        self.corrections, self.legacy, self.changed = corrections, legacy, False

    @classmethod
    def new(cls) -> "_State":
        e = np.zeros(0, np.int64)
        settings = {"strategy": "base", "options": {}, "classes": None, "num_classes": None, "pool_size": None,
                    "multilabel": False}
        state = cls(settings, [], e, e.copy(), e.copy(), [])
        state.changed = True
        return state

    @property
    def multilabel(self) -> bool:
        return bool(self.settings["multilabel"])

    # ---------------------------------------------------------------- reading
    @classmethod
    def parse_settings(cls, obj: dict, where: str) -> dict:
        s = {}
        s["strategy"] = obj.get("strategy", "base")
        if not isinstance(s["strategy"], str) or not s["strategy"]:
            raise _bad(f"{where}: field 'strategy'", f"must be a strategy name, got {s['strategy']!r}")
        s["options"] = obj.get("options", {})
        if not isinstance(s["options"], dict) or not all(isinstance(k, str) for k in s["options"]):
            raise _bad(f"{where}: field 'options'", f"must be an object of strategy options, got {s['options']!r}")
        classes = obj.get("classes")
        if classes is not None and (not isinstance(classes, list) or not classes
                                    or not all(isinstance(c, str) and c for c in classes)
                                    or len(set(classes)) != len(classes)):
            raise _bad(f"{where}: field 'classes'", f"must be null or a list of distinct class names, got {classes!r}")
        s["classes"] = classes
        s["num_classes"] = _int(obj.get("num_classes"), f"{where}: field 'num_classes'", 1, none=True)
        if classes is not None and s["num_classes"] not in (None, len(classes)):
            raise _bad(f"{where}: field 'num_classes'", f"is {s['num_classes']} but 'classes' names {len(classes)}")
        if classes is not None:
            s["num_classes"] = len(classes)
        s["pool_size"] = _int(obj.get("pool_size"), f"{where}: field 'pool_size'", 0, none=True)
        s["multilabel"] = obj.get("multilabel", False)
        if not isinstance(s["multilabel"], bool):
            raise _bad(f"{where}: field 'multilabel'", f"must be true or false, got {s['multilabel']!r}")
        return s

    @staticmethod
    def parse_rounds(rounds: Any, where: str, n: Optional[int]) -> list:
        if not isinstance(rounds, list):
            raise _bad(where, f"must be a list of batches, got {type(rounds).__name__}")
        for k, b in enumerate(rounds):
            at = f"{where}[{k}]"
            if not isinstance(b, dict):
                raise _bad(at, f"must be an object, got {type(b).__name__}")
            for key in ("round", "strategy", "budget", "seed", "ids"):
                if key not in b:
                    raise _bad(at, f"has no field {key!r}")
            if b["round"] != k + 1 or type(b["round"]) is not int:
                raise _bad(f"{at}.round", f"must be {k + 1}, got {b['round']!r}")
            if not isinstance(b["strategy"], str):
                raise _bad(f"{at}.strategy", f"must be a strategy name, got {b['strategy']!r}")
            _int(b["budget"], f"{at}.budget", 0)
            _int(b["seed"], f"{at}.seed")
            ids = _ints(b["ids"], f"{at}.ids")
            _in_pool(ids, n, f"{at}.ids")
            _distinct(ids, f"{at}.ids")
            if "options" in b and not isinstance(b["options"], dict):
                raise _bad(f"{at}.options", f"must be an object, got {b['options']!r}")
        return rounds

    def check_labels(self, where: str) -> None:
        """The labels against the settings: ids in the pool and distinct, classes in range,
        rounds in 0..len(rounds)."""
        n, c = self.settings["pool_size"], self.settings["num_classes"]
        _in_pool(self.ids, n, f"{where}.ids")
        _distinct(self.ids, f"{where}.ids")
        if self.multilabel:
            for k, ys in enumerate(self.labels):
                if any(y < 0 or (c is not None and y >= c) for y in ys) or len(set(ys)) != len(ys):
                    raise _bad(f"{where}.labels[{k}]", f"{list(ys)} is not a set of classes"
                               + (f" 0..{c - 1}" if c else ""))
        else:
            bad = np.flatnonzero((self.labels < 0) | (self.labels >= c) if c is not None else self.labels < 0)
            if bad.size:
                k = int(bad[0])
                raise _bad(f"{where}.labels[{k}]", f"class {int(self.labels[k])} is not a class"
                           + (f" of the project (0..{c - 1})" if c else ""))
        bad = np.flatnonzero((self.taught < 0) | (self.taught > len(self.rounds)))
        if bad.size:
            k = int(bad[0])
            raise _bad(f"{where}.rounds[{k}]", f"round {int(self.taught[k])} is not one of 0..{len(self.rounds)}")

    @classmethod
    def parse(cls, text: str, path: Path) -> "_State":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise ValueError(f"{path}: not valid JSON ({err or type(err).__name__})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"{path} is not an alscale project file (its field 'format' is not {FORMAT!r})")
        version = obj.get("version")
        if version not in (1, 2) or type(version) is not int:
            raise _bad(f"{path}: field 'version'", f"{version!r} is not a project version this alscale reads (1, 2)")
        settings = cls.parse_settings(obj, str(path))
        if version == 1:
            return cls.legacy(settings, path.parent)
        n = settings["pool_size"]
        rounds = cls.parse_rounds(obj.get("rounds", []), f"{path}: field 'rounds'", n)
        labels = obj.get("labels", {"ids": [], "labels": [], "rounds": []})
        where = f"{path}: field 'labels'"
        if not isinstance(labels, dict):
            raise _bad(where, f"must be an object with ids, labels and rounds, got {type(labels).__name__}")
        for key in ("ids", "labels", "rounds"):
            if not isinstance(labels.get(key), list):
                raise _bad(f"{where}.{key}", "must be a list")
        ids = _ints(labels["ids"], f"{where}.ids")
        taught = _ints(labels["rounds"], f"{where}.rounds")
        if settings["multilabel"]:
            ys = []
            for k, item in enumerate(labels["labels"]):
                ys.append(tuple(_ints(item, f"{where}.labels[{k}]").tolist()))
        else:
            ys = _ints(labels["labels"], f"{where}.labels")
        if not len(ids) == len(ys) == len(taught):
            raise _bad(where, f"ids, labels and rounds differ in length ({len(ids)}, {len(ys)}, {len(taught)})")
        corrections = obj.get("corrections", [])
        if not isinstance(corrections, list) or not all(isinstance(c, dict) for c in corrections):
            raise _bad(f"{path}: field 'corrections'", "must be a list of objects")
        state = cls(settings, rounds, ids, ys, taught, corrections)
        state.check_labels(where)
        return state

    @classmethod
    def legacy(cls, settings: dict, folder: Path) -> "_State":
        """A version-1 project: project.json (settings) + labels.csv + history.json."""
        import csv

        n, c = settings["pool_size"], settings["num_classes"]
        rounds: list = []
        hist = folder / HISTORY
        try:
            text = hist.read_text()
        except FileNotFoundError:
            text = None
        if text is not None:
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as err:
                raise ValueError(f"{hist}: not valid JSON ({err or type(err).__name__})") from None
            if not isinstance(obj, dict) or "rounds" not in obj:
                raise ValueError(f"{hist}: not an alscale history (no field 'rounds')")
            rounds = cls.parse_rounds(obj["rounds"], f"{hist}: field 'rounds'", n)
        ids, ys, taught = [], [], []
        path = folder / LABELS
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.strip():
            reader = csv.reader(io.StringIO(text, newline=""))
            first = {}
            try:
                for row in reader:
                    where = f"{path} line {reader.line_num}"
                    if reader.line_num == 1:
                        if [h.strip() for h in row] != ["id", "label", "round"]:
                            raise ValueError(f"{where}: the header must be id,label,round, got {','.join(row)!r}")
                        continue
                    if not row or all(not x.strip() for x in row):
                        continue
                    if len(row) != 3:
                        raise ValueError(f"{where}: {len(row)} fields, expected 3 (id,label,round)")
                    i, y, r = (_cell_int(x, f"{where}: {name}") for x, name in zip(row, ("id", "label", "round")))
                    if i < 0 or (n is not None and i >= n) or i >= 2**63:
                        raise ValueError(f"{where}: id {i} is outside the pool"
                                         + (f" (ids 0..{n - 1})" if n else ""))
                    if y < 0 or (c is not None and y >= c) or y >= 2**63:
                        raise ValueError(f"{where}: label {y} is not a class" + (f" (0..{c - 1})" if c else ""))
                    if not 0 <= r <= len(rounds):
                        raise ValueError(f"{where}: round {r} is not one of 0..{len(rounds)}")
                    if i in first:
                        if ys[first[i][0]] != y:
                            raise ValueError(f"{where}: id {i} is labeled {y}, but {first[i][1]} labels it "
                                             f"{ys[first[i][0]]}")
                        continue
                    first[i] = (len(ids), where)
                    ids.append(i)
                    ys.append(y)
                    taught.append(r)
            except csv.Error as err:
                raise ValueError(f"{path} line {reader.line_num}: {err}") from None
        state = cls(settings, rounds, np.array(ids, np.int64), np.array(ys, np.int64), np.array(taught, np.int64),
                    [], legacy=True)
        state.changed = True  # the first write migrates it
        return state

    # ---------------------------------------------------------------- writing
    def dumps(self) -> str:
        labels = [list(y) for y in self.labels] if self.multilabel else self.labels.tolist()
        obj = {"format": FORMAT, "version": VERSION, **{k: self.settings[k] for k in self.SETTINGS},
               "rounds": self.rounds, "labels": {"ids": self.ids.tolist(), "labels": labels,
                                                 "rounds": self.taught.tolist()},
               "corrections": self.corrections}
        return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'), default=_plain)}"
                                  for k, v in obj.items()) + "\n}\n"

    def set(self, key: str, value: Any) -> None:
        if self.settings.get(key) != value:
            self.settings[key] = value
            self.changed = True

    # ---------------------------------------------------------------- queries
    def pending(self) -> Optional[tuple]:
        """``(round, ids without a label)`` of the last batch when some of its ids are not
        taught yet; else None."""
        if not self.rounds:
            return None
        last = self.rounds[-1]
        ids = np.asarray(last["ids"], dtype=np.int64)
        left = ids[~np.isin(ids, self.ids)]
        return (int(last["round"]), left) if left.size else None


def _cell_int(text: str, where: str) -> int:
    from .formats import _INT

    if not _INT.match(text):
        raise ValueError(f"{where} must be an integer, got {text!r}")
    return int(text)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (e.g. in strategy options) as JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be stored in a project (not JSON)")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _names(values: Iterable[int], classes: Optional[list]) -> str:
    return ", ".join(repr(classes[y]) if classes and 0 <= y < len(classes) else str(y) for y in values)

# ------------------------------------------------------------------------------ the project
class ActiveLearner:
    """An annotation project in a folder: query batches, teach their labels, round after round.

    Parameters
    ----------
    project_dir : str or Path
        The project's folder. An existing project is resumed; a missing one is created (one
        write) unless ``create=False``, which raises a ValueError naming the path.
    strategy : str, optional
        The default strategy of :meth:`query` (one of :data:`STRATEGIES`); stored in the project.
        Default: the project's, else ``"base"``. A query with another strategy makes it the
        project's default.
    classes : sequence of str, optional
        Class names, index order (label names in files and in Label Studio map to indices by
        it). Stored; a project's classes cannot change.
    num_classes : int, optional
        The number of classes when they have no names (else given by ``classes`` or by the first
        query's logits). Labels must be classes: teaching needs it.
    pool_size : int, optional
        Pool rows; otherwise set by the first query (the rows of its arrays). Stored. Ids must be
        in the pool: teaching needs it.
    multilabel : bool, optional
        A multi-label project: each id is taught its set of positive classes (possibly empty).
        Stored; it cannot change once a label is taught.
    options : dict, optional
        Strategy options stored in the project (see ``alscale query --help`` for each strategy's):
        cluster-margin's ``n_clusters`` (default: the first query's budget), ``neighbors``,
        ``knn_recall``, ``pca``; probcover's ``delta`` (default: chosen by its purity rule with
        the project's number of classes); ...
    progress : callable (str) -> None, optional
        Told one line at each stage of long work (cluster-margin's kNN graph and HAC, with
        their times); the command line prints them on standard error.

    Examples
    --------
    >>> import numpy as np, tempfile, alscale
    >>> learner = alscale.ActiveLearner(tempfile.mkdtemp(), strategy="margin")
    >>> logits = np.array([[3.0, 0.0], [0.1, 0.0], [0.0, 0.2], [0.0, 4.0]])
    >>> learner.query(logits, 2, seed=0)
    array([1, 2])
    >>> learner.teach([1, 2], [0, 1])
    2
    >>> learner.query(logits, 1, seed=0)
    array([0])
    >>> learner.labels.ids
    array([1, 2])
    """

    def __init__(self, project_dir: Union[str, Path], strategy: Optional[str] = None, *,
                 classes: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                 pool_size: Optional[int] = None, multilabel: Optional[bool] = None,
                 options: Optional[dict] = None, create: Union[bool, str] = True,
                 progress: Optional[Callable[[str], None]] = None):
        self.path = Path(project_dir)
        self.progress = progress
        self.last_teach: dict = {}
        self._picked: Optional[tuple] = None  # (strategy instance, its PoolView, ids) of the last query
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"project_dir {self.path} is a file, not a folder")
        if strategy is not None:
            _strategy(strategy)
        exists = (self.path / CONFIG).exists()
        #: "defer": a new project kept in memory until its first command's write (alscale query --new).
        self._deferred = not exists and create == "defer"
        if not exists and not create:
            raise ValueError(f"no alscale project at {self.path} (no {CONFIG}): create it with "
                             f"alscale init --project {self.path} (or alscale query --new)")

        given = dict(strategy=strategy, classes=classes, num_classes=num_classes, pool_size=pool_size,
                     multilabel=multilabel, options=options)

        def apply(state: _State) -> None:
            self._apply(state, **given)

        if exists:
            state = self._read_state()
            probe = copy.deepcopy(state)
            probe.changed = False
            apply(probe)
            if probe.changed:  # something to store: under the write lock, from the file as it is now
                with self._transaction() as state:
                    apply(state)
        elif self._deferred:
            state = _State.new()
            apply(state)
            self._pending_new = state
        else:
            apply(_State.new())  # checked before the folder is made: refused settings leave nothing behind
            with self._transaction(new=True) as state:
                apply(state)
        self.config = dict(state.settings)

    def _apply(self, state: _State, strategy: Optional[str] = None, classes: Optional[Sequence[str]] = None,
               num_classes: Optional[int] = None, pool_size: Optional[int] = None, multilabel: Optional[bool] = None,
               options: Optional[dict] = None) -> None:
        """Settings into ``state`` (checked against it: a conflict raises ValueError)."""
        if strategy is not None:
            _strategy(strategy)
            state.set("strategy", strategy)
        if classes is not None:
            self._set_classes(state, classes)
        if num_classes is not None:
            self._set_num_classes(state, _int_arg(num_classes, "num_classes", 1), "num_classes")
        if pool_size is not None:
            self._set_pool(state, _int_arg(pool_size, "pool_size", 0), "pool_size")
        if multilabel is not None:
            self._set_multilabel(state, multilabel)
        if options:
            opts = dict(options)
            if "multilabel" in opts:
                self._set_multilabel(state, opts.pop("multilabel"))
            state.set("options", {**state.settings["options"], **opts})

    def stage(self, **settings: Any) -> None:
        """Settings (``classes``, ``num_classes``, ``pool_size``, ``multilabel``, ``strategy``,
        ``options``) stored with the next command's write and checked then, so that a refused
        command stores none of them (``alscale teach --classes``, ``alscale query --pool-size``).
        They are checked now against the project as it is, too."""
        settings = {k: v for k, v in settings.items() if v is not None}
        probe = self._read_state()
        self._apply(probe, **settings)
        self._staged = settings

    # -------------------------------------------------------------- reading
    @property
    def strategy(self) -> str:
        return self.config["strategy"]

    @property
    def classes(self) -> Optional[list]:
        return self.config["classes"]

    @property
    def multilabel(self) -> bool:
        return bool(self.config["multilabel"])

    @property
    def labels(self) -> Labels:
        """The labels so far (ids, classes, rounds), in the order they were taught."""
        s = self._read_state()
        return Labels(s.ids.copy(), list(s.labels) if s.multilabel else s.labels.copy(), s.taught.copy())

    @property
    def rounds(self) -> list:
        """The batches queried so far, as :class:`Batch`\\ es (round 1 first)."""
        return [Batch(b["round"], b["strategy"], b["budget"], b["seed"], np.asarray(b["ids"], dtype=np.int64))
                for b in self._read_state().rounds]

    history = rounds

    @property
    def corrections(self) -> list:
        """The corrections (``teach(..., relabel=True)``): id, from, to, round, time — oldest first."""
        return list(self._read_state().corrections)

    @property
    def pending(self) -> Optional[tuple]:
        """``(round, ids)``: the last batch's ids that have no label yet, or None."""
        return self._read_state().pending()

    def status(self) -> dict:
        """A summary: pool size, classes, labels per class (multi-label: positives per class, and
        ``no_positive``, the ids taught with none), imbalance (largest / smallest class count; inf
        when a class has none, with ``classes_without_labels`` counting them), the pending batch,
        the corrections, and per round the batch size and how much of it is labeled."""
        s = self._read_state()
        self.config = dict(s.settings)
        c, names = s.settings["num_classes"], s.settings["classes"]
        if s.multilabel:
            flat = np.fromiter((y for ys in s.labels for y in ys), dtype=np.int64)
            no_positive = sum(1 for ys in s.labels if not ys)
        else:
            flat, no_positive = s.labels, None
        if c is not None:
            counts = np.bincount(flat, minlength=c) if flat.size else np.zeros(c, np.int64)
            shown = names or [str(i) for i in range(c)]
        else:  # a legacy project without a class count: the classes seen, never max+1 wide
            seen, counts = np.unique(flat, return_counts=True)
            shown = [str(y) for y in seen.tolist()]
        taught = s.ids
        pend = s.pending()
        out = {
            "project": str(self.path), "strategy": s.settings["strategy"], "options": s.settings["options"],
            "pool_size": s.settings["pool_size"], "multilabel": s.multilabel, "classes": shown,
            "labels": int(s.ids.size), "per_class": counts.tolist(),
            "imbalance": (float(counts.max() / counts.min()) if counts.min() > 0 else float("inf"))
            if counts.size and counts.max() > 0 else None,
            "classes_without_labels": int((counts == 0).sum()) if counts.size else 0,
            "pending": None if pend is None else {"round": pend[0], "ids": int(pend[1].size)},
            "corrections": len(s.corrections),
            "rounds": [{"round": b["round"], "strategy": b["strategy"], "size": len(b["ids"]),
                        "labeled": int(np.isin(np.asarray(b["ids"], dtype=np.int64), taught).sum())}
                       for b in s.rounds],
        }
        if s.multilabel:
            out["no_positive"] = no_positive
        return out

    # -------------------------------------------------------------- querying
    def query(self, logits: Any, budget: int, *, strategy: Optional[str] = None, embeddings: Any = None,
              weight: Any = None, clusters: Any = None, seed: Optional[int] = None,
              on_pick: Optional[Callable[[np.ndarray, int], None]] = None, options: Optional[dict] = None,
              pending: str = "new"):
        """Picks ``budget`` unlabeled pool ids with the strategy, records the batch as the next
        round of the project's history, and returns the ids (int64, in the strategy's order).

        The strategy is :mod:`alscale.strategies`' (the loop's too): the same name, options and
        inputs give the same picks. Row i of ``logits`` (and of ``embeddings``) is pool id i;
        every labeled id is excluded. ``logits`` may be None for strategies that do not need
        them (random, coreset, typiclust, probcover), and are (T, N, C) MC samples for the
        Bayesian strategies. ``logits`` may be a memmap, read in chunks. ``seed`` (random, badge,
        cluster-margin, ...) defaults to a fresh one, recorded in the history. ``clusters``
        (cluster-margin): the pool's cluster ids; default: average-linkage HAC of
        ``embeddings``, computed once and cached in the project. ``on_pick(ids, round)``, if
        given, runs before the batch is recorded; when it raises nothing is recorded (the command
        line writes its output file there). ``options`` (the strategy's options) update the
        project's, stored with the batch; the strategy becomes the project's default.

        ``pending``: what to do when the last batch still has ids without a label — ``"new"``
        (default in Python) queries a new round anyway; ``"refuse"`` (the command line's default)
        raises a ValueError saying so; ``"reissue"`` returns those ids again (``on_pick`` is called
        with the pending round) and records nothing.

        Settings, round and cached state go to the project in one write, after the pick: a query
        that fails or is killed stores nothing.
        """
        if pending not in ("new", "refuse", "reissue"):
            raise ValueError(f"pending must be 'new', 'refuse' or 'reissue', got {pending!r}")
        from ._backend.arrays import as_budget, as_seed

        with self._transaction() as state:
            pend = state.pending()
            if pending == "reissue":
                if pend is None:
                    raise ValueError("no batch is pending: every id of the last round has a label"
                                     if state.rounds else "no batch is pending: nothing was queried yet")
                if on_pick is not None:
                    on_pick(pend[1], pend[0])
                return pend[1]
            if pend is not None and pending == "refuse":
                r, left = pend
                size = len(state.rounds[-1]["ids"])
                raise ValueError(f"round {r}'s batch is pending: {left.size} of its {plural(size, 'id')} "
                                 "have no label yet; teach them first, or write them again with --pending "
                                 "reissue, or query a new batch anyway with --pending query")
            opts_in = dict(options or {})
            if "multilabel" in opts_in:
                self._set_multilabel(state, opts_in.pop("multilabel"))
            name = strategy or state.settings["strategy"]
            cls = _strategy(name)
            multilabel = state.multilabel
            takes = cls.option_defaults()
            if multilabel and ("logits" in cls.needs or "mc_samples" in cls.needs) and "multilabel" not in takes:
                raise ValueError(f"strategy {name!r} reads one softmax over the classes; this project is multi-label "
                                 "(one sigmoid per class): use margin, confidence, entropy or cluster-margin "
                                 "(or random, coreset, typiclust, probcover)")
            if "labels" in cls.needs:
                raise ValueError(f"strategy {name!r} is an oracle that reads the true labels (a simulation "
                                 "baseline of alscale run); a labelling project has none")
            if ("logits" in cls.needs or "mc_samples" in cls.needs) and logits is None:
                raise ValueError(f"strategy {name!r} needs logits")
            if "embeddings" in cls.needs and embeddings is None and not (clusters is not None and "logits" in cls.needs):
                raise ValueError("cluster-margin needs embeddings (or clusters=)" if name == "cluster-margin"
                                 else f"strategy {name!r} needs embeddings")
            n, c = _pool_shape(cls, logits) if logits is not None else (None, None)
            if embeddings is not None:
                shape = getattr(embeddings, "shape", ())
                if len(shape) != 2:
                    raise ValueError(f"embeddings must be an array of shape (pool, dimensions), got "
                                     f"{type(embeddings).__name__}" + (f" of shape {tuple(shape)}" if shape else ""))
                if n is not None and int(shape[0]) != n:
                    raise ValueError(f"embeddings has {shape[0]} rows but logits has {n} (one per pool id)")
                n = int(shape[0])
            k = as_budget(budget)
            if seed is None:
                seed = int(np.random.default_rng().integers(2**62))
            seed = as_seed(seed)
            what = "logits" if logits is not None else "embeddings"
            if n is None:
                n = state.settings["pool_size"]
                if n is None:
                    raise ValueError(f"strategy {name!r} needs the pool size: give logits or embeddings, or "
                                     "create the project with pool_size (alscale init --pool-size N)")
            self._set_pool(state, n, what)
            if c is not None:
                self._set_num_classes(state, c, "logits")
            options_now = {**state.settings["options"], **opts_in}
            if options_now.get("n_clusters") is None and name == "cluster-margin":
                options_now["n_clusters"] = k
            state.set("options", options_now)
            state.set("strategy", name)
            labeled = np.zeros(n, dtype=bool)
            labeled[state.ids] = True
            if labeled.all():  # the same answer from every strategy (some said "the pool is empty", some recorded [])
                raise ValueError(f"every id of the pool is labeled ({plural(n, 'id')}): nothing is left to query"
                                 if n else "the pool is empty: nothing to query")
            opts = _strategy_options(cls, state.settings["options"])
            if multilabel and "multilabel" in takes:
                opts["multilabel"] = True
            if name == "cluster-margin":
                from .cluster_margin import cluster_settings

                features = int(embeddings.shape[1]) if embeddings is not None else None
                cluster_settings(opts["n_clusters"], opts.get("neighbors", 10), opts.get("knn_recall", 0.95),
                                 opts.get("pca"), features)
            if ("delta" in takes and "num_classes" in takes and opts.get("delta") is None
                    and opts.get("num_classes") is None and state.settings["num_classes"] is None):
                raise ValueError(f"strategy {name!r} needs the number of classes for its purity rule (alscale query "
                                 "--num-classes C or --classes NAMES), or its ball radius (--option delta=D)")
            chosen = cls(**opts)
            mc = "mc_samples" in cls.needs
            pool = _strategies.PoolView(labeled=labeled, logits=None if mc else logits,
                                        mc_samples=logits if mc else None, embeddings=embeddings, weight=weight,
                                        num_classes=state.settings["num_classes"], clusters=clusters,
                                        progress=self.progress)
            cache = self._restore_state(chosen, pool) if cls.state_options and clusters is None else None
            try:
                ids = np.asarray(chosen.select(pool, k, seed), dtype=np.int64)
            except ImportError as err:
                raise ValueError(f"strategy {name!r}: {_import_advice(err)}") from None
            self._picked = (chosen, pool, ids)  # score_columns() reads what the pick computed
            r = len(state.rounds) + 1
            if on_pick is not None:
                on_pick(ids, r)
            state.rounds.append({"round": r, "strategy": name, "options": opts, "budget": k, "seed": seed,
                                 "labeled_before": int(state.ids.size), "ids": ids.tolist(), "time": _now()})
            state.changed = True
            if cache is not None:  # a cache keyed by its inputs: written first, harmless alone
                if self._deferred:
                    self.path.mkdir(parents=True, exist_ok=True)
                self._save_state(chosen, *cache)
        return ids

    def scores(self, logits: Any, ids: Any, *, strategy: Optional[str] = None, weight: Any = None,
               options: Optional[dict] = None, embeddings: Any = None):
        """``(column, values)``: the first of :meth:`score_columns`, or None without one."""
        columns = self.score_columns(logits, ids, strategy=strategy, weight=weight, options=options,
                                     embeddings=embeddings)
        return next(iter(columns.items()), None)

    def score_columns(self, logits: Any, ids: Any, *, strategy: Optional[str] = None, weight: Any = None,
                      options: Optional[dict] = None, embeddings: Any = None) -> dict:
        """The columns of the picked ``ids`` (in their order) beside their id, the strategy's
        scores: ``margin``, ``confidence``, ``entropy`` (margin, confidence, entropy; cluster-margin:
        margin); ``boundary`` (mase); ``distance`` and ``class`` (base: the distance each pick was
        ranked by for the class whose quota it fills, and that class); ``bald`` (bald, powerbald: each
        pick's BALD); ``gain`` (batchbald: each pick's gain in the batch's joint mutual information,
        when the ids are this learner's last query's; else each row's BALD); ``margin`` / ``entropy`` of the MC-mean probabilities
        (power-margin, power-entropy); ``typicality`` (typiclust, when the ids are this learner's
        last query's). Empty for random, coreset, badge and probcover (no per-row score). When
        ``ids`` are the last :meth:`query`'s, the strategy that picked them scores them (with its
        inputs); otherwise ``options`` (those of the query) update the project's."""
        name = strategy or self.strategy
        ids = np.asarray(ids, dtype=np.int64)
        if self._picked is not None and self._picked[0].name == name and np.array_equal(self._picked[2], ids):
            chosen, pool = self._picked[0], self._picked[1]
        else:
            cls = _strategy(name)
            opts = _strategy_options(cls, {**self.config.get("options", {}), **(options or {})})
            if self.multilabel and "multilabel" in cls.option_defaults():
                opts["multilabel"] = True
            chosen = cls(**opts)
            mc = "mc_samples" in cls.needs
            pool = _strategies.PoolView(labeled=np.zeros(0, dtype=bool), logits=None if mc else logits,
                                        mc_samples=logits if mc else None, weight=weight, embeddings=embeddings)
        if chosen.score_column is None or ("embeddings" not in chosen.needs and logits is None):
            return {}
        return {k: np.asarray(v) for k, v in chosen.columns(pool, ids).items()}

    def clusters(self, embeddings: Any, *, n_clusters: int, neighbors: int = 10, knn_recall: float = 0.95,
                 pca: Optional[int] = None) -> np.ndarray:
        """The pool's cluster ids for cluster-margin (:func:`alscale.cluster_margin.cluster_embeddings`):
        graph average-linkage HAC of the embeddings on their ``neighbors``-NN cosine graph (faiss's,
        at target recall ``knn_recall``, where the exact graph's N²·D passes 10¹¹; after PCA to ``pca`` dimensions if
        given), cut into ``n_clusters``. Computed once and cached in the project (``clusters.npz``,
        replaced atomically) under a fingerprint of the embeddings' values and the settings: other
        embeddings or settings cluster again, the same ones reuse the cache. The stages report
        to the learner's ``progress``."""
        if embeddings is None:
            raise ValueError("cluster-margin needs embeddings (or clusters=)")
        from ._backend.arrays import real_matrix
        from .cluster_margin import cluster_settings

        z = real_matrix(embeddings, "embeddings", "rows")
        cluster_settings(n_clusters, neighbors, knn_recall, pca, int(z.shape[1]))
        cls = _strategy("cluster-margin")
        chosen = cls(n_clusters=n_clusters, neighbors=neighbors, knn_recall=knn_recall, pca=pca)
        pool = _strategies.PoolView(labeled=np.zeros(int(z.shape[0]), dtype=bool), embeddings=z,
                                    progress=self.progress)
        with self._locked():
            cache = self._restore_state(chosen, pool)
            if chosen.state():
                return chosen.state()["labels"]
            chosen._set_labels(chosen._cluster(pool, min(pool.size, int(n_clusters))))
            self._save_state(chosen, *cache)
        return chosen.state()["labels"]

    # -------------------------------------------------------------- strategy state
    def _state_file(self, strategy: Any) -> Path:
        return self.path / (CLUSTERS if strategy.name == "cluster-margin" else f"{strategy.name}.npz")

    def _restore_state(self, strategy: Any, pool: Any) -> tuple:
        """Loads the strategy's cached state when its file is whole and of these inputs and
        settings; returns ``(key, settings)`` to save a new state under."""
        path = self._state_file(strategy)
        what = "clusters" if strategy.name == "cluster-margin" else f"{strategy.name} state"
        settings = {k: strategy.options().get(k, getattr(strategy, k, None)) for k in strategy.state_options}
        if strategy.name == "cluster-margin":
            from .knn import auto_knn_method

            shape = getattr(pool.embeddings, "shape", ())
            dims = settings.get("pca") or (int(shape[1]) if len(shape) == 2 and shape[1] > 0 else None)
            settings["knn_method"] = auto_knn_method(pool.size, dims)
        else:
            settings["num_classes"] = settings.get("num_classes") or pool.num_classes
        settings["format"] = 2
        say = self.progress or (lambda line: None)
        if pool.embeddings is None:
            raise ValueError(f"{strategy.name} needs embeddings")
        z = pool.embeddings
        say(f"fingerprinting {z.shape[0]:,} embeddings for the {what} cache ({path.name})")
        key = fingerprint(z, tuple(z.shape), str(getattr(z, "dtype", "")), *sorted(settings.items())).hex()
        state = _cached_state(path, key)
        if state is not None:
            try:
                strategy.load_state(state)
                strategy.check_state(pool.size)
            except (TypeError, ValueError):
                strategy.load_state({})
            else:
                say(f"{what} reused from {path}")
                return key, settings
        if strategy.name == "cluster-margin":
            target = settings["n_clusters"] or "the budget's"
            say(f"clustering the pool into {target:,} clusters (cached in {path})" if isinstance(target, int)
                else f"clustering the pool (cached in {path})")
        return key, settings

    def _save_state(self, strategy: Any, key: str, settings: dict) -> None:
        """Writes the strategy's state (arrays as they are, the rest as JSON) under ``key``,
        atomically, when it is not the cached one already."""
        state = strategy.state()
        if not state or _cached_state(self._state_file(strategy), key) is not None:
            return
        arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
        rest = {k: v for k, v in state.items() if k not in arrays}
        buf = io.BytesIO()
        np.savez(buf, key=np.array(key), settings=np.array(json.dumps(settings)), state=np.array(json.dumps(rest)),
                 **arrays)
        write_atomic(self._state_file(strategy), buf.getvalue())

    # -------------------------------------------------------------- teaching
    def teach(self, ids: Any, labels: Any, *, relabel: bool = False) -> int:
        """Records ``labels[i]`` for pool id ``ids[i]``: a class index or name (single-label), or
        the id's positive classes as a list (multi-label; ``[]``: none). Returns how many labels
        are new. All or nothing: a bad pair raises ValueError naming it (``ids[3]``) and nothing
        is recorded. An id taught again with the same answer is not recorded twice; with another
        one it is refused, unless ``relabel=True``: then the label is corrected and the correction
        recorded (:attr:`corrections`)."""
        if isinstance(ids, (list, tuple)):
            ids = list(ids)
        else:
            ids = np.asarray(ids).reshape(-1).tolist()
        if isinstance(labels, (list, tuple)):
            labels = list(labels)
        elif self.multilabel:
            raise ValueError("labels: a multi-label project takes a list with each id's classes (a list each)")
        else:
            labels = np.asarray(labels).reshape(-1).tolist()
        if len(ids) != len(labels):
            raise ValueError(f"ids and labels differ in length ({len(ids)} and {len(labels)})")
        return self.teach_pairs([(as_id(i, f"ids[{k}]"), lab, f"ids[{k}]") for k, (i, lab) in enumerate(zip(ids, labels))],
                                relabel=relabel)

    def teach_file(self, path: Union[str, Path], *, classes: Optional[Sequence[str]] = None,
                   num_classes: Optional[int] = None, relabel: bool = False,
                   label_column: Optional[str] = None) -> int:
        """Teaches the labels of a file (:func:`alscale.formats.read_answers`): a CSV ``id,label``
        (``id,labels``, classes separated by ``;``, for a multi-label project), or a Label Studio
        export, JSON or CSV (read by ``alscale_id``). ``classes`` / ``num_classes`` set the
        project's classes first if it has none — in the same write: refused labels store them
        neither. What the file held besides labels (tasks not annotated, skipped, with several
        annotations) is in :attr:`last_teach`."""
        multilabel = self._read_state().multilabel
        answers = read_answers(path, multilabel=multilabel, label_column=label_column)
        return self.teach_pairs(answers, relabel=relabel, classes=classes, num_classes=num_classes)

    def teach_pairs(self, pairs: Sequence[tuple], *, relabel: bool = False, classes: Optional[Sequence[str]] = None,
                    num_classes: Optional[int] = None) -> int:
        """Teaches ``(id, answer, where)`` triples (``where`` names each in errors); see :meth:`teach`."""
        with self._transaction() as state:
            if classes is not None:
                self._set_classes(state, classes)
            if num_classes is not None:
                self._set_num_classes(state, _int_arg(num_classes, "num_classes", 1), "num_classes")
            n, c, names = state.settings["pool_size"], state.settings["num_classes"], state.settings["classes"]
            if pairs and n is None:
                raise ValueError(f"the project {self.path} does not know its pool size yet, so no id can be checked: "
                                 "give it at creation (alscale init --pool-size N) or query first; nothing recorded")
            if pairs and c is None:
                raise ValueError(f"the project {self.path} does not know its classes yet, so no label can be checked: "
                                 "give --classes NAMES or --num-classes C (or query with logits first); nothing recorded")
            index = {name: i for i, name in enumerate(names or [])}
            position = {i: k for k, i in enumerate(state.ids.tolist())}
            multi = state.multilabel
            new: dict = {}
            seen: dict = {}
            fixes: dict = {}
            for i, label, where in pairs:
                if not 0 <= i < n:
                    raise ValueError(f"{where}: id {i} is out of range (the pool has ids 0..{n - 1})" if n
                                     else f"{where}: id {i} is out of range (the pool is empty)")
                y = self._answer(label, index, c, where, multi)
                if i in new or i in fixes:
                    had = new.get(i, fixes.get(i))
                    if had != y:
                        raise ValueError(f"{where}: id {i} is labeled {self._show(y, names)}, but {seen[i]} labels it "
                                         f"{self._show(had, names)}")
                    continue
                seen[i] = where
                if i in position:
                    old = state.labels[position[i]]
                    old = tuple(old) if multi else int(old)
                    if old == y:
                        continue
                    if not relabel:
                        raise ValueError(f"{where}: id {i} is labeled {self._show(y, names)}, but was taught "
                                         f"{self._show(old, names)} before; nothing of this file was recorded "
                                         "(alscale teach --relabel corrects labels)")
                    fixes[i] = y
                    continue
                new[i] = y
            r = len(state.rounds)
            if fixes:
                if not multi:
                    state.labels = state.labels.copy()
                for i, y in fixes.items():
                    k = position[i]
                    old = state.labels[k]
                    state.corrections.append({"id": i, "from": list(old) if multi else int(old),
                                              "to": list(y) if multi else y, "round": r, "time": _now()})
                    state.labels[k] = y
            if new:
                state.ids = np.concatenate([state.ids, np.fromiter(new.keys(), np.int64, len(new))])
                if multi:
                    state.labels = list(state.labels) + list(new.values())
                else:
                    state.labels = np.concatenate([state.labels, np.fromiter(new.values(), np.int64, len(new))])
                state.taught = np.concatenate([state.taught, np.full(len(new), r, np.int64)])
            if new or fixes:
                state.changed = True
        counts = getattr(pairs, "counts", {})
        self.last_teach = {"new": len(new), "corrected": len(fixes), "total": int(state.ids.size),
                           "note": pairs.note() if isinstance(pairs, Answers) else "", **counts}
        return len(new)

    # -------------------------------------------------------------- internals
    @staticmethod
    def _show(y: Any, names: Optional[list]) -> str:
        if isinstance(y, tuple):
            return "{" + _names(y, names) + "}"
        return _names([y], names)

    def _answer(self, label: Any, index: dict, c: int, where: str, multi: bool) -> Any:
        if multi:
            if isinstance(label, (str, bytes)) or not isinstance(label, (list, tuple, set, frozenset, np.ndarray)):
                raise ValueError(f"{where}: a multi-label project takes each id's classes as a list (possibly empty), "
                                 f"got {label!r}")
            ys = [self._class_index(x, index, c, where) for x in label]
            if len(set(ys)) != len(ys):
                raise ValueError(f"{where}: a class is given twice in {list(label)}")
            return tuple(sorted(ys))
        if isinstance(label, (list, tuple, set, frozenset, np.ndarray)):
            raise ValueError(f"{where}: a single-label project takes one class per id, got {label!r} "
                             "(several classes are for a multi-label project)")
        return self._class_index(label, index, c, where)

    @staticmethod
    def _class_index(label: Any, index: dict, c: Optional[int], where: str) -> int:
        from .formats import _INT

        if isinstance(label, str) and label in index:
            return index[label]
        if isinstance(label, (bool, np.bool_)) or not (isinstance(label, (int, np.integer))
                                                       or (isinstance(label, str) and _INT.match(label))):
            if isinstance(label, (float, np.floating)) and float(label).is_integer():
                label = int(label)
            else:
                known = (f" (classes: {', '.join(index)})" if index else
                         " (the project has no class names: give them with --classes or ActiveLearner(classes=...))")
                raise ValueError(f"{where}: unknown label {label!r}{known}")
        y = int(label)
        if y < 0 or (c is not None and y >= c):
            raise ValueError(f"{where}: label {y} is out of range" + (f" (classes 0..{c - 1})" if c else ""))
        return y

    @staticmethod
    def _set_pool(state: _State, n: int, what: str) -> None:
        if n < 0:
            raise ValueError(f"{what}: pool size must be >= 0, got {n}")
        have = state.settings["pool_size"]
        if have is not None and have != n:
            raise ValueError(f"{what} has {n} rows but the project's pool has {have} ids (row i is pool id i)")
        if state.ids.size and int(state.ids.max()) >= n:
            raise ValueError(f"{what} has {n} rows but id {int(state.ids.max())} is labeled (row i is pool id i)")
        state.set("pool_size", n)

    @staticmethod
    def _set_num_classes(state: _State, c: int, what: str) -> None:
        have = state.settings["num_classes"]
        if have is not None and have != c:
            names = state.settings["classes"]
            raise ValueError(f"{what} has {c} classes but the project has {have}"
                             + (f" ({', '.join(names)})" if names else ""))
        if state.ids.size:
            top = max((max(ys) for ys in state.labels if ys), default=-1) if state.multilabel else int(state.labels.max())
            if top >= c:
                raise ValueError(f"{what} has {c} classes but class {top} is taught")
        state.set("num_classes", c)

    def _set_classes(self, state: _State, classes: Sequence[str]) -> None:
        names = [str(x) for x in classes]
        if not names or len(set(names)) != len(names) or any(not x for x in names):
            raise ValueError(f"classes must be distinct non-empty names, got {names}")
        if state.settings["classes"] is not None and state.settings["classes"] != names:
            raise ValueError(f"the project's classes are {state.settings['classes']}, not {names}")
        self._set_num_classes(state, len(names), "classes")
        state.set("classes", names)

    @staticmethod
    def _set_multilabel(state: _State, value: Any) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"multilabel must be True or False, got {value!r}")
        value = bool(value)
        if value != state.multilabel and (state.ids.size or state.rounds):
            kind = "multi-label" if state.multilabel else "single-label"
            raise ValueError(f"the project is {kind} ({plural(int(state.ids.size), 'label')}, "
                             f"{plural(len(state.rounds), 'round')}); a project is single- or multi-label from its "
                             "start (alscale init --multilabel for a multi-label one)")
        state.set("multilabel", value)

    # -------------------------------------------------------------- the store
    def _read_state(self) -> _State:
        """The committed state, under a shared lock when one can be had (never waiting)."""
        if self._deferred:
            return copy.deepcopy(self._pending_new)
        with self._shared():
            for attempt in range(3):
                try:
                    text = (self.path / CONFIG).read_text()
                except FileNotFoundError:
                    raise ValueError(f"no alscale project at {self.path} (no {CONFIG}): create it with "
                                     f"alscale init --project {self.path} (or alscale query --new)") from None
                except UnicodeDecodeError as err:
                    raise ValueError(f"{self.path / CONFIG}: not a UTF-8 text file ({err})") from None
                try:
                    return _State.parse(text, self.path / CONFIG)
                except ValueError:
                    try:  # replaced meanwhile (a version-1 project being migrated): read the new one
                        again = (self.path / CONFIG).read_text()
                    except OSError:
                        again = text
                    if attempt < 2 and again != text:
                        continue
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _shared(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            yield
            return
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY)
        except OSError:
            try:
                fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # a read-only project without a lock file: nothing can write it either
                yield
                return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # a writer runs: its write is one os.replace, so the committed file is whole
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The exclusive lock of a writing command (refused at once while another one runs)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            yield
            return
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise ValueError(f"the project {self.path} is read-only: this command would change it") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"another alscale command is using the project {self.path}; try again when it ends") from None
            for stale in self.path.glob(".*.tmp"):  # left by a killed command: never part of the project
                stale.unlink(missing_ok=True)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _transaction(self, new: bool = False) -> Iterator[_State]:
        """One command: the state read under the exclusive lock, changed by the caller, written
        once (when it changed) — or not at all when the caller raises."""
        staged, self._staged = getattr(self, "_staged", {}), {}
        if self._deferred:
            state = copy.deepcopy(self._pending_new)
            self._apply(state, **staged)
            yield state
            self.path.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if (self.path / CONFIG).exists():
                    raise ValueError(f"the project {self.path} was created by another command meanwhile; nothing recorded")
                write_atomic(self.path / CONFIG, state.dumps())
            self._deferred = False
            self.config = dict(state.settings)
            return
        if new:
            self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state = _State.new() if new else self._read_state()
            self._apply(state, **staged)
            yield state
            if state.changed:
                write_atomic(self.path / CONFIG, state.dumps())
                if state.legacy:  # migrated: the old files are in project.json now
                    for name in (LABELS, HISTORY):
                        (self.path / name).unlink(missing_ok=True)
        self.config = dict(state.settings)

def _strategy(name: str) -> type:
    return _strategies.get_class(name)


def _int_arg(value: Any, what: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _import_advice(err: ImportError) -> str:
    """An optional dependency's ImportError as one line for a project (no Python-only advice)."""
    text = str(err)
    if "faiss" in text:
        return "needs the optional dependency faiss (pip install faiss-cpu) for its k-means"
    return text.split(" (or pass")[0]


def _cached_state(path: Path, key: str) -> Optional[dict]:
    """The state in a strategy's cache file if it exists, is whole, and is of ``key``; else None
    (checked against the pool by the strategy's ``check_state``)."""
    import zipfile

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            state = json.loads(str(f["state"])) if "state" in f.files else {}
            if not isinstance(state, dict):
                return None
            state.update({k: f[k] for k in f.files if k not in ("key", "settings", "state")})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # unreadable: computed again
    return state


def format_status(status: dict) -> str:
    """The text table of :meth:`ActiveLearner.status`."""
    multi = status.get("multilabel", False)
    lines = [f"project {status['project']}: {plural(status['labels'], 'label')}"
             + (f" of a pool of {status['pool_size']}" if status["pool_size"] is not None else "")
             + f", {plural(len(status['rounds']), 'round')} queried, default strategy {status['strategy']}"
             + (" (multi-label)" if multi else "")]
    pend = status.get("pending")
    if pend:
        lines.append(f"pending: round {pend['round']} has {plural(pend['ids'], 'id')} without a label "
                     "(alscale query --pending reissue writes them again)")
    if status.get("corrections"):
        lines.append(f"corrections: {plural(status['corrections'], 'label')} corrected (teach --relabel)")
    total = max(1, status["labels"])
    names = status["classes"]
    if names:
        width = max(5, *(len(x) for x in names))
        head = "positives" if multi else "labels"
        lines.append(f"{'class':<{width}}  {head:>9}  {'share':>6}")
        for name, count in zip(names, status["per_class"]):
            lines.append(f"{name:<{width}}  {count:>9}  {100 * count / total:>5.1f}%")
    if multi:
        lines.append(f"ids with no positive class: {status.get('no_positive', 0)}")
    imb = status["imbalance"]
    lines.append("imbalance (largest / smallest class): "
                 + ("n/a (no labels)" if imb is None else
                    "inf (a class has no label)" if imb == float("inf") else f"{imb:.2f}"))
    if status["rounds"]:
        lines.append(f"{'round':>5}  {'strategy':<14}  {'batch':>7}  {'labeled':>7}")
        for r in status["rounds"]:
            lines.append(f"{r['round']:>5}  {r['strategy']:<14}  {r['size']:>7}  {r['labeled']:>7}")
    return "\n".join(lines) + "\n"
