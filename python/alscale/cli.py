"""The ``alscale`` command line (also ``python -m alscale``).

- ``alscale init`` / ``query`` / ``teach`` / ``status``: an annotation project
  (:mod:`alscale.project`); these need numpy alone. A missing project is an error naming its
  path: ``alscale init`` (or ``query --new``) creates one.
- ``alscale run`` / ``bench``: the active-learning loop and the kernel benchmark
  (:mod:`alscale.al.cli`, the ``al`` extra: torch, tqdm, matplotlib), imported only for them.

Manners: Ctrl-C stops with one line (exit status 130); a reader that goes away
(``alscale status ... | head -1``) ends the output quietly (141); errors are one
``alscale COMMAND: error: ...`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from .cliargs import classes as _classes
from .cliargs import fraction as _fraction
from .cliargs import option as _option
from .cliargs import positive as _positive
from .formats import plural

__all__ = ["build_parser", "main"]


PROJECT_COMMANDS = ("init", "query", "teach", "status")


def build_parser(application: bool = True) -> argparse.ArgumentParser:
    """The whole ``alscale`` parser; ``run`` and ``bench`` come from :mod:`alscale.al.cli` when
    its extra is installed (else they say how to install it). ``application=False`` leaves them
    as placeholders, for the project commands (not even importing :mod:`alscale.al`)."""
    from . import strategies

    parser = argparse.ArgumentParser(prog="alscale", description="Fast, exact batch active learning at ImageNet scale.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    names = ", ".join(strategies.available())
    i = sub.add_parser(
        "init", help="create a labelling project",
        description=("Create the project folder DIR with its settings (all optional, all stored): the pool size "
                     "(ids 0..N-1; else learnt from the first query's arrays), the classes (names, or a count), "
                     "single- or multi-label, the default strategy and its options. Teaching needs the pool size "
                     "and the classes; a project is single- or multi-label for good."))
    i.add_argument("--project", required=True, metavar="DIR", help="the project folder (must not hold a project)")
    _settings_arguments(i)
    i.add_argument("--strategy", default=None, help="the default strategy of query (default base)")
    i.add_argument("--option", type=_option, action="append", default=[], metavar="NAME=VALUE",
                   help="a strategy option, stored in the project")
    i.set_defaults(func=_init)

    q = sub.add_parser(
        "query", help="pick the next batch to label from your model's outputs on the pool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="strategies (the same as alscale run's; options set with --option NAME=VALUE, stored in the "
               "project):\n  " + "\n  ".join(strategies.describe(options=True)),
        description=("Pick BUDGET unlabeled pool ids with a strategy from the model's outputs on the whole pool "
                     "(row i of the .npy arrays = pool id i; opened as memmaps and read in chunks), record the "
                     "batch in the project (--new: create it) and write it: a CSV with a column id (and the "
                     "strategy's score), or Label Studio tasks. --logits is (N, C), or (T, N, C) for the Bayesian "
                     "strategies (T MC-dropout passes); the cold-start typiclust and probcover need only "
                     "--embeddings (probcover also the number of classes, or --option delta=D). The strategy and "
                     "its options are stored as the project's default. While the last batch has ids without a "
                     "label, query refuses (see --pending). Strategies: " + names + "."))
    q.add_argument("--project", required=True, metavar="DIR", help="the project folder")
    q.add_argument("--new", action="store_true", help="create the project (DIR must not hold one); the settings "
                   "below are stored with the first round, in one write")
    q.add_argument("--logits", metavar="FILE.npy", help="(N, C) logits of the pool, or (T, N, C) MC samples for "
                   "bald, batchbald, powerbald, power-margin, power-entropy (not needed by random, coreset, "
                   "typiclust, probcover); without it, --embeddings and --weight give the logits of that linear "
                   "head, computed chunk by chunk and never stored (e.g. 9M x 20,000 classes)")
    q.add_argument("--embeddings", metavar="FILE.npy", help="(N, D) embeddings (coreset, badge, cluster-margin, "
                   "typiclust, probcover)")
    q.add_argument("--weight", metavar="FILE.npy", help="(C, D) weight of the linear head over the embeddings "
                   "(base, mase: the boundaries' norms; without --logits: the logits, embeddings @ weight.T + bias)")
    q.add_argument("--bias", metavar="FILE.npy", help="(C,) bias of that head, for logits computed from --embeddings "
                   "and --weight")
    q.add_argument("--clusters", metavar="FILE.npy", help="(N,) cluster ids for cluster-margin (default: HAC of "
                   "the embeddings, cached in the project)")
    q.add_argument("--n-clusters", type=_positive, metavar="K", help="cluster-margin: clusters of the HAC "
                   "(default: the project's, else the first cluster-margin budget; stored in the project)")
    q.add_argument("--neighbors", type=_positive, metavar="K", help="cluster-margin: neighbours of the kNN graph "
                   "under the HAC (default: the project's, else 10; stored)")
    q.add_argument("--knn-recall", type=_fraction, metavar="R", help="cluster-margin: target recall@k of the "
                   "faiss kNN graph used where the exact one's N^2*D passes 1e11 (default: the project's, else 0.95; stored)")
    q.add_argument("--pca", type=_positive, metavar="DIMS", help="cluster-margin: reduce the embeddings to DIMS "
                   "dimensions (uncentred PCA) before the kNN graph, e.g. 2048-d features to 128 (stored)")
    q.add_argument("--multilabel", action="store_true", default=None,
                   help="a multi-label project (with --new, or before any label): the logits are one sigmoid per "
                        "class, reduced over the classes by --reduction (margin, confidence, entropy, "
                        "cluster-margin); teach takes each id's set of classes (stored)")
    q.add_argument("--reduction", choices=("mean", "min"), default=None,
                   help="with --multilabel: mean (default) or min over the classes (the most uncertain class)")
    q.add_argument("--option", type=_option, action="append", default=[], metavar="NAME=VALUE",
                   help="any option of the strategy (listed below), e.g. --option delta=0.4; stored in the project")
    q.add_argument("--strategy", default=None, help="strategy (default: the project's, else base)")
    q.add_argument("--budget", required=True, type=_positive, help="ids to pick")
    q.add_argument("--seed", type=int, default=None, help="seed of random, badge, cluster-margin (default: fresh, recorded)")
    q.add_argument("--out", metavar="FILE", help="output file (default: standard output); never a file of the "
                   "project folder")
    q.add_argument("--overwrite", action="store_true", help="let --out replace an existing file")
    q.add_argument("--format", choices=("csv", "label-studio"), default="csv",
                   help="csv (default): id and the strategy's score columns (e.g. id,margin; base: "
                        "id,distance,class); label-studio: a tasks JSON to import (the scores in each task's meta)")
    q.add_argument("--data", metavar="FILE.csv", help="CSV with a column id and your data field (e.g. image URLs), "
                   "for --format label-studio (required unless --no-data)")
    q.add_argument("--no-data", action="store_true", help="--format label-studio without --data: tasks that hold "
                   "only the pool id (annotators see no image)")
    q.add_argument("--pending", choices=("refuse", "reissue", "query"), default="refuse",
                   help="when the last batch still has ids without a label: refuse (default, saying so), reissue "
                        "(write those ids again; nothing recorded) or query (a new batch anyway)")
    q.add_argument("--data-field", default="image", metavar="NAME",
                   help="column of --data put in each task's data (default image)")
    _settings_arguments(q, multilabel=False)
    q.set_defaults(func=_query)

    t = sub.add_parser(
        "teach", help="record labels: a CSV id,label or a Label Studio export (JSON or CSV)",
        description=("Record the labels of FILE: a CSV with the columns id,label (class index or name; a "
                     "multi-label project: id,labels with the id's classes separated by ';', empty for none), or "
                     "a Label Studio export, JSON (.json) or CSV, read by the pool id alscale_id of each task "
                     "(never Label Studio's own id); tasks not annotated, skipped, or with several (agreeing) "
                     "annotations are counted. All or nothing: unknown or out-of-range ids, labels that are not "
                     "classes or contradict earlier ones, and malformed lines are refused naming the line, and "
                     "nothing of FILE is recorded (--classes neither)."))
    t.add_argument("--project", required=True, metavar="DIR", help="the project folder")
    t.add_argument("file", metavar="FILE", help="CSV (id,label or id,labels) or Label Studio export (JSON or CSV)")
    t.add_argument("--classes", type=_classes, help="class names, comma-separated in class index order")
    t.add_argument("--num-classes", type=_positive, metavar="C", help="the number of classes (without names)")
    t.add_argument("--relabel", action="store_true", help="correct ids taught before with another label (each "
                   "correction is recorded in the project)")
    t.add_argument("--label-column", metavar="NAME", help="a Label Studio CSV export: the column of the choices "
                   "(the Choices' name in the labelling config; default label)")
    t.set_defaults(func=_teach)

    s = sub.add_parser("status", help="labels per class, rounds, imbalance, the pending batch",
                       description="A table of the project's labels per class (multi-label: positives per class), "
                                   "its rounds, the pending batch and the imbalance. Reads only (a read-only "
                                   "project works; so does a project another command is writing).")
    s.add_argument("--project", required=True, metavar="DIR", help="the project folder")
    s.add_argument("--json", action="store_true", help="print the summary as JSON (strict: an infinite imbalance "
                   "is null with imbalance_infinite true)")
    s.set_defaults(func=_status)

    try:
        if not application:
            raise ImportError("not loaded")
        from .al import cli as al_cli
    except ImportError as err:  # no torch/tqdm/matplotlib: run and bench say what to install
        parser.set_defaults(missing_extra=str(err))
        for name, what in (("run", "the active-learning loop"), ("bench", "the selection kernels' speed")):
            sub.add_parser(name, add_help=False, help=f'{what} (needs the al extra: pip install "alscale[al]")')
    else:
        al_cli.add_commands(sub)
    return parser


def _settings_arguments(p: argparse.ArgumentParser, multilabel: bool = True) -> None:
    p.add_argument("--classes", type=_classes, help="class names, comma-separated in class index order (stored)")
    p.add_argument("--num-classes", type=_positive, metavar="C", help="the number of classes, without names (stored; "
                   "probcover's purity rule uses it)")
    p.add_argument("--pool-size", type=_positive, metavar="N", help="pool ids 0..N-1 (stored; when no array gives "
                   "it: random before any model)")
    if multilabel:
        p.add_argument("--multilabel", action="store_true", default=None,
                       help="a multi-label project: each id is taught its set of classes (possibly empty)")


def _fail(command: str, message: str) -> int:
    print(f"alscale {command}: error: {message}", file=sys.stderr)
    return 2


def _load(path: Optional[str], what: str):
    """An .npy file as a read-only memmap (nothing read until used); None stays None."""
    import numpy as np

    if path is None:
        return None
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"--{what} {path}: cannot be read as a .npy array ({err})") from None


def _read_data(path: str, field: str, ids) -> dict:
    """``{id: value of column field}`` for the ``ids`` from a CSV with a column id (streamed)."""
    wanted = set(int(i) for i in ids)
    found = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "id" not in reader.fieldnames or field not in reader.fieldnames:
            raise ValueError(f"--data {path}: needs the columns id and {field} (--data-field), has "
                             f"{', '.join(reader.fieldnames or [])}")
        for row in reader:
            try:
                i = int(row["id"])
            except (TypeError, ValueError):
                raise ValueError(f"--data {path} line {reader.line_num}: id {row['id']!r} is not an integer") from None
            if i in wanted:
                found[i] = row[field]
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(f"--data {path} has no row for id {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return found


def _open_project(args: argparse.Namespace, create: bool = False, **settings):
    """The project of ``--project`` (an error naming the path when it holds none, unless
    ``create``); ``settings`` (None: not given) are applied in the command's own write."""
    from .project import CONFIG, ActiveLearner

    path = Path(args.project)
    exists = (path / CONFIG).exists()
    if create and exists:
        raise ValueError(f"{path} holds an alscale project already; drop --new to use it")
    if not create and not exists:
        raise ValueError(f"no alscale project at {path} (no {CONFIG}): create it with alscale init --project {path} "
                         "(or alscale query --new)" + ("; is the path right?" if path.exists() else ""))
    given = {k: v for k, v in settings.items() if v is not None and v != []}
    progress = lambda line: print(f"alscale {args.command}: {line}", file=sys.stderr, flush=True)  # noqa: E731
    if create:
        return ActiveLearner(path, create="defer", progress=progress, **given)
    learner = ActiveLearner(path, create=False, progress=progress)
    learner.stage(**given)  # stored with the command's own write: a refused command stores none of them
    return learner


