"""Annotation projects: query a batch from a model's outputs, have people label it, teach the
labels back — round after round, with nothing lost (``alscale query`` / ``teach`` / ``status``).

A project is a folder:

- ``project.json``: the configuration (default strategy, class names, pool size, classes);
- ``labels.csv``: every label so far, one line ``id,label,round`` per pool id (``label`` is the
  class index; ``round`` is the number of batches queried before it was taught);
- ``history.json``: every batch queried (round, strategy, budget, seed, ids);
- ``clusters.npz``: Cluster-Margin's HAC clustering of the pool, computed once and reused
  while the embeddings and the clustering settings are the same (a fingerprint of both).

Each command changes at most one file, replaced whole (written to a temporary file, fsynced, then
``os.replace``d), under an exclusive lock on the folder: a command killed at any point leaves the
project as it was, and two commands never interleave. Teaching is all-or-nothing: an unknown or
out-of-range id, a label that contradicts an earlier one (or another line of the same file), or a
malformed line refuses the whole file with a message that names the line; an id taught again with
the same label is not recorded twice.

numpy only: no torch needed (torch tensors are accepted where the library accepts them).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

__all__ = ["ActiveLearner", "Batch", "Labels", "QueryContext", "QueryStrategy", "STRATEGIES", "register",
           "format_status", "read_label_studio", "label_studio_tasks", "read_labels_csv"]

CONFIG, LABELS, HISTORY, CLUSTERS, LOCK = "project.json", "labels.csv", "history.json", "clusters.npz", ".lock"
FORMAT = "alscale-project"
VERSION = 1
#: The key of the pool id in the ``data`` of the Label Studio tasks that alscale writes.
LS_ID = "alscale_id"


# ------------------------------------------------------------------------------ strategies
@dataclass
class QueryContext:
    """What a strategy gets: the model's outputs over the whole pool (row i = pool id i), the
    labeled rows (``labeled``, a boolean mask: never to be picked), the budget and the seed."""

    logits: Any
    budget: int
    labeled: np.ndarray
    seed: int
    embeddings: Any = None
    weight: Any = None
    clusters: Any = None
    learner: Optional["ActiveLearner"] = None
    options: dict = field(default_factory=dict)

    @property
    def pool_size(self) -> int:
        return int(self.labeled.size)


def logits_shape(logits: Any) -> tuple:
    """(pool rows, classes) of (N, C) logits: their last two dimensions."""
    shape = getattr(logits, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"logits must be an array of shape (pool, classes), got {type(logits).__name__}"
                         + (f" of shape {tuple(shape)}" if shape is not None else ""))
    return int(shape[-2]), int(shape[-1])


@dataclass(frozen=True)
class QueryStrategy:
    """A strategy of :class:`ActiveLearner`: ``select(ctx) -> ids``; ``needs`` names the inputs
    it cannot do without (``"logits"``, ``"embeddings"``); ``score`` is ``(column,
    function(logits, ids, weight) -> values)``, a column for the ids it picked (e.g. their
    score), or None; ``shape(logits) -> (pool rows, classes)`` reads the pool size off the
    logits it takes (default :func:`logits_shape`; e.g. (T, N, C) MC samples need their own)."""

    name: str
    select: Callable[[QueryContext], Any]
    needs: frozenset = frozenset({"logits"})
    score: Optional[tuple] = None
    summary: str = ""
    shape: Callable[[Any], tuple] = logits_shape


#: The strategies by name; :func:`register` adds one.
STRATEGIES: dict = {}


def register(name: str, select: Callable[[QueryContext], Any], *, needs: Iterable[str] = ("logits",),
             score: Optional[tuple] = None, summary: str = "", shape: Callable[[Any], tuple] = logits_shape
             ) -> QueryStrategy:
    """Adds a strategy to :data:`STRATEGIES` (one line per strategy; see :class:`QueryStrategy`).

    Examples
    --------
    >>> import alscale
    >>> from alscale.project import register, STRATEGIES
    >>> s = register("smallest-margin", lambda ctx: alscale.select_margin(ctx.logits, ctx.budget,
    ...              exclude=ctx.labeled), summary="example")
    >>> del STRATEGIES["smallest-margin"]
    """
    unknown = set(needs) - {"logits", "embeddings"}
    if unknown:
        raise ValueError(f"needs: unknown inputs {sorted(unknown)} (logits, embeddings)")
    STRATEGIES[name] = QueryStrategy(name, select, frozenset(needs), score, summary, shape)
    return STRATEGIES[name]


def _lib():
    import alscale

    return alscale


def _scores(fn_name: str, with_weight: bool = False):
    """The library's score of the picked rows only (B rows read from the pool, in pick order)."""
    def score(logits, ids, weight):
        order = np.argsort(ids, kind="stable")
        rows = np.asarray(logits[ids[order]])  # sorted: a memmap is read forward
        fn = getattr(_lib(), fn_name)
        out = np.empty(ids.size, dtype=np.float64)
        out[order] = np.asarray(fn(rows, weight=weight) if with_weight else fn(rows), dtype=np.float64)
        return out
    return score


