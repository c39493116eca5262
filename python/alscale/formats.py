"""The file formats of labelling projects: the labels people send back (a CSV ``id,label``, or
``id,labels`` for multi-label projects; a Label Studio export, JSON or CSV), the Label Studio
tasks and labelling config that ``alscale query --format label-studio`` writes, and the atomic
file writer every project (and the loop's checkpoints) uses.

Every reader checks what it reads and refuses a bad file with one line naming the file and the
line, task or field (a ValueError); nothing is guessed. The readers return ``(id, answer,
where)`` triples, with ``answer`` one class (a name or an index, as text) for single-label
projects and a tuple of classes (possibly empty: no positive class) for multi-label ones; the
project maps names to class indices and checks ids against its pool.

Label Studio exports are read by the pool id that alscale put in each task's data
(``alscale_id``), never by Label Studio's own task ``id``; tasks without an annotation, tasks whose
annotations were all skipped or cancelled, and tasks with several (agreeing) annotations are
counted in :attr:`Answers.counts` (``alscale teach`` prints them); annotations that disagree are
refused naming the task.

numpy only (not even that here).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = ["LS_ID", "MULTI_SEPARATOR", "Answers", "label_studio_config", "label_studio_tasks", "read_answers",
           "read_label_studio", "read_label_studio_csv", "read_labels_csv", "write_atomic"]

#: The key of the pool id in the ``data`` of the Label Studio tasks that alscale writes.
LS_ID = "alscale_id"
#: The separator of the classes in the ``labels`` column of a multi-label CSV (``3,cat;dog``).
MULTI_SEPARATOR = ";"
#: Columns of a Label Studio CSV export that are never the label (its metadata).
_LS_META = {"id", LS_ID, "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
            "predictions", "drafts", "total_annotations", "cancelled_annotations", "total_predictions"}


# ------------------------------------------------------------------------------ writing
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


# ------------------------------------------------------------------------------ ids
_INT = re.compile(r"\s*[+-]?\d+\s*$")


def as_id(value: Any, where: str) -> int:
    """An integer id (an int, an integral float, or its text); a ValueError naming ``where``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise ValueError(f"{where}: id must be an integer, got {value!r}")
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return int(value)
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f" and float(value).is_integer():
        return int(value)
    raise ValueError(f"{where}: id must be an integer, got {value!r}")


class Answers(list):
    """``[(id, answer, where), ...]`` read from a file, with :attr:`counts`: what the file held
    besides the answers (``tasks``, ``not_annotated``, ``cancelled``, ``several_annotations``;
    Label Studio exports only), and :meth:`note`, the one line ``alscale teach`` prints."""

    def __init__(self, items: Sequence = (), counts: Optional[dict] = None, source: str = ""):
        super().__init__(items)
        self.counts = dict(counts or {})
        self.source = source

    def note(self) -> str:
        """``"export.json: 8 tasks: 1 not annotated, 1 skipped or cancelled, 2 with several
        annotations (they agree)"``, or "" when there is nothing to say."""
        c = self.counts
        if not c.get("tasks"):
            return ""
        parts = [f"{c[k]} {what}" for k, what in (("not_annotated", "not annotated"),
                                                   ("cancelled", "skipped or cancelled (not taught)"),
                                                   ("several_annotations", "with several annotations (they agree)"))
                 if c.get(k)]
        return f"{self.source}: {plural(c['tasks'], 'task')}" + (": " + ", ".join(parts) if parts else "")


def plural(n: int, word: str) -> str:
    """``"1 label"``, ``"2 labels"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ------------------------------------------------------------------------------ CSV
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not a file") from None


def _csv_rows(path: Path):
    """(header, reader) of a CSV file; a ValueError for an empty file."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise ValueError(f"{path} line 1: {err}") from None
    if header is None:
        raise ValueError(f"{path}: empty file; expected a header line naming the columns")
    return [h.strip() for h in header], reader