def _init(args: argparse.Namespace) -> int:
    from .project import CONFIG, ActiveLearner
    from .strategies import get_class

    path = Path(args.project)
    if (path / CONFIG).exists():
        raise ValueError(f"{path} holds an alscale project already")
    options = dict(args.option)
    if args.strategy is not None:
        takes = get_class(args.strategy).option_defaults()
        for key in options:
            if key not in takes:
                raise ValueError(f"--option {key}: not an option of the strategy {args.strategy!r} (its options: "
                                 f"{', '.join(takes) or 'none'})")
    ActiveLearner(path, args.strategy, classes=args.classes, num_classes=args.num_classes, pool_size=args.pool_size,
                  multilabel=args.multilabel, options=options or None)
    print(f"alscale init: created the project {path}", file=sys.stderr)
    return 0


def _check_out(out: str, project: str, overwrite: bool = False) -> None:
    """``--out`` must not be a file of the project folder (it would replace the project's state)."""
    target = Path(out).resolve()
    folder = Path(project).resolve()
    if target == folder or folder in target.parents:
        raise ValueError(f"--out {out} is inside the project folder {project}: write the batch elsewhere "
                         "(the project's own files must not be replaced)")
    if target.is_dir():
        raise ValueError(f"--out {out} is a folder")
    if target.exists() and not overwrite:
        raise ValueError(f"--out {out} exists (an earlier batch?): --overwrite replaces it")