def _served_class(logits, ids, weight):
    """BASE's picks are the classes' quotas in order (class c: B // C + (c < B % C) ids): the
    class whose quota each pick fills, without reading the pool."""
    c = int(logits.shape[-1])
    b = ids.size
    return np.repeat(np.arange(c, dtype=np.int64), [b // c + (k < b % c) for k in range(c)])


def _cluster_margin(ctx: QueryContext):
    clusters = ctx.clusters
    if clusters is None:
        if ctx.learner is None:
            raise ValueError("cluster-margin needs clusters= or embeddings= (with a project to cache them in)")
        o = ctx.options
        clusters = ctx.learner.clusters(ctx.embeddings, n_clusters=ctx.budget if o.get("n_clusters") is None
                                        else o["n_clusters"],
                                        neighbors=o.get("neighbors", 10), knn_recall=o.get("knn_recall", 0.95),
                                        pca=o.get("pca"))
    elif getattr(clusters, "shape", None) is not None and len(clusters.shape) == 1 \
            and int(clusters.shape[0]) != ctx.pool_size:
        raise ValueError(f"clusters has {int(clusters.shape[0])} cluster ids but the pool has {ctx.pool_size} "
                         "rows (one per pool id)")
    factor = int(ctx.options.get("candidates_factor", 10))
    if factor < 1:
        raise ValueError(f"candidates_factor must be at least 1, got {factor}")
    return _lib().select_cluster_margin(ctx.logits, clusters, ctx.budget, candidates=factor * ctx.budget,
                                        exclude=ctx.labeled, seed=ctx.seed)


register("random", lambda c: _lib().select_random(c.pool_size, c.budget, exclude=c.labeled, seed=c.seed),
         needs=(), summary="uniformly at random among the unlabeled ids")
register("margin", lambda c: _lib().select_margin(c.logits, c.budget, exclude=c.labeled),
         score=("margin", _scores("margin_scores")), summary="smallest softmax margin p1 - p2")
register("confidence", lambda c: _lib().select_confidence(c.logits, c.budget, exclude=c.labeled),
         score=("confidence", _scores("confidence_scores")), summary="smallest top probability")
register("entropy", lambda c: _lib().select_entropy(c.logits, c.budget, exclude=c.labeled),
         score=("entropy", _scores("entropy_scores")), summary="largest softmax entropy")
register("mase", lambda c: _lib().select_boundary(c.logits, c.budget, weight=c.weight, exclude=c.labeled),
         score=("boundary", _scores("boundary_scores", True)),
         summary="closest to a decision boundary (weight: the head's W, optional)")
register("base", lambda c: _lib().select_balanced(c.logits, c.budget, weight=c.weight, exclude=c.labeled),
         score=("class", _served_class),
         summary="BASE: balanced selection near the boundaries (weight optional)")
register("coreset", lambda c: _lib().select_coreset(c.embeddings, c.labeled, c.budget),
         needs=("embeddings",), summary="greedy k-center on the embeddings")
register("badge", lambda c: _lib().select_badge(c.logits, c.embeddings, c.budget, exclude=c.labeled, seed=c.seed),
         needs=("logits", "embeddings"), summary="k-means++ on gradient embeddings")
register("cluster-margin", _cluster_margin, score=("margin", _scores("margin_scores")),
         summary="low-margin candidates round-robin over HAC clusters (clusters cached)")


def _probcover(ctx: QueryContext):
    """ProbCover with the project's options: ``delta``, or the purity rule's k-means into
    ``num_classes`` clusters (default: the project's class count); a faiss kNN graph of
    ``neighbors`` (20) neighbours beyond 20,000 rows, all pairs below."""
    o = ctx.options
    classes = o.get("num_classes") or (len(ctx.learner.classes) if ctx.learner and ctx.learner.classes else None)
    big = ctx.pool_size > 20_000
    return _lib().select_probcover(ctx.embeddings, ctx.budget, labeled=ctx.labeled, delta=o.get("delta"),
                                   num_classes=classes, neighbors=int(o.get("neighbors", 20)) if big else None,
                                   knn_method="faiss" if big else "exact", seed=ctx.seed)


# MC samples (dropout or any stochastic model run T times): logits of shape (T, N, C).
_MC = "(T, N, C) logits: T stochastic passes of the model over the pool"
register("bald", lambda c: _lib().select_bald(c.logits, c.budget, exclude=c.labeled),
         summary=f"largest BALD mutual information; {_MC}")
register("batchbald", lambda c: _lib().select_batchbald(c.logits, c.budget, exclude=c.labeled, seed=c.seed),
         summary=f"greedy joint mutual information; {_MC}")
register("powerbald", lambda c: _lib().select_powerbald(c.logits, c.budget, exclude=c.labeled, seed=c.seed),
         summary=f"sampled in proportion to BALD (stochastic batch acquisition); {_MC}")
register("power-margin", lambda c: _lib().select_power_margin(c.logits, c.budget, exclude=c.labeled, seed=c.seed),
         summary=f"sampled in proportion to 1 - MC margin; {_MC}")
register("power-entropy", lambda c: _lib().select_power_entropy(c.logits, c.budget, exclude=c.labeled, seed=c.seed),
         summary=f"sampled in proportion to the MC entropy; {_MC}")
register("typiclust", lambda c: _lib().select_typiclust(c.embeddings, c.budget, labeled=c.labeled, seed=c.seed),
         needs=("embeddings",), summary="cold start: the most typical point of the largest unlabeled clusters")
register("probcover", _probcover, needs=("embeddings",),
         summary="cold start: greedy coverage of delta-balls (options: delta or num_classes)")


# ------------------------------------------------------------------------------ files
def write_atomic(path: Union[str, Path], data: Union[str, bytes]) -> None:
    """Writes ``data`` to a temporary file beside ``path``, fsyncs it, renames it over ``path``
    (``os.replace``) and fsyncs the folder: readers see the old file or the new one, whole."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777  # a replaced file keeps its permissions
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask  # a new one gets what open() would give it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened (Windows)
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some file systems refuse it
        pass
    finally:
        os.close(dfd)


class Labels(NamedTuple):
    """The labels so far, in the order they were taught: pool ids, class indices, rounds."""

    ids: np.ndarray
    labels: np.ndarray
    rounds: np.ndarray


class Batch(NamedTuple):
    """One queried batch: its round (1, 2, …), strategy, budget, seed and the ids picked."""

    round: int
    strategy: str
    budget: int
    seed: int
    ids: np.ndarray


_INT = re.compile(r"\s*[+-]?\d+\s*$")


def _as_id(value: Any, where: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: id must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{where}: id must be an integer, got {value!r}")


def read_labels_csv(path: Union[str, Path]) -> list:
    """``[(id, label, where), ...]`` from a CSV with a header holding the columns ``id`` and
    ``label`` (other columns are ignored); ``label`` is a class index or a class name, checked
    by :meth:`ActiveLearner.teach_pairs`. A malformed file raises ValueError naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected a header line with the columns id,label")
        names = [h.strip() for h in header]
        if "id" not in names or "label" not in names:
            raise ValueError(f"{path} line 1: the header must name the columns id and label, got {','.join(header)!r}")
        i, j = names.index("id"), names.index("label")
        pairs = []
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{where}: {len(row)} fields, the header has {len(header)}")
            label = row[j].strip()
            if not label:
                raise ValueError(f"{where}: empty label")
            pairs.append((_as_id(row[i].strip(), where), label, where))
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num}: {err}") from None
    return pairs


def read_label_studio(path: Union[str, Path]) -> list:
    """``[(id, label, where), ...]`` from a Label Studio JSON export (Export → JSON) of tasks that
    :func:`label_studio_tasks` wrote: the pool id is ``data["alscale_id"]``, the label the choice
    of a ``choices`` annotation (a class name). Tasks without annotations (or with cancelled
    ones only) are skipped; annotations of one task that disagree, or that choose more than one
    class, are refused naming the task."""
    path = Path(path)
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a Label Studio JSON export ({err})") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: a Label Studio JSON export is a list of tasks, got {type(tasks).__name__}")
    pairs = []
    for i, task in enumerate(tasks):
        where = f"{path} task {i + 1}" + (f" (id {task['id']})" if isinstance(task, dict) and "id" in task else "")
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ValueError(f"{where}: a task must be an object with 'data'")
        if LS_ID not in task["data"]:
            raise ValueError(f"{where}: its data has no {LS_ID!r} (tasks must come from alscale query --format label-studio)")
        chosen = set()
        for ann in task.get("annotations") or []:
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            for result in ann.get("result") or []:
                if isinstance(result, dict) and result.get("type") == "choices":
                    choices = (result.get("value") or {}).get("choices") or []
                    if len(choices) != 1:
                        raise ValueError(f"{where}: an annotation chooses {len(choices)} classes {choices}, not one")
                    chosen.add(str(choices[0]))
        if len(chosen) > 1:
            raise ValueError(f"{where}: its annotations disagree ({', '.join(sorted(chosen))})")
        if chosen:
            pairs.append((_as_id(task["data"][LS_ID], where), chosen.pop(), where))
    return pairs


