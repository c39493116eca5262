"""The active-learning loop: train, evaluate, compute what the strategy needs on the pool,
select, label (the simulated oracle reveals the true labels), record — round after round, with
an atomic checkpoint after every round so that a killed run resumes to exactly the same result.

Checkpoints are JSON with a SHA-256 digest of each part (config, labeled, records,
strategy_state) over its canonical JSON; a resume checks every field's type and range and the
digests, and names the file and the field of anything wrong or edited. Arrays of a strategy's
state (cluster-margin's N cluster labels) are .npy files beside the checkpoint, named after it
and their SHA-256 (``c.json.labels.<16 hex>.npy``), written atomically before it; the JSON
holds ``{"npy": name, "sha256": digest}``, so the digests cover them too.

Multi-label data (labels an (N, C) 0/1 matrix, :attr:`alscale.al.datasets.Dataset.multilabel`):
the oracle reveals a row's whole label set, the model is one sigmoid per class
(:class:`alscale.al.train.SigmoidProbe`), the metric is the test split's mean average precision
over the classes, and the strategies are those that read the logits as independent sigmoids
(``multilabel=True``) or read no model output at all (random, and the embedding-only ones).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from . import metrics
from .._backend.arrays import as_int
from ..distributed import Comm, shard_rows
from ..project import write_atomic
from ..strategies import PoolView, Strategy, get

__all__ = ["ActiveLearningLoop"]

_CHECKPOINT_VERSION = 2
#: The parts of a checkpoint that carry a digest.
_PARTS = ("config", "labeled", "records", "strategy_state")
#: The fields every round's record starts with, and those in the middle (the labelled set's and
#: the batch's balance, the round's epochs and times).
_RECORD_HEAD = {"strategy": "str", "seed": "int", "round": "int", "n_labeled": "int"}
_RECORD_BALANCE = {
    "empty_classes": "count", "imbalance_ratio": "ratio", "label_entropy": "fraction",
    "batch_empty_classes": "count", "batch_imbalance_ratio": "ratio", "batch_label_entropy": "fraction",
    "epochs": "count", "train_seconds": "seconds", "select_seconds": "seconds",
}
#: Every field of a round's record and what it holds.
_RECORD_FIELDS = {
    **_RECORD_HEAD, "test_accuracy": "fraction", "val_accuracy": "fraction", **_RECORD_BALANCE,
    "per_class_accuracy": "fractions", "class_counts": "counts",
}
#: The fields of a round's record on multi-label data: the test split's mean average precision
#: over the classes with a positive (``test_map``) and each class's AP (NaN: no positive);
#: ``class_counts`` and the balance fields count the positive labels of each class, ``positives``
#: their total.
_MULTILABEL_RECORD_FIELDS = {
    **_RECORD_HEAD, "test_map": "fraction", "positives": "count", **_RECORD_BALANCE,
    "per_class_ap": "fractions", "class_counts": "counts",
}
#: What a strategy may read without treating the logits as one softmax.
_OUTPUT_FREE = frozenset({"embeddings"})


#: The name of an array file beside checkpoint ``c.json``: ``c.json.<key>.<16 hex>.npy``.
_ARRAY_FILE = re.compile(r"\.(?P<key>[A-Za-z0-9_]+)\.(?P<digest>[0-9a-f]{16})\.npy$")


def _is_array_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"npy", "sha256"}


def _round_rng(seed: int, round_index: int, stream: int) -> np.random.Generator:
    """The generator of one step of one round: independent of everything that ran before, so a
    resumed run draws exactly what an uninterrupted one does."""
    return np.random.default_rng([seed, round_index, stream])


#: Strategy options renamed since checkpoints were first written: strategy -> {old: new}.
_RENAMED_OPTIONS = {"cluster-margin": {"clusters": "n_clusters"}, "typiclust": {"k": "neighbors"}}


def _renamed_options(config: Any) -> Any:
    """A checkpoint's config with the options renamed since it was written (cluster-margin's
    ``clusters`` is ``n_clusters`` now, typiclust's ``k`` ``neighbors``), so that earlier
    checkpoints still resume."""
    renamed = _RENAMED_OPTIONS.get(config.get("strategy")) if isinstance(config, dict) else None
    options = config.get("strategy_options") if renamed else None
    if not isinstance(options, dict) or any(new in options for new in renamed.values()):
        return config
    return {**config, "strategy_options": {renamed.get(k, k): v for k, v in options.items()}}


def write_json_atomic(path: Union[str, Path], obj: Any) -> None:
    """Writes JSON through :func:`alscale.project.write_atomic` (temporary file in the same folder,
    fsync, os.replace, folder fsync): a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(obj))