def read_labels_csv(path: Union[str, Path], *, multilabel: bool = False) -> Answers:
    """The answers of a CSV with a header: single-label, the columns ``id`` and ``label`` (a
    class index or name, one per id); multi-label, ``id`` and ``labels`` (the id's positive
    classes separated by ``;``, empty for none). Other columns are ignored. A file with a column
    ``alscale_id`` is a Label Studio CSV export (:func:`read_label_studio_csv`). A malformed line
    raises a ValueError naming it."""
    path = Path(path)
    names, reader = _csv_rows(path)
    if LS_ID in names:
        return read_label_studio_csv(path, multilabel=multilabel)
    column = "labels" if multilabel else "label"
    other = "label" if multilabel else "labels"
    if "id" not in names or column not in names:
        if "id" in names and other in names:
            raise ValueError(f"{path} line 1: a column {other!r} is for " + (
                "single-label projects; this project is multi-label: give each id's classes in a column labels, "
                f"separated by {MULTI_SEPARATOR!r} (empty: no positive class)" if multilabel else
                "multi-label projects; this project is single-label: one class per id in a column label"))
        raise ValueError(f"{path} line 1: the header must name the columns id and {column}, got {','.join(names)!r}")
    i, j = names.index("id"), names.index(column)
    out = Answers(source=str(path))
    try:
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(names):
                raise ValueError(f"{where}: {len(row)} fields, the header has {len(names)}")
            cell = row[j].strip()
            if multilabel:
                answer = tuple(x.strip() for x in cell.split(MULTI_SEPARATOR)) if cell else ()
                if any(not x for x in answer):
                    raise ValueError(f"{where}: empty class name in {cell!r} (classes separated by {MULTI_SEPARATOR!r})")
            else:
                if not cell:
                    raise ValueError(f"{where}: empty label")
                answer = cell
            out.append((as_id(row[i].strip(), where), answer, where))
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num}: {err}") from None
    return out


def _choices_cell(cell: str, where: str) -> Optional[list]:
    """The classes of one label cell of a Label Studio CSV export: a class name, or (several
    choices) ``{"choices": [...]}`` / ``[...]`` as JSON; None when empty (not annotated)."""
    cell = cell.strip()
    if not cell:
        return None
    if cell[0] in "[{":
        try:
            value = json.loads(cell)
        except (ValueError, RecursionError):
            raise ValueError(f"{where}: the label {cell!r} is neither a class name nor JSON choices") from None
        if isinstance(value, dict):
            value = value.get("choices")
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ValueError(f"{where}: the label {cell!r} is not a list of choices")
        return value
    return [cell]


def read_label_studio_csv(path: Union[str, Path], *, multilabel: bool = False, label_column: Optional[str] = None) -> Answers:
    """The answers of a Label Studio CSV export (Export → CSV) of tasks that
    :func:`label_studio_tasks` wrote: the pool id is the column ``alscale_id`` (the column ``id``
    is Label Studio's task id, never a pool id), the classes the column named like the labelling
    config's Choices (``label_column``; default: ``label``, else the one column that is neither
    Label Studio's nor the task data's). Several choices (multi-label) are a JSON list. Rows
    with an empty label (tasks not annotated, or skipped) are counted, not taught."""
    path = Path(path)
    names, reader = _csv_rows(path)
    if LS_ID not in names:
        raise ValueError(f"{path} line 1: no column {LS_ID!r}: not a Label Studio export of tasks that "
                         "alscale query --format label-studio wrote")
    if label_column is None:
        label_column = "label" if "label" in names else None
    if label_column is None or label_column not in names:
        candidates = [n for n in names if n not in _LS_META]
        raise ValueError(f"{path} line 1: no column {label_column or 'label'!r} (the Choices' name in the labelling "
                         f"config); columns: {', '.join(names)}" + (
                             f"; name the label column with --label-column (one of {', '.join(candidates)})"
                             if candidates else ""))
    i, j = names.index(LS_ID), names.index(label_column)
    t = names.index("id") if "id" in names else None
    out = Answers(source=str(path))
    counts = {"tasks": 0, "not_annotated": 0}
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{path} line {reader.line_num}" + (f" (task {row[t].strip()})" if t is not None and t < len(row) else "")
            if len(row) != len(names):
                raise ValueError(f"{where}: {len(row)} fields, the header has {len(names)}")
            counts["tasks"] += 1
            pool_id = as_id(row[i].strip(), f"{where}: {LS_ID}")
            choices = _choices_cell(row[j], where)
            if choices is None:
                counts["not_annotated"] += 1
                continue
            out.append((pool_id, _answer(choices, multilabel, where), where))
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num}: {err}") from None
    out.counts = counts
    return out


