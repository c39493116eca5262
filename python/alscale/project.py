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
import io
import json
import os
import re
import tempfile
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import strategies as _strategies
from ._backend.arrays import fingerprint

__all__ = ["ActiveLearner", "Batch", "Labels", "QueryContext", "STRATEGIES", "register",
           "format_status", "read_label_studio", "label_studio_tasks", "read_labels_csv"]

CONFIG, LABELS, HISTORY, CLUSTERS, LOCK = "project.json", "labels.csv", "history.json", "clusters.npz", ".lock"
FORMAT = "alscale-project"
VERSION = 1
#: The key of the pool id in the ``data`` of the Label Studio tasks that alscale writes.
LS_ID = "alscale_id"


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

        The strategy is :mod:`alscale.strategies`' (the loop's too): the same name, options and
        inputs give the same picks. Row i of ``logits`` (and of ``embeddings``) is pool id i;
        every labeled id is excluded. ``logits`` may be None for strategies that do not need
        them (random, coreset), and are (T, N, C) MC samples for the Bayesian strategies.
        The result is the library call's (e.g. ``alscale.select_balanced(logits, budget,
        weight=weight, exclude=labeled)``). ``logits`` may be a memmap, read in chunks.
        ``seed`` (random, badge, cluster-margin) defaults to a fresh one, recorded in the
        history. ``clusters`` (cluster-margin): the pool's cluster ids; default: average-linkage
        HAC of ``embeddings``, computed once and cached in the project. ``on_pick(ids, round)``,
        if given, runs before the batch is recorded; when it raises nothing is recorded (the
        command line writes its output file there). ``options`` (the strategy's options, e.g.
        cluster-margin's ``n_clusters``, ``neighbors``, ``knn_recall``, ``pca``; see
        :class:`ActiveLearner`) update the project's options, stored with the batch (not when
        the query fails). A strategy's state (cluster-margin's clusters, probcover's δ) is
        cached in the project under a fingerprint of its inputs and settings.
        """
        name = strategy or self.strategy
        cls = _strategy(name)
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
        from ._backend.arrays import as_budget, as_seed

        k = as_budget(budget)
        if seed is None:
            seed = int(np.random.default_rng().integers(2**62))
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
            opts = _strategy_options(cls, config["options"])
            if name == "cluster-margin":
                from .cluster_margin import cluster_settings

                features = int(embeddings.shape[1]) if embeddings is not None else None
                cluster_settings(opts["n_clusters"], opts.get("neighbors", 10), opts.get("knn_recall", 0.95),
                                 opts.get("pca"), features)
            chosen = cls(**opts)
            mc = "mc_samples" in cls.needs
            pool = _strategies.PoolView(labeled=labeled, logits=None if mc else logits,
                                        mc_samples=logits if mc else None, embeddings=embeddings, weight=weight,
                                        num_classes=config["num_classes"], clusters=clusters, progress=self.progress)
            cache = self._restore_state(chosen, pool) if cls.state_options and clusters is None else None
            ids = np.asarray(chosen.select(pool, k, seed), dtype=np.int64)
            history = self._read_history()
            if on_pick is not None:
                on_pick(ids, len(history) + 1)
            history.append({"round": len(history) + 1, "strategy": name, "budget": k, "seed": seed,
                            "labeled_before": int(labels.ids.size), "ids": ids.tolist(),
                            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
            if cache is not None:
                self._save_state(chosen, *cache)
            if config != self.config or config != self._read_config():
                write_atomic(self.path / CONFIG, json.dumps(config, indent=1) + "\n")
            self.config = config
            write_atomic(self.path / HISTORY, json.dumps({"rounds": history}) + "\n")
        return ids

    def scores(self, logits: Any, ids: Any, *, strategy: Optional[str] = None, weight: Any = None):
        """``(column, values)`` for the picked ``ids`` (in their order): the strategy's score
        (``margin``, ``confidence``, ``entropy``; ``boundary`` for mase), the class whose quota
        each fills for base (``class``), or None (random, coreset, badge)."""
        cls = _strategy(strategy or self.strategy)
        if cls.score_column is None or logits is None:
            return None
        chosen = cls(**_strategy_options(cls, self.config.get("options", {})))
        pool = _strategies.PoolView(labeled=np.zeros(0, dtype=bool), logits=logits, weight=weight)
        return cls.score_column, np.asarray(chosen.scores(pool, np.asarray(ids, dtype=np.int64)))

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
            from .hac import auto_knn_method

            settings["knn_method"] = auto_knn_method(pool.size)
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


def _strategy(name: str) -> type:
    return _strategies.get_class(name)


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