class _NativeStdout:
    """While a query runs, file descriptor 1 is standard error, so that what native libraries
    print (faiss's k-means warnings, with printf) never lands in the batch on standard output;
    :meth:`real` gives the real standard output back for the batch itself. Nothing changes when
    ``sys.stdout`` is not descriptor 1 (a test's capture)."""

    def __init__(self) -> None:
        self.saved: Optional[int] = None

    def __enter__(self) -> "_NativeStdout":
        try:
            if sys.stdout is None or sys.stdout.fileno() != 1:
                return self
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
            return self
        sys.stdout.flush()
        self.saved = os.dup(1)
        os.dup2(2, 1)
        return self

    @staticmethod
    def _flush_native() -> None:
        try:
            import ctypes

            ctypes.CDLL(None).fflush(None)  # the C library's buffered printf output, to where it was meant
        except (OSError, AttributeError, TypeError):  # no C library to ask (Windows without a CRT handle)
            pass

    def _swap(self, fd: int) -> None:
        sys.stdout.flush()
        self._flush_native()
        os.dup2(fd, 1)

    def write(self, text: str) -> None:
        """``text`` to the real standard output."""
        if self.saved is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        self._swap(self.saved)
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        finally:
            self._swap(2)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            try:
                self._swap(self.saved)
            finally:
                os.close(self.saved)
                self.saved = None