def _answer(choices: list, multilabel: bool, where: str) -> Any:
    if multilabel:
        if len(set(choices)) != len(choices):
            raise ValueError(f"{where}: a class is chosen twice in {choices}")
        return tuple(choices)
    if len(choices) != 1:
        raise ValueError(f"{where}: an annotation chooses {len(choices)} classes {choices}, not one "
                         "(a single-label project; several choices are for a multi-label project)")
    return choices[0]


# ------------------------------------------------------------------------------ Label Studio JSON
def read_label_studio(path: Union[str, Path], *, multilabel: bool = False) -> Answers:
    """The answers of a Label Studio JSON export (Export → JSON) of tasks that
    :func:`label_studio_tasks` wrote: the pool id is ``data["alscale_id"]``, the answer the
    choices of the ``choices`` results of an annotation (class names; single-label: exactly one;
    multi-label: any number, none meaning no positive class). Tasks without annotations, and
    tasks whose annotations were all skipped or cancelled, are counted, not taught; annotations
    of one task that disagree are refused naming the task; a field of the wrong kind (an object
    where a list belongs) is refused naming the task and the field."""
    path = Path(path)
    text = _read_text(path)
    try:
        tasks = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: not a Label Studio JSON export ({err or type(err).__name__})") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: a Label Studio JSON export is a list of tasks, got {type(tasks).__name__}")
    out = Answers(source=str(path))
    counts = {"tasks": len(tasks), "not_annotated": 0, "cancelled": 0, "several_annotations": 0}
    for k, task in enumerate(tasks):
        where = f"{path} task {k + 1}" + (f" (id {task['id']})" if isinstance(task, dict) and "id" in task else "")
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ValueError(f"{where}: a task must be an object with an object 'data'")
        if LS_ID not in task["data"]:
            raise ValueError(f"{where}: its data has no {LS_ID!r} (tasks must come from alscale query --format label-studio)")
        pool_id = as_id(task["data"][LS_ID], f"{where}: data.{LS_ID}")
        annotations = task.get("annotations")
        if annotations is None:
            annotations = []
        if not isinstance(annotations, list):
            raise ValueError(f"{where}: 'annotations' must be a list, got {type(annotations).__name__}")
        answers = []
        cancelled = 0
        for a, ann in enumerate(annotations):
            field = f"annotations[{a}]"
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: {field} must be an object, got {type(ann).__name__}")
            if ann.get("was_cancelled"):
                cancelled += 1
                continue
            result = ann.get("result")
            if result is None:
                result = []
            if not isinstance(result, list):
                raise ValueError(f"{where}: {field}.result must be a list, got {type(result).__name__}")
            chosen = None
            for r, item in enumerate(result):
                if not isinstance(item, dict):
                    raise ValueError(f"{where}: {field}.result[{r}] must be an object, got {type(item).__name__}")
                if item.get("type") != "choices":
                    continue
                value = item.get("value")
                if not isinstance(value, dict):
                    raise ValueError(f"{where}: {field}.result[{r}].value must be an object, got {type(value).__name__}")
                choices = value.get("choices")
                if not isinstance(choices, list) or not all(isinstance(x, str) for x in choices):
                    raise ValueError(f"{where}: {field}.result[{r}].value.choices must be a list of class names, "
                                     f"got {choices!r}")
                chosen = (chosen or []) + choices
            if chosen is None and not multilabel:
                continue  # an annotation without a choice says nothing of a single label
            answers.append(_answer(chosen or [], multilabel, where))
        if not answers:
            counts["cancelled" if cancelled else "not_annotated"] += 1
            continue
        distinct = {frozenset(x) if multilabel else x for x in answers}
        if len(distinct) > 1:
            shown = sorted(("{" + ", ".join(sorted(x)) + "}") if multilabel else x for x in distinct)
            raise ValueError(f"{where}: its annotations disagree ({', '.join(shown)})")
        if len(answers) > 1:
            counts["several_annotations"] += 1
        out.append((pool_id, answers[0], where))
    out.counts = counts
    return out