def label_studio_tasks(ids: Sequence[int], *, data: Optional[dict] = None, field: str = "image",
                       scores: Optional[tuple] = None, round: Optional[int] = None) -> list:
    """The Label Studio tasks (to import) of a batch: ``{"data": {"alscale_id": id, field:
    data[id]}}`` per id, in the batch's order (``data`` maps pool ids to the user's field, e.g.
    image URLs; ``round`` and ``scores``, a ``(column, values)`` pair as
    :meth:`ActiveLearner.scores` gives, go to ``meta``).

    Examples
    --------
    >>> from alscale.project import label_studio_tasks
    >>> label_studio_tasks([7], data={7: "http://host/7.jpg"})
    [{'data': {'alscale_id': 7, 'image': 'http://host/7.jpg'}}]
    """
    tasks = []
    for k, i in enumerate(ids):
        item = {LS_ID: int(i)}
        if data is not None:
            if int(i) not in data:
                raise ValueError(f"the data file has no row for id {int(i)}")
            item[field] = data[int(i)]
        task = {"data": item}
        meta = {}
        if scores is not None:
            meta[scores[0]] = scores[1][k].item()
        if round is not None:
            meta["round"] = int(round)
        if meta:
            task["meta"] = meta
        tasks.append(task)
    return tasks