def _query(args: argparse.Namespace) -> int:
    from .project import label_studio_tasks, write_atomic

    if args.data is not None and args.format != "label-studio":
        raise ValueError("--data is for --format label-studio")
    if args.no_data and (args.format != "label-studio" or args.data is not None):
        raise ValueError("--no-data is for --format label-studio without --data")
    if args.format == "label-studio" and args.data is None and not args.no_data:
        raise ValueError("--format label-studio needs --data FILE.csv (the id and e.g. image URL of each row), "
                         "else annotators see nothing in the tasks; --no-data writes them anyway")
    if args.out:
        _check_out(args.out, args.project, args.overwrite)
    from .strategies import get_class

    name = args.strategy
    if name is not None:
        get_class(name)  # a typo: one line naming the closest strategy, before anything is read
    logits = _load(args.logits, "logits")
    embeddings = _load(args.embeddings, "embeddings")
    weight = _load(args.weight, "weight")
    clusters = _load(args.clusters, "clusters")
    settings = dict(classes=args.classes, num_classes=args.num_classes, pool_size=args.pool_size)
    if args.new:
        learner = _open_project(args, create=True, multilabel=args.multilabel, **settings)
    else:
        learner = _open_project(args, **settings)
    name = name or learner.strategy
    logits = _head_logits(name, logits, embeddings, weight, args.bias)
    options = {key: value for key, value in (("n_clusters", args.n_clusters), ("neighbors", args.neighbors),
                                             ("knn_recall", args.knn_recall), ("pca", args.pca),
                                             ("reduction", args.reduction))
               if value is not None}
    takes = get_class(name).option_defaults()
    flags = ", ".join("--" + k.replace("_", "-") for k in options if k not in takes)
    if flags:
        raise ValueError(f"{flags}: not an option of the strategy {name!r} (its options: "
                         f"{', '.join(takes) or 'none'})")
    for key, value in args.option:
        if key not in takes:
            raise ValueError(f"--option {key}: not an option of the strategy {name!r} (its options: "
                             f"{', '.join(takes) or 'none'})")
        options[key] = value
    if args.multilabel and not args.new:
        options["multilabel"] = True

    def write(ids, round):  # before the batch is recorded: if this fails, nothing is
        columns = learner.score_columns(logits, ids, strategy=name, weight=weight, options=options,
                                        embeddings=embeddings)
        if args.format == "label-studio":
            data = _read_data(args.data, args.data_field, ids) if args.data else None
            tasks = label_studio_tasks(ids, data=data, field=args.data_field, scores=columns, round=round)
            text = json.dumps(tasks, indent=1, allow_nan=False) + "\n"
        else:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["id", *columns])
            for k, i in enumerate(ids.tolist()):
                w.writerow([i, *(values[k].item() for values in columns.values())])
            text = buf.getvalue()
        again = "again " if args.pending == "reissue" else ""
        if args.out:
            write_atomic(args.out, text)
            print(f"alscale query: round {round}: {plural(ids.size, 'id')} ({name}) written {again}to {args.out}",
                  file=sys.stderr)
        else:
            stdout.write(text)
            if again:
                print(f"alscale query: round {round}: {plural(ids.size, 'pending id')} written again", file=sys.stderr)

    with _NativeStdout() as stdout:  # our standard output is the batch: native chatter goes to stderr
        learner.query(logits, args.budget, strategy=name, embeddings=embeddings, weight=weight, clusters=clusters,
                      seed=args.seed, on_pick=write, options=options,
                      pending={"refuse": "refuse", "reissue": "reissue", "query": "new"}[args.pending])
    return 0