def read_answers(path: Union[str, Path], *, multilabel: bool = False, label_column: Optional[str] = None) -> Answers:
    """The answers of a file ``alscale teach`` takes: a Label Studio JSON export (``.json``), a
    Label Studio CSV export (a CSV with a column ``alscale_id``), or a CSV ``id,label`` (``id,
    labels`` for a multi-label project)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        if label_column is not None:
            raise ValueError("--label-column is for a Label Studio CSV export, not a JSON one")
        return read_label_studio(path, multilabel=multilabel)
    names, _ = _csv_rows(path)
    if LS_ID in names:
        return read_label_studio_csv(path, multilabel=multilabel, label_column=label_column)
    if label_column is not None:
        raise ValueError(f"--label-column is for a Label Studio CSV export (with a column {LS_ID!r}); {path} has none")
    return read_labels_csv(path, multilabel=multilabel)


def label_studio_tasks(ids: Sequence[int], *, data: Optional[dict] = None, field: str = "image",
                       scores: Any = None, round: Optional[int] = None) -> list:
    """The Label Studio tasks (to import) of a batch: ``{"data": {"alscale_id": id, field:
    data[id]}}`` per id, in the batch's order (``data`` maps pool ids to the user's field, e.g.
    image URLs; ``round`` and ``scores`` go to ``meta``: ``scores`` is the columns of
    :meth:`alscale.ActiveLearner.score_columns` (a dict), or one ``(column, values)`` pair as
    :meth:`alscale.ActiveLearner.scores` gives; a score that is not finite is null there).

    Examples
    --------
    >>> from alscale.formats import label_studio_tasks
    >>> label_studio_tasks([7], data={7: "http://host/7.jpg"})
    [{'data': {'alscale_id': 7, 'image': 'http://host/7.jpg'}}]
    """
    columns = dict(scores) if isinstance(scores, dict) else ({} if scores is None else {scores[0]: scores[1]})
    tasks = []
    for k, i in enumerate(ids):
        item = {LS_ID: int(i)}
        if data is not None:
            if int(i) not in data:
                raise ValueError(f"the data file has no row for id {int(i)}")
            item[field] = data[int(i)]
        task: dict = {"data": item}
        meta = {}
        for column, values in columns.items():
            v = values[k].item()
            meta[column] = v if not isinstance(v, float) or math.isfinite(v) else None
        if round is not None:
            meta["round"] = int(round)
        if meta:
            task["meta"] = meta
        tasks.append(task)
    return tasks


def label_studio_config(classes: Sequence[str], *, field: str = "image", multilabel: bool = False) -> str:
    """A Label Studio labelling config for the tasks of :func:`label_studio_tasks`: an image
    from ``$field`` and one ``Choices`` named ``label`` (``choice="multiple"`` for a multi-label
    project), whose choices are the class names.

    Examples
    --------
    >>> from alscale.formats import label_studio_config
    >>> print(label_studio_config(["cat", "dog"], multilabel=True))
    <View><Image name="image" value="$image"/><Choices name="label" toName="image" choice="multiple"><Choice value="cat"/><Choice value="dog"/></Choices></View>
    """
    from xml.sax.saxutils import quoteattr

    choices = "".join(f"<Choice value={quoteattr(str(c))}/>" for c in classes)
    multiple = ' choice="multiple"' if multilabel else ""
    return (f'<View><Image name="image" value={quoteattr("$" + field)}/><Choices name="label" toName="image"{multiple}>'
            f"{choices}</Choices></View>")
