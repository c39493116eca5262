"""The ``alscale`` command line (also ``python -m alscale``).

- ``alscale query`` / ``teach`` / ``status``: an annotation project (:mod:`alscale.project`);
  these need numpy alone.
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

__all__ = ["build_parser", "main"]


PROJECT_COMMANDS = ("query", "teach", "status")


def build_parser(application: bool = True) -> argparse.ArgumentParser:
    """The whole ``alscale`` parser; ``run`` and ``bench`` come from :mod:`alscale.al.cli` when
    its extra is installed (else they say how to install it). ``application=False`` leaves them
    as placeholders, for the project commands (not even importing :mod:`alscale.al`)."""
    from . import strategies

    parser = argparse.ArgumentParser(prog="alscale", description="Fast, exact batch active learning at ImageNet scale.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    names = ", ".join(strategies.available())
    q = sub.add_parser(
        "query", help="pick the next batch to label from your model's outputs on the pool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="strategies (the same as alscale run's; options set with --option NAME=VALUE, stored in the "
               "project):\n  " + "\n  ".join(strategies.describe(options=True)),
        description=("Pick BUDGET unlabeled pool ids with a strategy from the model's outputs on the whole pool "
                     "(row i of the .npy arrays = pool id i; opened as memmaps and read in chunks), record the "
                     "batch in the project (created if missing) and write it: a CSV with a column id (and the "
                     "strategy's score), or Label Studio tasks. Strategies: " + names + "."))
    q.add_argument("--project", required=True, metavar="DIR", help="the project folder")
    q.add_argument("--logits", metavar="FILE.npy", help="(N, C) logits of the pool (every strategy but random "
                   "and coreset)")
    q.add_argument("--embeddings", metavar="FILE.npy", help="(N, D) embeddings (coreset, badge, cluster-margin)")
    q.add_argument("--weight", metavar="FILE.npy", help="(C, D) weight of the linear head (base, mase; optional)")
    q.add_argument("--clusters", metavar="FILE.npy", help="(N,) cluster ids for cluster-margin (default: HAC of "
                   "the embeddings, cached in the project)")
    q.add_argument("--n-clusters", type=_positive, metavar="K", help="cluster-margin: clusters of the HAC "
                   "(default: the project's, else the first cluster-margin budget; stored in the project)")
    q.add_argument("--neighbors", type=_positive, metavar="K", help="cluster-margin: neighbours of the kNN graph "
                   "under the HAC (default: the project's, else 10; stored)")
    q.add_argument("--knn-recall", type=_fraction, metavar="R", help="cluster-margin: target recall@k of the "
                   "faiss kNN graph used beyond 200,000 rows (default: the project's, else 0.95; stored)")
    q.add_argument("--pca", type=_positive, metavar="DIMS", help="cluster-margin: reduce the embeddings to DIMS "
                   "dimensions (uncentred PCA) before the kNN graph, e.g. 2048-d features to 128 (stored)")
    q.add_argument("--multilabel", action="store_true", default=None,
                   help="margin, confidence, entropy, cluster-margin: the logits are one sigmoid per class "
                        "(multi-label), reduced over the classes by --reduction (stored)")
    q.add_argument("--reduction", choices=("mean", "min"), default=None,
                   help="with --multilabel: mean (default) or min over the classes (the most uncertain class)")
    q.add_argument("--option", type=_option, action="append", default=[], metavar="NAME=VALUE",
                   help="any option of the strategy (listed below), e.g. --option delta=0.4; stored in the project")
    q.add_argument("--strategy", default=None, help="strategy (default: the project's, else base)")
    q.add_argument("--budget", required=True, type=_positive, help="ids to pick")
    q.add_argument("--seed", type=int, default=None, help="seed of random, badge, cluster-margin (default: fresh, recorded)")
    q.add_argument("--out", metavar="FILE", help="output file (default: standard output)")
    q.add_argument("--format", choices=("csv", "label-studio"), default="csv",
                   help="csv (default): id[,score]; label-studio: a tasks JSON to import")
    q.add_argument("--data", metavar="FILE.csv", help="CSV with a column id and your data field (e.g. image URLs), "
                   "for --format label-studio")
    q.add_argument("--data-field", default="image", metavar="NAME",
                   help="column of --data put in each task's data (default image)")
    q.add_argument("--classes", type=_classes, help="class names, comma-separated in class index order")
    q.add_argument("--pool-size", type=_positive, metavar="N", help="pool ids 0..N-1 (when no array gives it: "
                   "random before any model)")
    q.set_defaults(func=_query)

    t = sub.add_parser(
        "teach", help="record labels: a CSV id,label or a Label Studio JSON export",
        description=("Record the labels of FILE: a CSV with the columns id,label (class index or name) or a Label "
                     "Studio JSON export (.json; the choice names map to class indices by the project's classes "
                     "or --classes). All or nothing: unknown or out-of-range ids, labels that contradict earlier "
                     "ones and malformed lines are refused naming the line, and nothing of FILE is recorded."))
    t.add_argument("--project", required=True, metavar="DIR", help="the project folder (created if missing)")
    t.add_argument("file", metavar="FILE", help="CSV (id,label) or Label Studio JSON export")
    t.add_argument("--classes", type=_classes, help="class names, comma-separated in class index order")
    t.set_defaults(func=_teach)

    s = sub.add_parser("status", help="labels per class, rounds, imbalance",
                       description="A table of the project's labels per class, its rounds and the imbalance.")
    s.add_argument("--project", required=True, metavar="DIR", help="the project folder")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
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


def _query(args: argparse.Namespace) -> int:
    from .project import ActiveLearner, label_studio_tasks, write_atomic

    if args.data is not None and args.format != "label-studio":
        raise ValueError("--data is for --format label-studio")
    logits = _load(args.logits, "logits")
    embeddings = _load(args.embeddings, "embeddings")
    weight = _load(args.weight, "weight")
    clusters = _load(args.clusters, "clusters")
    learner = ActiveLearner(args.project, classes=args.classes, pool_size=args.pool_size,
                            progress=lambda line: print(f"alscale query: {line}", file=sys.stderr, flush=True))
    name = args.strategy or learner.strategy
    from .strategies import get_class

    options = {key: value for key, value in (("n_clusters", args.n_clusters), ("neighbors", args.neighbors),
                                             ("knn_recall", args.knn_recall), ("pca", args.pca),
                                             ("multilabel", args.multilabel), ("reduction", args.reduction))
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

    def write(ids, round):  # before the batch is recorded: if this fails, nothing is
        scored = learner.scores(logits, ids, strategy=name, weight=weight)
        if args.format == "label-studio":
            data = _read_data(args.data, args.data_field, ids) if args.data else None
            tasks = label_studio_tasks(ids, data=data, field=args.data_field,
                                       scores=scored, round=round)
            text = json.dumps(tasks, indent=1) + "\n"
        else:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["id"] + ([scored[0]] if scored else []))
            for k, i in enumerate(ids.tolist()):
                w.writerow([i] + ([scored[1][k].item()] if scored else []))
            text = buf.getvalue()
        if args.out:
            write_atomic(args.out, text)
            print(f"alscale query: round {round}: {ids.size} ids ({name}) written to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    learner.query(logits, args.budget, strategy=name, embeddings=embeddings, weight=weight, clusters=clusters,
                  seed=args.seed, on_pick=write, options=options)
    return 0


def _teach(args: argparse.Namespace) -> int:
    from .project import CONFIG, ActiveLearner

    if not (Path(args.project) / CONFIG).exists():
        print(f"alscale teach: creating the project {args.project}", file=sys.stderr)
    learner = ActiveLearner(args.project)
    new = learner.teach_file(args.file, classes=args.classes)
    print(f"alscale teach: {new} new labels recorded ({learner.labels.ids.size} in all)", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from .project import ActiveLearner, format_status

    status = ActiveLearner(args.project, create=False).status()
    if args.json and status["imbalance"] == float("inf"):
        status["imbalance"] = "inf"  # strict JSON has no Infinity
    sys.stdout.write(json.dumps(status, indent=1) + "\n" if args.json else format_status(status))
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
        except (ValueError, TypeError, OSError) as err:
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