def _head_logits(name: str, logits, embeddings, weight, bias_path: Optional[str]):
    """The logits query reads: --logits, or, without it, those of the head (--weight, --bias)
    over --embeddings for a strategy that reads one (N, C) logits (alscale.logits_from_embeddings)."""
    from .strategies import get_class

    if bias_path is not None and (logits is not None or weight is None or embeddings is None):
        raise ValueError("--bias is for logits computed from --embeddings and --weight (without --logits)")
    if logits is not None or weight is None or embeddings is None or "logits" not in get_class(name).needs:
        return logits
    from .pool import logits_from_embeddings

    return logits_from_embeddings(embeddings, weight, _load(bias_path, "bias"))


def _teach(args: argparse.Namespace) -> int:
    learner = _open_project(args)
    learner.teach_file(args.file, classes=args.classes, num_classes=args.num_classes, relabel=args.relabel,
                       label_column=args.label_column)
    done = learner.last_teach
    fixed = f", {done['corrected']} corrected" if done["corrected"] else ""
    print(f"alscale teach: {plural(done['new'], 'new label')} recorded{fixed} ({done['total']} in all)",
          file=sys.stderr)
    if done.get("note"):
        print(f"alscale teach: {done['note']}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from .project import format_status

    status = _open_project(args).status()
    if args.json:
        infinite = status["imbalance"] == float("inf")
        status["imbalance_infinite"] = infinite
        if infinite:
            status["imbalance"] = None  # strict JSON has no Infinity: null, and the flag says why
    sys.stdout.write(json.dumps(status, indent=1, allow_nan=False) + "\n" if args.json else format_status(status))
    return 0


def _version() -> str:
    from . import __version__

    return __version__


def _dispatch(parser: argparse.ArgumentParser, argv: list) -> int:
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "missing_extra", None) and args.command in ("run", "bench"):
        return _fail(args.command, args.missing_extra)
    if rest:
        args = parser.parse_args(argv)  # the usual message about the unknown arguments
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        try:
            return args.func(args)
        except BrokenPipeError:
            raise
        except (ValueError, TypeError, OSError, ImportError) as err:
            if args.command in ("run", "bench"):  # they report their own errors
                raise
            return _fail(args.command, str(err))
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
            hint = getattr(args, "resume_hint", None)
            how = f"; continue with: {hint(args, argv)}" if hint else ""
            print(f"\nalscale {args.command}: interrupted{how}", file=sys.stderr)
        return 130


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``alscale`` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(application=not (argv and argv[0] in PROJECT_COMMANDS))
    try:
        try:
            return _dispatch(parser, argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # a reader gone away (`| head -1`) shows here, not at exit
    except BrokenPipeError:
        try:  # what is still buffered goes nowhere, without a second error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # not a file descriptor (a test's capture)
            pass
        return 141  # 128 + SIGPIPE, the status of a process the closed pipe had killed


if __name__ == "__main__":
    sys.exit(main())