def _canonical(obj: Any) -> str:
    """The JSON text a digest is taken over: sorted keys, no spaces (NaN/Infinity as Python writes them)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _digest(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode("ascii")).hexdigest()


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def config_differences(saved: Any, current: Any, name: str = "") -> List[str]:
    """The settings that differ between a checkpoint's config and the current one, as
    ``"budget: 100 in the checkpoint, 200 now"`` (nested keys dotted: ``trainer.epochs``)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: List[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            sub = f"{name}.{key}" if name else str(key)
            if key not in saved:
                out.append(f"{sub}: not in the checkpoint, {_short(current[key])} now")
            elif key not in current:
                out.append(f"{sub}: {_short(saved[key])} in the checkpoint, not set now")
            else:
                out.extend(config_differences(saved[key], current[key], sub))
        return out
    if saved == current and type(saved) is type(current):
        return []
    return [f"{name or 'config'}: {_short(saved)} in the checkpoint, {_short(current)} now"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _field_problem(kind: str, v: Any, classes: int) -> Optional[str]:
    """What is wrong with a record field's value ``v`` of kind ``kind`` (None if nothing)."""
    if kind == "str":
        return None if isinstance(v, str) else "must be a string"
    if kind == "int":
        return None if _is_int(v) else "must be an integer"
    if kind == "count":
        return None if _is_int(v) and v >= 0 else "must be an integer >= 0"
    if kind in ("fractions", "counts"):
        if not isinstance(v, list) or len(v) != classes:
            return f"must be a list of {classes} values (one per class)"
        inner = "fraction" if kind == "fractions" else "count"
        bad = next((i for i, x in enumerate(v) if _field_problem(inner, x, classes)), None)
        return None if bad is None else f"entry {bad} {_field_problem(inner, v[bad], classes)}"
    if not _is_number(v):
        return "must be a number"
    if kind == "fraction":
        return None if math.isnan(v) or 0.0 <= v <= 1.0 + 1e-9 else "must lie in [0, 1] (or be NaN)"
    if kind == "ratio":
        return None if math.isnan(v) or 1.0 <= v < math.inf else "must be a finite number >= 1 (or NaN)"
    return None if 0.0 <= v < math.inf else "must be a finite number of seconds >= 0"  # seconds


class ActiveLearningLoop:
    """Pool-based batch active learning with a simulated oracle.

    Round r = 0 … ``rounds``: train on the labeled rows (from the trainer's initial weights),
    evaluate on the test split, record; then, for r < ``rounds``, compute what the strategy
    needs on the unlabeled pool (in batches), select ``budget`` rows and label them. The initial
    labeled set is ``initial`` rows drawn uniformly at random.

    The pool's logits reach the strategy as the trainer's chunk source (``trainer.logits``):
    the selection functions walk it chunk by chunk, so no N x C array is ever held (BADGE,
    which needs them whole, excepted); the test accuracy is taken chunk by chunk too.

    Parameters
    ----------
    dataset : alscale.al.datasets.Dataset
    strategy : str or alscale.strategies.Strategy
    trainer : alscale.al.train.TorchTrainer (or anything with setup / fit / predict / head_weight)
        A trainer without a ``logits(split, rows=None)`` chunk-source method gets its whole
        logits through ``predict``.
    initial, budget, rounds : int
    seed : int
        Seeds the initial set, the strategy's draws and the training; same seed, same run.
    checkpoint : path, optional
        JSON file written atomically after every round; :meth:`resume` continues from it.
    progress : callable (record) -> None, optional
        Called after every round (the CLI advances its progress bar with it).
    group : torch.distributed ProcessGroup, optional
        Run sharded over the group's ranks (``torchrun``): rank 0 trains and evaluates and sends
        the model to the others; each rank scores its shard of the pool (``shard_rows``) and
        the selection is global and exact, identical on every rank (strategies that are not
        ``shardable`` score the whole pool on every rank). Only rank 0 writes the checkpoint and
        calls ``progress``; the records are the same as one process's.
    name : str, optional
        The name the records carry (``record["strategy"]``); default the strategy's name. It
        tells apart runs of one strategy with other options (``alscale run``'s ``margin-min``).

    On multi-label data (``dataset.multilabel``) the trainer must be a multi-label one
    (:func:`alscale.al.train.sigmoid_probe`) and the strategy multi-label (``multilabel=True``:
    margin, confidence, entropy, cluster-margin) or free of the model's outputs (random,
    coreset, typiclust, probcover); the records hold ``test_map`` and ``per_class_ap`` instead
    of the accuracies (:data:`_MULTILABEL_RECORD_FIELDS`).

    Examples
    --------
    >>> from alscale.al.datasets import make_synthetic
    >>> from alscale.al.loop import ActiveLearningLoop
    >>> from alscale.al.train import linear_probe
    >>> data = make_synthetic(400, 8, 4, seed=0)
    >>> loop = ActiveLearningLoop(data, "margin", linear_probe(epochs=5), initial=20, budget=10, rounds=2)
    >>> [r["n_labeled"] for r in loop.run()]
    [20, 30, 40]
    """

    def __init__(
        self,
        dataset,
        strategy: Union[str, Strategy],
        trainer,
        *,
        initial: int,
        budget: int,
        rounds: int,
        seed: int = 0,
        checkpoint: Optional[Union[str, Path]] = None,
        progress: Optional[Callable[[dict], None]] = None,
        group: Any = None,
        name: Optional[str] = None,
    ) -> None:
        self.dataset = dataset
        self.strategy = get(strategy) if isinstance(strategy, str) else strategy
        self.trainer = trainer
        if name is not None and not (isinstance(name, str) and name):
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        self.name = name if name is not None else self.strategy.name
        self.multilabel = bool(getattr(dataset, "multilabel", False))
        self._check_multilabel()
        n = len(dataset)
        self.initial = as_int(initial, "initial", minimum=1)
        self.budget = as_int(budget, "budget", minimum=1)
        self.rounds = as_int(rounds, "rounds")
        self.seed = as_int(seed, "seed")
        total = self.initial + self.budget * self.rounds
        if total > n:
            raise ValueError(
                f"initial + budget x rounds = {self.initial} + {self.budget} x {self.rounds} = {total} labels, "
                f"more than the pool's {n} rows"
            )
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress
        self.comm = Comm(group)
        self._array_refs: Dict[str, tuple] = {}  # strategy state arrays: key -> (array, file, digest, bytes)
        self.labeled_order: np.ndarray = np.zeros(0, dtype=np.int64)  # rows in the order labeled
        self.records: List[Dict[str, Any]] = []
        self._setup_done = False

    def _check_multilabel(self) -> None:
        """A ValueError when the strategy reads the model's outputs as the other kind of labels:
        a softmax strategy (BASE, BADGE, ...) on multi-label data, or a multi-label one on
        single-label data."""
        strategy = self.strategy
        reads_outputs = bool(set(strategy.needs) - _OUTPUT_FREE)
        sigmoid = bool(getattr(strategy, "multilabel", False))
        if self.multilabel and reads_outputs and not sigmoid:
            can = f": give it multilabel=True (alscale.strategies.get({strategy.name!r}, multilabel=True))" \
                if "multilabel" in strategy.option_defaults() else ""
            raise ValueError(f"strategy {strategy.name!r} reads the model's outputs as one softmax (or the labels as "
                             f"class indices), but {self.dataset.name} is multi-label{can}")
        if sigmoid and not self.multilabel:
            raise ValueError(f"strategy {strategy.name!r} has multilabel=True, but {self.dataset.name} is single-label "
                             "(one class per row)")
        trainer_kind = getattr(self.trainer, "multilabel", None)
        if isinstance(trainer_kind, bool) and trainer_kind != self.multilabel:
            raise ValueError(f"{type(self.trainer).__name__} trains on {'multi' if trainer_kind else 'single'}-label "
                             f"data, but {self.dataset.name} is {'multi' if self.multilabel else 'single'}-label"
                             + (": use alscale.al.train.sigmoid_probe" if self.multilabel else ""))

    def _record_fields(self) -> dict:
        return _MULTILABEL_RECORD_FIELDS if self.multilabel else _RECORD_FIELDS

    def _label_counts(self, rows: np.ndarray) -> np.ndarray:
        """Labels of each class among ``rows`` (multi-label: positives), shape (C,) int64."""
        y = self.dataset.y[rows]
        if self.multilabel:
            return y.sum(axis=0, dtype=np.int64)
        return metrics.class_counts(y, self.dataset.num_classes)

    # ------------------------------------------------------------------ config / state
    def config(self) -> dict:
        return {
            "dataset": self.dataset.name,
            "pool": len(self.dataset),
            "strategy": self.strategy.name,
            "strategy_options": self.strategy.options(),
            "trainer": self.trainer.describe() if hasattr(self.trainer, "describe") else type(self.trainer).__name__,
            "initial": self.initial,
            "budget": self.budget,
            "rounds": self.rounds,
            "seed": self.seed,
        }

    def state(self) -> dict:
        """The checkpoint: the run's config, labeled rows, records and strategy state, with a
        SHA-256 digest of each part's canonical JSON (``sha256``), which a resume checks."""
        parts = {
            "config": self.config(),
            "labeled": self.labeled_order.tolist(),
            "records": self.records,
            "strategy_state": self._strategy_state()[0],
        }
        # Through JSON once, so the digest is of what a reader will parse (tuples become lists).
        parts = json.loads(json.dumps(parts))
        return {"version": _CHECKPOINT_VERSION, **parts, "sha256": {k: _digest(v) for k, v in parts.items()}}

    def _strategy_state(self) -> tuple:
        """(the strategy's state for the checkpoint, {file name: .npy bytes}): each numpy array
        of the state becomes a reference to its file beside the checkpoint (without a
        checkpoint path, a list). An array that is the same object as at the last call is not
        serialised again (cluster-margin's labels: once per run)."""
        out, files = {}, {}
        for key, value in self.strategy.state().items():
            if isinstance(value, np.ndarray):
                if self.checkpoint is None:
                    value = value.tolist()
                else:
                    cached = self._array_refs.get(key)
                    if cached is None or cached[0] is not value:
                        buf = io.BytesIO()
                        np.save(buf, value, allow_pickle=False)
                        data = buf.getvalue()
                        digest = hashlib.sha256(data).hexdigest()
                        cached = (value, f"{self.checkpoint.name}.{key}.{digest[:16]}.npy", digest, data)
                        self._array_refs[key] = cached
                    files[cached[1]] = cached[3]
                    value = {"npy": cached[1], "sha256": cached[2]}
            out[key] = value
        return out, files

    def _write_checkpoint(self) -> None:
        """The array files (each written once, atomically), then the checkpoint (atomically),
        then the array files of this checkpoint that it no longer names are deleted: a killed
        write leaves the last checkpoint whole, with its files."""
        assert self.checkpoint is not None
        _, files = self._strategy_state()
        folder = self.checkpoint.parent
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if not (folder / name).is_file():
                write_atomic(folder / name, data)
        write_json_atomic(self.checkpoint, self.state())
        prefix = self.checkpoint.name
        for p in folder.iterdir():
            if p.name.startswith(prefix) and _ARRAY_FILE.fullmatch(p.name[len(prefix):]) and p.name not in files:
                p.unlink(missing_ok=True)

    def _read_array(self, where: str, key: str, ref: dict) -> np.ndarray:
        """The array a checkpoint's ``{"npy": name, "sha256": digest}`` names, checked: a file in
        the checkpoint's folder (no path), named ``*.<key>.<16 hex>.npy``, of that digest."""
        name = ref["npy"]
        match = _ARRAY_FILE.search(name) if isinstance(name, str) else None
        if match is None or match["key"] != key or "/" in name or "\\" in name or name.startswith(".") \
                or not isinstance(ref["sha256"], str) or self.checkpoint is None:
            raise ValueError(f"{where}: 'strategy_state' field {key!r} names {_short(name)}, not an array file "
                             "of this checkpoint")
        path = self.checkpoint.parent / name
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"{where}: the array file {path} of 'strategy_state' field {key!r} cannot be read "
                             f"({err.strerror or err}); it is written beside the checkpoint and kept with it") from None
        if hashlib.sha256(data).hexdigest() != ref["sha256"]:
            raise ValueError(f"{where}: the array file {path} does not match its SHA-256 digest: it was edited or "
                             "is corrupt")
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(f"{where}: the array file {path} is not a .npy array ({err})") from None

    @property
    def finished(self) -> bool:
        return len(self.records) >= self.rounds + 1

    def _load(self, state: Any) -> None:
        """Restores a checkpoint after checking it is a whole, consistent, unedited one of this
        run: every field's type and range, the records against the labeled rows, and each
        part's SHA-256 digest. A ValueError names the file and the field: a hand-edited, corrupt
        or foreign file must not make the loop run forever, index out of range, fail at the end
        or silently diverge."""
        where = f"checkpoint {self.checkpoint}" if self.checkpoint is not None else "checkpoint"
        try:
            self._check_and_restore(state, where)
        except RecursionError:
            raise ValueError(f"{where} is nested too deeply: it is not an alscale loop checkpoint") from None

    def _check_and_restore(self, state: Any, where: str) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"{where} must be a JSON object, got {type(state).__name__}")
        for key in ("version", "config", "labeled", "records"):
            if key not in state:
                raise ValueError(f"{where} has no '{key}': it is not an alscale loop checkpoint")
        version = state["version"]
        if version != _CHECKPOINT_VERSION or not _is_int(version):
            raise ValueError(f"{where}: 'version' is {_short(version)}, not {_CHECKPOINT_VERSION}: it was written by "
                             "another alscale version (delete it to start afresh)")
        unknown = sorted(set(state) - {"version", "sha256", *_PARTS}, key=str)
        if unknown:
            raise ValueError(f"{where} has unexpected fields {unknown}")
        current = json.loads(json.dumps(self.config()))
        differences = config_differences(_renamed_options(state["config"]), current)
        if differences:
            raise ValueError(f"{where} is of another run: {'; '.join(differences)}")
        records = state["records"]
        if not isinstance(records, list):
            raise ValueError(f"{where}: 'records' must be a list, got {type(records).__name__}")
        if len(records) > self.rounds + 1:
            raise ValueError(f"{where} holds {len(records)} records, more than rounds + 1 = {self.rounds + 1}")
        for r, record in enumerate(records):
            self._check_record(where, r, record)
        labeled = state["labeled"]
        if not isinstance(labeled, list) or not all(_is_int(i) for i in labeled):
            raise ValueError(f"{where}: 'labeled' must be a list of row indices (integers)")
        done = len(records)
        if done == 0:
            sizes: tuple = (0, self.initial)
        elif done == self.rounds + 1:
            sizes = (self.initial + self.budget * self.rounds,)
        else:
            sizes = (self.initial + self.budget * (done - 1), self.initial + self.budget * done)
        if len(labeled) not in sizes:
            raise ValueError(f"{where} has {len(labeled)} labeled rows but {done} records: expected "
                             f"{' or '.join(map(str, sizes))}")
        n = len(self.dataset)
        bad = next((i for i in labeled if not 0 <= i < n), None)  # before int64: no OverflowError
        if bad is not None:
            raise ValueError(f"{where}: labeled row {bad} is out of range for a pool of {n} rows")
        order = np.asarray(labeled, dtype=np.int64) if labeled else np.zeros(0, dtype=np.int64)
        if np.unique(order).size != order.size:
            raise ValueError(f"{where}: 'labeled' repeats a row")
        strategy_state = state.get("strategy_state", {})
        if not isinstance(strategy_state, dict):
            raise ValueError(f"{where}: 'strategy_state' must be a JSON object")
        self._check_digests(where, state)
        for r, record in enumerate(records):
            counts = self._label_counts(order[: record["n_labeled"]])
            if record["class_counts"] != counts.tolist():
                raise ValueError(f"{where}: record {r}'s 'class_counts' do not match the labels of its "
                                 f"{record['n_labeled']} labeled rows")
        strategy_state = {k: self._read_array(where, k, v) if _is_array_ref(v) else v
                          for k, v in strategy_state.items()}
        try:
            self.strategy.load_state(strategy_state)
            self.strategy.check_state(n)
        except (TypeError, ValueError, KeyError, OverflowError) as err:
            raise ValueError(f"{where}: bad 'strategy_state' for {self.strategy.name!r}: {err}") from None
        self.labeled_order = order
        self.records = list(records)

    def _check_record(self, where: str, r: int, record: Any) -> None:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: record {r} is not a JSON object")
        expected = {"strategy": self.name, "seed": self.seed, "round": r,
                    "n_labeled": self.initial + self.budget * r}
        wrong = {k: record.get(k, "missing") for k, v in expected.items()
                 if record.get(k, "missing") != v or type(record.get(k)) is not type(v)}
        if wrong:
            raise ValueError(f"{where}: record {r} has {wrong}, expected {expected}")
        fields = self._record_fields()
        missing = sorted(set(fields) - set(record))
        extra = sorted(set(record) - set(fields), key=str)
        if missing or extra:
            raise ValueError(f"{where}: record {r} " + (f"lacks {missing}" if missing else f"has unknown fields {extra}"))
        for key, kind in fields.items():
            problem = _field_problem(kind, record[key], self.dataset.num_classes)
            if problem:
                raise ValueError(f"{where}: record {r}: '{key}' {problem}, got {_short(record[key])}")

    @staticmethod
    def _check_digests(where: str, state: dict) -> None:
        digests = state.get("sha256")
        if not isinstance(digests, dict):
            raise ValueError(f"{where} has no 'sha256' digests: it was not written by this alscale loop")
        for part in _PARTS:
            saved = digests.get(part)
            if not isinstance(saved, str):
                raise ValueError(f"{where}: 'sha256' has no digest of '{part}'")
            if _digest(state.get(part, {})) != saved:
                raise ValueError(f"{where}: '{part}' does not match its SHA-256 digest: the file was edited or "
                                 "is corrupt (delete it, or restore the file as the loop wrote it)")

    @classmethod
    def resume(cls, checkpoint: Union[str, Path], dataset, strategy, trainer, **kwargs: Any) -> "ActiveLearningLoop":
        """The loop of ``checkpoint`` (same dataset, strategy, trainer and settings as the killed
        run, which the checkpoint checks), ready to :meth:`run` its remaining rounds. Missing
        checkpoint: a fresh loop."""
        loop = cls(dataset, strategy, trainer, checkpoint=checkpoint, **kwargs)
        if Path(checkpoint).is_file():
            try:
                with open(checkpoint, encoding="utf-8") as f:
                    state = json.load(f)
            except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, too many digits
                raise ValueError(f"checkpoint {checkpoint} is not valid JSON: {err}") from None
            except RecursionError:
                raise ValueError(f"checkpoint {checkpoint} is nested too deeply: it is not an alscale loop "
                                 "checkpoint") from None
            loop._load(state)
        return loop

    # ------------------------------------------------------------------ the rounds
    def run(self) -> List[Dict[str, Any]]:
        """Runs the remaining rounds; returns all records (one per round)."""
        n = len(self.dataset)
        if not self._setup_done:
            self.trainer.setup(self.dataset, self.seed)
            self._setup_done = True
        if self.labeled_order.size == 0:
            from ..selection import select_random

            self.labeled_order = select_random(n, self.initial, seed=_round_rng(self.seed, 0, 0))
        while not self.finished:
            self._round(len(self.records))
        return self.records

    def _round(self, r: int) -> None:
        labeled = self.labeled_order
        record: Any = None
        if self.comm.rank == 0:
            record = self._train_and_evaluate(r, labeled)
        if self.comm.sharded:  # rank 0's model and record to every rank
            from torch import distributed as dist

            box = [record, self.trainer.state_dict()] if self.comm.rank == 0 else [None, None]
            dist.broadcast_object_list(box, src=dist.get_global_rank(self.comm.group, 0), group=self.comm.group)
            record = box[0]
            if self.comm.rank != 0:
                self.trainer.load_state_dict(box[1])
        if r < self.rounds:
            t2 = time.perf_counter()
            picks = self.strategy.select(self._pool_view(labeled, round_index=r), self.budget,
                                         _round_rng(self.seed, r, 2))
            if hasattr(picks, "detach"):  # a torch tensor (a strategy on device logits)
                picks = picks.detach().cpu().numpy()
            picks = np.asarray(picks, dtype=np.int64)
            if picks.size != self.budget or np.unique(picks).size != picks.size:
                raise RuntimeError(f"strategy {self.strategy.name!r} returned {picks.size} rows for a budget of "
                                   f"{self.budget} (or repeated rows)")
            if len(set(self.comm.agree(None, picks.tobytes()))) > 1:
                raise RuntimeError(f"strategy {self.strategy.name!r} picked different rows on different ranks")
            record["select_seconds"] = time.perf_counter() - t2
            self.labeled_order = np.concatenate([labeled, picks])
        else:
            record["select_seconds"] = 0.0
        self.records.append(record)
        if self.comm.rank == 0:
            if self.checkpoint is not None:
                self._write_checkpoint()
            if self.progress is not None:
                self.progress(record)

    def _train_and_evaluate(self, r: int, labeled: np.ndarray) -> Dict[str, Any]:
        data = self.dataset
        t0 = time.perf_counter()
        info = self.trainer.fit(labeled, seed=int(_round_rng(self.seed, r, 1).integers(2**62)))
        t1 = time.perf_counter()
        if self.multilabel:
            return self._multilabel_record(r, labeled, info, t1 - t0)
        if hasattr(self.trainer, "logits"):  # chunk by chunk: never the test split's N x C logits
            pred = np.concatenate([c.argmax(axis=1) for c in self.trainer.logits("test")] or [np.zeros(0, np.int64)])
        else:
            pred = self.trainer.predict("test")[0].argmax(axis=1)
        # The batch that brought the labeled set to this size (round 0: the initial set).
        batch = labeled if r == 0 else labeled[self.initial + (r - 1) * self.budget :]
        counts = metrics.class_counts(data.y[labeled], data.num_classes)
        batch_counts = metrics.class_counts(data.y[batch], data.num_classes)
        record: Dict[str, Any] = {
            "strategy": self.name,
            "seed": self.seed,
            "round": r,
            "n_labeled": int(labeled.size),
            "test_accuracy": metrics.accuracy(pred, data.y_test),
            **metrics.balance(counts),
            **{f"batch_{k}": v for k, v in metrics.balance(batch_counts).items()},
            "val_accuracy": info.get("val_accuracy", float("nan")),
            "epochs": info.get("epochs", 0),
            "train_seconds": t1 - t0,
            "per_class_accuracy": metrics.per_class_accuracy(pred, data.y_test, data.num_classes).tolist(),
            "class_counts": counts.tolist(),
        }
        return record

    def _multilabel_record(self, r: int, labeled: np.ndarray, info: dict, seconds: float) -> Dict[str, Any]:
        """A round's record on multi-label data: the test split's average precision per class
        (from the logits, whose order is the sigmoids') and its mean, and the positive labels
        of each class in the labeled set and in the batch just added."""
        data = self.dataset
        if hasattr(self.trainer, "logits"):
            chunks = list(self.trainer.logits("test"))
            scores = np.concatenate(chunks) if chunks else np.zeros((0, data.num_classes), np.float32)
        else:
            scores = self.trainer.predict("test")[0]
        ap = metrics.average_precision(scores, data.y_test)
        present = ap[~np.isnan(ap)]
        batch = labeled if r == 0 else labeled[self.initial + (r - 1) * self.budget :]
        counts, batch_counts = self._label_counts(labeled), self._label_counts(batch)
        return {
            "strategy": self.name,
            "seed": self.seed,
            "round": r,
            "n_labeled": int(labeled.size),
            "test_map": float(present.mean()) if present.size else float("nan"),
            "positives": int(counts.sum()),
            **metrics.balance(counts),
            **{f"batch_{k}": v for k, v in metrics.balance(batch_counts).items()},
            "epochs": info.get("epochs", 0),
            "train_seconds": seconds,
            "per_class_ap": ap.tolist(),
            "class_counts": counts.tolist(),
        }

    def _pool_view(self, labeled: np.ndarray, chunked: bool = True, round_index: int = 0) -> PoolView:
        """What the strategy needs on the pool. Logits come as the trainer's chunk source
        (:meth:`TorchTrainer.logits`: computed chunk by chunk while the selection walks them,
        never N x C at once) unless the strategy wants them in memory (``logits_in_memory``,
        BADGE), ``chunked`` is False, or the trainer has no ``logits`` method; embeddings are
        one (N, D) array. MC samples (``mc_samples``) are the trainer's
        :meth:`~alscale.al.train.TorchTrainer.mc_logits`: ``trainer.mc_samples`` dropout passes
        over the pool (one (N, C) sample in memory at a time), seeded by the round."""
        needs = self.strategy.needs
        mask = np.zeros(len(self.dataset), dtype=bool)
        mask[labeled] = True
        view = PoolView(labeled=mask, num_classes=self.dataset.num_classes)
        if self.comm.sharded and self.strategy.shardable:
            view.rows = shard_rows(len(self.dataset), group=self.comm.group)
            view.group = self.comm.group
        want_logits, want_embeddings = "logits" in needs, "embeddings" in needs
        source = hasattr(self.trainer, "logits")
        if want_logits and source and chunked and not self.strategy.logits_in_memory:
            view.logits = self.trainer.logits("pool", rows=view.rows)
            if want_embeddings:
                view.embeddings = self.trainer.predict("pool", embeddings=True, rows=view.rows, logits=False)[1]
        elif want_logits or want_embeddings:
            extra = {} if want_logits or not source else {"logits": False}  # no N x C for embeddings alone
            view.logits, view.embeddings = self.trainer.predict("pool", embeddings=want_embeddings, rows=view.rows,
                                                                **extra)
            if not want_logits:
                view.logits = None
        if "mc_samples" in needs:
            if not hasattr(self.trainer, "mc_logits"):
                raise ValueError(f"strategy {self.strategy.name!r} needs MC samples of the pool's logits: give the loop "
                                 "a trainer with mc_logits (alscale.al.train.mlp_dropout_trainer)")
            seed = int(_round_rng(self.seed, round_index, 3).integers(2**62))
            view.mc_samples = self.trainer.mc_logits("pool", getattr(self.trainer, "mc_samples", 1), seed=seed)
        if "weight" in needs:
            view.weight = self.trainer.head_weight()
        if "labels" in needs:
            view.labels = self.dataset.y
        return view