# ------------------------------------------------------------------------------ the project
class ActiveLearner:
    """An annotation project in a folder: query batches, teach their labels, round after round.

    Parameters
    ----------
    project_dir : str or Path
        The project's folder, created if missing; an existing project is resumed.
    strategy : str, optional
        The default strategy of :meth:`query` (one of :data:`STRATEGIES`); stored in the project.
        Default: the project's, else ``"base"``.
    classes : sequence of str, optional
        Class names, index order (label names in files and in Label Studio map to indices by
        it). Stored; a project's classes cannot change.
    pool_size : int, optional
        Pool rows; otherwise set by the first query (the rows of its logits). Stored.
    options : dict, optional
        Strategy options stored in the project: cluster-margin's ``n_clusters`` (default: the
        first query's budget), ``neighbors`` (10), ``knn_recall`` (0.95: the faiss kNN graph's
        target recall beyond 200,000 rows), ``pca`` (None: dimensions to reduce the embeddings
        to before the graph) and ``candidates_factor`` (10); probcover's ``delta`` or
        ``num_classes`` (default: the project's class count) and ``neighbors`` (20).
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
                 classes: Optional[Sequence[str]] = None, pool_size: Optional[int] = None,
                 options: Optional[dict] = None, create: bool = True,
                 progress: Optional[Callable[[str], None]] = None):
        self.path = Path(project_dir)
        self.progress = progress
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"project_dir {self.path} is a file, not a folder")
        if not (self.path / CONFIG).exists():
            if not create:
                raise ValueError(f"{self.path} is not an alscale project (no {CONFIG}); "
                                 "create it with alscale query, or ActiveLearner(path)")
            self.path.mkdir(parents=True, exist_ok=True)
        if strategy is not None:
            _strategy(strategy)
        with self._locked():
            config = self._read_config() if (self.path / CONFIG).exists() else None
            new = config is None
            config = config or {"format": FORMAT, "version": VERSION, "strategy": "base", "classes": None,
                                "num_classes": None, "pool_size": None, "options": {}}
            if strategy is not None:
                config["strategy"] = strategy
            if classes is not None:
                config = self._with_classes(config, classes)
            if pool_size is not None:
                config = self._with_pool(config, _as_id(pool_size, "pool_size"), "pool_size")
            if options:
                config["options"] = {**config["options"], **options}
            if new or config != self._read_config():
                write_atomic(self.path / CONFIG, json.dumps(config, indent=1) + "\n")
            self.config = config

    # -------------------------------------------------------------- reading
    @property
    def strategy(self) -> str:
        return self.config["strategy"]

    @property
    def classes(self) -> Optional[list]:
        return self.config["classes"]

    @property
    def labels(self) -> Labels:
        """The labels so far (ids, class indices, rounds), in the order they were taught."""
        return self._read_labels()

    @property
    def rounds(self) -> list:
        """The batches queried so far, as :class:`Batch`\\ es (round 1 first)."""
        return [Batch(b["round"], b["strategy"], b["budget"], b["seed"], np.asarray(b["ids"], dtype=np.int64))
                for b in self._read_history()]

    history = rounds

    def status(self) -> dict:
        """A summary: pool size, classes, labels per class, imbalance (largest / smallest class
        count; inf when a class has none), and per round the batch size and how much of it is
        labeled."""
        self.config = self._read_config()  # another command may have changed it
        labels, rounds = self._read_labels(), self._read_history()
        c = self.config["num_classes"] or (int(labels.labels.max()) + 1 if labels.ids.size else 0)
        counts = np.bincount(labels.labels, minlength=c) if c else np.zeros(0, np.int64)
        taught = set(labels.ids.tolist())
        return {
            "project": str(self.path), "strategy": self.strategy, "pool_size": self.config["pool_size"],
            "classes": self.classes or [str(i) for i in range(c)], "labels": int(labels.ids.size),
            "per_class": counts.tolist(),
            "imbalance": (float(counts.max() / counts.min()) if counts.min() > 0 else float("inf"))
            if counts.size and counts.max() > 0 else None,
            "rounds": [{"round": b["round"], "strategy": b["strategy"], "size": len(b["ids"]),
                        "labeled": sum(i in taught for i in b["ids"])} for b in rounds],
        }

    # -------------------------------------------------------------- querying
    def query(self, logits: Any, budget: int, *, strategy: Optional[str] = None, embeddings: Any = None,
              weight: Any = None, clusters: Any = None, seed: Optional[int] = None,
              on_pick: Optional[Callable[[np.ndarray, int], None]] = None, options: Optional[dict] = None):
        """Picks ``budget`` unlabeled pool ids with the strategy, records the batch as the next
        round of the project's history, and returns the ids (int64, in the strategy's order).

        Row i of ``logits`` (and of ``embeddings``) is pool id i; every labeled id is excluded.
        ``logits`` may be None for strategies that do not need them (random, coreset).
        The result is the library call's (e.g. ``alscale.select_balanced(logits, budget,
        weight=weight, exclude=labeled)``). ``logits`` may be a memmap, read in chunks.
        ``seed`` (random, badge, cluster-margin) defaults to a fresh one, recorded in the
        history. ``clusters`` (cluster-margin): the pool's cluster ids; default: average-linkage
        HAC of ``embeddings``, computed once and cached in the project. ``on_pick(ids, round)``,
        if given, runs before the batch is recorded; when it raises nothing is recorded (the
        command line writes its output file there). ``options`` (e.g. cluster-margin's
        ``n_clusters``, ``neighbors``, ``knn_recall``, ``pca``; see :class:`ActiveLearner`)
        update the project's options, stored with the batch (not when the query fails).
        """
        name = strategy or self.strategy
        spec = _strategy(name)
        for need, value in (("logits", logits), ("embeddings", embeddings)):
            if need in spec.needs and value is None:
                raise ValueError(f"strategy {name!r} needs {need}")
        n, c = spec.shape(logits) if logits is not None else (None, None)
        if embeddings is not None:
            shape = getattr(embeddings, "shape", ())
            if len(shape) != 2:
                raise ValueError(f"embeddings must be an array of shape (pool, dimensions), got "
                                 f"{type(embeddings).__name__}" + (f" of shape {tuple(shape)}" if shape else ""))
            if n is not None and int(shape[0]) != n:
                raise ValueError(f"embeddings has {shape[0]} rows but logits has {n} (one per pool id)")
            n = int(shape[0])
        from ._backend.arrays import as_budget

        k = as_budget(budget)
        if seed is None:
            seed = int(np.random.default_rng().integers(2**62))
        from ._backend.arrays import as_seed

        seed = as_seed(seed)
        with self._locked():
            config = self._read_config()
            what = "logits" if logits is not None else "embeddings"
            if n is None:
                n = config["pool_size"]
                if n is None:
                    raise ValueError(f"strategy {name!r} needs the pool size: give logits or embeddings, or "
                                     "create the project with pool_size (alscale query --pool-size)")
            config = self._with_pool(config, n, what)
            if c is not None:
                config = self._with_num_classes(config, c, "logits")
            if options:
                config["options"] = {**config.get("options", {}), **options}
            if config.get("options", {}).get("n_clusters") is None and name == "cluster-margin":
                config["options"] = {**config["options"], "n_clusters": k}
            labels = self._read_labels()
            if labels.ids.size and int(labels.ids.max()) >= n:
                raise ValueError(f"{what} has {n} rows but id {int(labels.ids.max())} is labeled (row i is pool id i)")
            if c is not None and labels.ids.size and int(labels.labels.max()) >= c:
                raise ValueError(f"logits has {c} classes but class {int(labels.labels.max())} is taught")
            labeled = np.zeros(n, dtype=bool)
            labeled[labels.ids] = True
            ctx = QueryContext(logits, k, labeled, seed, embeddings, weight, clusters, self, dict(config["options"]))
            ids = np.asarray(spec.select(ctx), dtype=np.int64)
            history = self._read_history()
            if on_pick is not None:
                on_pick(ids, len(history) + 1)
            history.append({"round": len(history) + 1, "strategy": name, "budget": k, "seed": seed,
                            "labeled_before": int(labels.ids.size), "ids": ids.tolist(),
                            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
            if config != self.config or config != self._read_config():
                write_atomic(self.path / CONFIG, json.dumps(config, indent=1) + "\n")
            self.config = config
            write_atomic(self.path / HISTORY, json.dumps({"rounds": history}) + "\n")
        return ids

    def scores(self, logits: Any, ids: Any, *, strategy: Optional[str] = None, weight: Any = None):
        """``(column, values)`` for the picked ``ids`` (in their order): the strategy's score
        (``margin``, ``confidence``, ``entropy``; ``boundary`` for mase), the class whose quota
        each fills for base (``class``), or None (random, coreset, badge)."""
        spec = _strategy(strategy or self.strategy)
        if spec.score is None:
            return None
        column, fn = spec.score
        return column, np.asarray(fn(logits, np.asarray(ids, dtype=np.int64), weight))

    def clusters(self, embeddings: Any, *, n_clusters: int, neighbors: int = 10, knn_recall: float = 0.95,
                 pca: Optional[int] = None) -> np.ndarray:
        """The pool's cluster ids for cluster-margin (:func:`alscale.cluster_margin.cluster_embeddings`):
        graph average-linkage HAC of the embeddings on their ``neighbors``-NN cosine graph (faiss's,
        at target recall ``knn_recall``, beyond 200,000 rows; after PCA to ``pca`` dimensions if
        given), cut into ``n_clusters``. Computed once and cached in the project (``clusters.npz``,
        replaced atomically) under a fingerprint of the embeddings' values and the settings: other
        embeddings or settings cluster again, the same ones reuse the cache. The stages report
        to the learner's ``progress``."""
        if embeddings is None:
            raise ValueError("cluster-margin needs embeddings (or clusters=)")
        from ._backend.arrays import real_matrix
        from .cluster_margin import cluster_embeddings, cluster_settings
        from .hac import auto_knn_method

        z = real_matrix(embeddings, "embeddings", "rows")
        checked = cluster_settings(n_clusters, neighbors, knn_recall, pca, int(z.shape[1]))
        settings = {**dict(zip(("n_clusters", "neighbors", "knn_recall", "pca"), checked)),
                    "knn_method": auto_knn_method(int(z.shape[0])), "format": 2}
        say = self.progress or (lambda line: None)
        say(f"fingerprinting {z.shape[0]:,} embeddings for the clusters cache ({CLUSTERS})")
        key = _fingerprint(z, *sorted(settings.items()))
        path = self.path / CLUSTERS
        cached = _cached_clusters(path, key, int(z.shape[0]))
        if cached is not None:
            say(f"clusters reused from {path}")
            return cached
        say(f"clustering the pool into {settings['n_clusters']:,} clusters (cached in {path})")
        labels = cluster_embeddings(z, settings["n_clusters"], neighbors=settings["neighbors"],
                                    recall=settings["knn_recall"], pca=settings["pca"],
                                    knn_method=settings["knn_method"], progress=self.progress)
        buf = io.BytesIO()
        np.savez(buf, labels=labels, key=np.array(key), settings=np.array(json.dumps(settings)))
        write_atomic(path, buf.getvalue())
        return labels

    # -------------------------------------------------------------- teaching
    def teach(self, ids: Any, labels: Any) -> int:
        """Records ``labels[i]`` (class index, or class name when the project has classes) for
        pool id ``ids[i]``; returns how many labels are new. All or nothing: a bad pair raises
        ValueError naming it (``ids[3]``) and nothing is recorded."""
        ids = list(np.asarray(ids).reshape(-1).tolist()) if not isinstance(ids, (list, tuple)) else list(ids)
        labels = list(np.asarray(labels).reshape(-1).tolist()) if not isinstance(labels, (list, tuple)) else list(labels)
        if len(ids) != len(labels):
            raise ValueError(f"ids and labels differ in length ({len(ids)} and {len(labels)})")
        return self.teach_pairs([(_as_id(i, f"ids[{k}]"), lab, f"ids[{k}]") for k, (i, lab) in enumerate(zip(ids, labels))])

    def teach_file(self, path: Union[str, Path], *, classes: Optional[Sequence[str]] = None) -> int:
        """Teaches the labels of a CSV (``id,label``) or of a Label Studio JSON export (a
        ``.json`` file); ``classes`` sets the project's class names first if it has none."""
        if classes is not None:
            with self._locked():
                config = self._with_classes(self._read_config(), classes)
                if config != self._read_config():
                    write_atomic(self.path / CONFIG, json.dumps(config, indent=1) + "\n")
                self.config = config
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        pairs = read_label_studio(path) if path.suffix.lower() == ".json" else read_labels_csv(path)
        return self.teach_pairs(pairs)

    def teach_pairs(self, pairs: Sequence[tuple]) -> int:
        """Teaches ``(id, label, where)`` triples (``where`` names each in errors); see :meth:`teach`."""
        with self._locked():
            config = self._read_config()
            self.config = config
            n, c, names = config["pool_size"], config["num_classes"], config["classes"] or []
            index = {name: i for i, name in enumerate(names)}
            current = self._read_labels()
            known = dict(zip(current.ids.tolist(), current.labels.tolist()))
            new: dict = {}
            seen: dict = {}
            for i, label, where in pairs:
                if i < 0 or (n is not None and i >= n):
                    raise ValueError(f"{where}: id {i} is out of range (the pool has ids 0..{n - 1 if n else '?'})"
                                     if n is not None else f"{where}: id {i} is negative")
                y = self._class_index(label, index, c, where)
                if i in known:
                    if known[i] != y:
                        raise ValueError(f"{where}: id {i} is labeled {self._name(y)}, but was taught "
                                         f"{self._name(known[i])} before ({LABELS}); nothing of this file was recorded")
                    continue
                if i in new and new[i] != y:
                    raise ValueError(f"{where}: id {i} is labeled {self._name(y)}, but {seen[i]} labels it "
                                     f"{self._name(new[i])}")
                new.setdefault(i, y)
                seen.setdefault(i, where)
            if new:
                r = len(self._read_history())
                lines = [self._read_text(LABELS) or "id,label,round\n"]
                lines += [f"{i},{y},{r}\n" for i, y in new.items()]
                write_atomic(self.path / LABELS, "".join(lines))
        return len(new)

    # -------------------------------------------------------------- internals
    def _name(self, y: int) -> str:
        names = self.config.get("classes")
        return f"{names[y]!r}" if names and 0 <= y < len(names) else str(y)

    @staticmethod
    def _class_index(label: Any, index: dict, c: Optional[int], where: str) -> int:
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
    def _with_pool(config: dict, n: int, what: str) -> dict:
        if n < 0:
            raise ValueError(f"{what}: pool size must be >= 0, got {n}")
        if config["pool_size"] is not None and config["pool_size"] != n:
            raise ValueError(f"{what} has {n} rows but the project's pool has {config['pool_size']} ids "
                             "(row i is pool id i)")
        return {**config, "pool_size": n}

    @staticmethod
    def _with_num_classes(config: dict, c: int, what: str) -> dict:
        if config["num_classes"] is not None and config["num_classes"] != c:
            raise ValueError(f"{what} has {c} classes but the project has {config['num_classes']}"
                             + (f" ({', '.join(config['classes'])})" if config["classes"] else ""))
        return {**config, "num_classes": c}

    def _with_classes(self, config: dict, classes: Sequence[str]) -> dict:
        names = [str(x) for x in classes]
        if not names or len(set(names)) != len(names) or any(not x for x in names):
            raise ValueError(f"classes must be distinct non-empty names, got {names}")
        if config["classes"] is not None and config["classes"] != names:
            raise ValueError(f"the project's classes are {config['classes']}, not {names}")
        config = self._with_num_classes(config, len(names), "classes")
        return {**config, "classes": names}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            yield
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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

    def _read_text(self, name: str) -> Optional[str]:
        try:
            return (self.path / name).read_text()
        except FileNotFoundError:
            return None

    def _read_config(self) -> dict:
        text = self._read_text(CONFIG)
        try:
            config = json.loads(text) if text is not None else None
        except ValueError as err:
            raise ValueError(f"{self.path / CONFIG} is not valid JSON ({err})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError(f"{self.path / CONFIG} is not an alscale project configuration")
        if config.get("version") != VERSION:
            raise ValueError(f"{self.path / CONFIG}: project version {config.get('version')}, this alscale reads {VERSION}")
        return config

    def _read_history(self) -> list:
        text = self._read_text(HISTORY)
        if text is None:
            return []
        try:
            return json.loads(text)["rounds"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path / HISTORY} is not an alscale history ({err})") from None

    def _read_labels(self) -> Labels:
        text = self._read_text(LABELS)
        if text is None or text.count("\n") <= 1:
            e = np.zeros(0, dtype=np.int64)
            return Labels(e, e.copy(), e.copy())
        try:
            a = np.loadtxt(io.StringIO(text), dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
        except ValueError as err:
            raise ValueError(f"{self.path / LABELS} is damaged ({err})") from None
        return Labels(a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy())


def _strategy(name: str) -> QueryStrategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def _cached_clusters(path: Path, key: str, n: int) -> Optional[np.ndarray]:
    """The labels of the clusters cache if it exists, is whole, and is of ``key``; else None."""
    import zipfile

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            labels = f["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # unreadable: computed again
    if labels.shape != (n,) or labels.dtype != np.int64 or (n and int(labels.min()) < 0):
        return None
    return labels


def _fingerprint(z: Any, *settings: Any) -> str:
    """A digest of an (N, D) array's values (read in chunks: a memmap stays on disk) and settings."""
    h = hashlib.sha256(repr((tuple(z.shape), str(getattr(z, "dtype", "")), settings)).encode())
    step = max(1, (64 << 20) // max(1, int(np.prod(z.shape[1:])) * 8))
    for start in range(0, int(z.shape[0]), step):
        h.update(np.ascontiguousarray(np.asarray(z[start:start + step])).tobytes())
    return h.hexdigest()


def format_status(status: dict) -> str:
    """The text table of :meth:`ActiveLearner.status`."""
    lines = [f"project {status['project']}: {status['labels']} labels"
             + (f" of a pool of {status['pool_size']}" if status["pool_size"] is not None else "")
             + f", {len(status['rounds'])} rounds queried, default strategy {status['strategy']}"]
    total = max(1, status["labels"])
    names = status["classes"]
    if names:
        width = max(5, *(len(x) for x in names))
        lines.append(f"{'class':<{width}}  {'labels':>8}  {'share':>6}")
        for name, count in zip(names, status["per_class"]):
            lines.append(f"{name:<{width}}  {count:>8}  {100 * count / total:>5.1f}%")
    imb = status["imbalance"]
    lines.append("imbalance (largest / smallest class): "
                 + ("n/a (no labels)" if imb is None else "inf (a class has no label)" if imb == float("inf") else f"{imb:.2f}"))
    if status["rounds"]:
        lines.append(f"{'round':>5}  {'strategy':<14}  {'batch':>7}  {'labeled':>7}")
        for r in status["rounds"]:
            lines.append(f"{r['round']:>5}  {r['strategy']:<14}  {r['size']:>7}  {r['labeled']:>7}")
    return "\n".join(lines) + "\n"
