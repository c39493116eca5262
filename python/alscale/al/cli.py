"""The application's commands of ``alscale`` (the dispatcher is :mod:`alscale.cli`, which
imports this module only for them): ``alscale run`` (the active-learning loop: strategies
compared on real data, with a table, a CSV and plots) and ``alscale bench`` (the selection
kernels' speed). :func:`main` is the dispatcher's, kept here for existing callers.

Manners: Ctrl-C stops with one line that says how to continue (exit status 130); a reader that
goes away (``alscale run --list | head -1``) ends the output quietly (exit status 141, as a
process killed by SIGPIPE); errors are one ``alscale run: error: ...`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

from ..cliargs import fraction as _fraction
from ..cliargs import non_negative as _non_negative
from ..cliargs import positive as _positive
from ..cliargs import real_at_least_one


def _torch_threads(text: str) -> int:
    from .train import max_threads

    value = _non_negative(text)
    if value > max_threads():
        raise argparse.ArgumentTypeError(f"must be at most {max_threads()} (4 x the cores), got {value}")
    return value


def add_commands(sub) -> None:
    """Adds ``run`` and ``bench`` to the ``alscale`` subcommands (called by :mod:`alscale.cli`)."""
    _add_run(sub)

    bench = sub.add_parser(
        "bench",
        help="benchmark suites at the papers' shapes: alscale against its peers, time, memory, checks",
        description=(
            "Run a benchmark suite at the papers' shapes (--list names them): alscale's kernels beside "
            "the floor (one numpy pass over the input) and the peers one would use otherwise, each case "
            "in its own process; every row gives the median, min and max time over the repeats, the "
            "ratio to the floor and to alscale, the process's peak memory and a check of the peer's "
            "picks against alscale's. --scale shrinks N (and B); the memory a suite needs is printed "
            "before it starts, and a suite that does not fit is refused. Without --suite: the original "
            "single-shape selection benchmark (--size)."
        ),
    )
    bench.add_argument("--list", action="store_true", help="list the suites and exit")
    bench.add_argument("--suite", metavar="NAME",
                       help="a suite (imagenet, openimages, hac, knn, bayes, coldstart) or 'all' (those that fit)")
    bench.add_argument("--scale", type=_fraction, default=1.0, metavar="S",
                       help="multiply N and B by S, 0 < S <= 1 (default 1: the papers' shapes)")
    bench.add_argument("--repeat", type=_positive, default=None, metavar="R",
                       help="timed runs per row after one warm-up (default 5; slow peers run once at large sizes)")
    bench.add_argument("--max-time", type=_positive_seconds, default=60.0, metavar="SECONDS",
                       help="per row: no further timed run starts past SECONDS of calls (at least one; default 60)")
    bench.add_argument("--compare", metavar="FILE",
                       help="an earlier --json file: print each row's median against it and flag regressions")
    bench.add_argument("--threshold", type=_fraction, default=0.10, metavar="F",
                       help="with --compare: flag rows more than F slower (default 0.10)")
    bench.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                       help="no progress bar (default: one on a terminal)")
    bench.add_argument(
        "--size",
        choices=("imagenet", "small"),
        default="imagenet",
        help=(
            "without --suite: imagenet: N=1,281,167 C=1000 D=2048 B=10,000 (default); "
            "small: N=20,000 C=100 D=64 B=500"
        ),
    )
    bench.add_argument(
        "--repeats", type=_positive, default=5, help="without --suite: runs per method, median reported (default 5)"
    )
    bench.add_argument(
        "--no-official",
        dest="official",
        action="store_false",
        help="without --suite: skip the official BASE torch loop (the slow baseline)",
    )
    bench.add_argument(
        "--threads", type=_non_negative, default=0, help="without --suite: alscale/torch threads (0 = all cores)"
    )
    bench.add_argument("--seed", type=int, default=0, help="without --suite: data seed (default 0)")
    bench.add_argument(
        "--json", metavar="PATH", help="also write the results, the machine and the versions to PATH"
    )
    bench.set_defaults(func=_bench)


DEFAULT_STRATEGIES = "random,margin,confidence,entropy,base,coreset,badge"
#: The default strategies on a multi-label data set (the Cluster-Margin paper's comparison).
DEFAULT_MULTILABEL_STRATEGIES = "random,margin,margin-min,cluster-margin"
#: The strategies that score multi-label logits (one sigmoid per class), and their reductions.
MULTILABEL_STRATEGIES = ("margin", "confidence", "entropy", "cluster-margin")
REDUCTIONS = ("mean", "min")
MULTILABEL_HELP = (
    "Multi-label data (--dataset fashion-mnist-mosaic: the labels are a set of classes per row): the model is one "
    "sigmoid per class (the linear probe with binary cross-entropy), the metric the test mAP, and margin, "
    "confidence, entropy and cluster-margin score the sigmoids, reduced over the classes by their mean "
    "(NAME or NAME-mean) or by the most uncertain class (NAME-min: e.g. margin-min, cluster-margin-min); "
    "random, coreset, typiclust and probcover need no model output. Default strategies there: "
    f"{DEFAULT_MULTILABEL_STRATEGIES}."
)


def multilabel_strategy(name: str) -> Optional[tuple]:
    """(registry name, reduction) of a multi-label strategy name: ``margin`` -> (margin, mean),
    ``margin-min`` -> (margin, min), ``cluster-margin-mean`` -> (cluster-margin, mean); None for
    any other name."""
    for reduction in REDUCTIONS:
        if name.endswith("-" + reduction) and name[: -len(reduction) - 1] in MULTILABEL_STRATEGIES:
            return name[: -len(reduction) - 1], reduction
    return (name, "mean") if name in MULTILABEL_STRATEGIES else None


def _add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="compare active-learning strategies on a dataset (the default: Fashion-MNIST, a few minutes)",
        description=(
            "Run the active-learning loop for each strategy and seed: train, evaluate, select, "
            "label, round after round. Writes DIR/results.csv, DIR/results.json and the plots "
            "DIR/accuracy.png and DIR/balance.png, and prints test accuracy per strategy at each "
            "label count. Every run checkpoints after each round (DIR/checkpoints); --resume "
            "continues killed runs with exactly the results an uninterrupted run gives, and "
            "results.json's 'seconds' counts the time of the checkpointed rounds only, over all "
            "sessions. A DIR that holds an earlier run's results or checkpoints is refused "
            "unless --resume or --overwrite is given. " + MULTILABEL_HELP
        ),
    )
    run.add_argument("--dataset", default="fashion-mnist",
                     help="fashion-mnist (default), fashion-mnist-mosaic (multi-label: 2x2 mosaics of Fashion-MNIST "
                          "images, the label set the classes present), npz:PATH (arrays X, y [, X_test, y_test]) "
                          "or synthetic")
    run.add_argument("--data-dir", default=None,
                     help="folder of the four Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)")
    run.add_argument("--strategies", default=None,
                     help=f"comma-separated strategy names (default {DEFAULT_STRATEGIES}; on multi-label data "
                          f"{DEFAULT_MULTILABEL_STRATEGIES}, and margin, confidence, entropy and cluster-margin take "
                          "a reduction suffix: margin-mean, margin-min, ...); see --list")
    run.add_argument("--list", action="store_true", help="list the strategies and exit")
    run.add_argument("--initial", type=_positive, default=100, help="initial random labels (default 100)")
    run.add_argument("--budget", type=_positive, default=100, help="labels per round (default 100)")
    run.add_argument("--rounds", type=_non_negative, default=5, help="selection rounds (default 5)")
    run.add_argument("--seeds", type=_positive, default=3, help="seeds 0..N-1 per strategy (default 3)")
    run.add_argument("--model", choices=("linear", "cnn", "mlp-dropout"), default="linear",
                     help="linear: a linear probe on fixed features (pixels for images; default); "
                          "cnn: a small CNN fine-tuned end to end with light augmentation (images); "
                          "mlp-dropout: an MLP with dropout, for the MC-dropout strategies (bald, powerbald, ...)")
    run.add_argument("--mc-samples", type=_positive, default=20, metavar="T",
                     help="MC-dropout samples of the pool's logits per selection, with --model mlp-dropout (default 20)")
    run.add_argument("--knn-recall", type=_fraction, default=None, metavar="R",
                     help="cluster-margin: target recall@k of the approximate kNN graph where the exact one's N^2*D passes 1e11 "
                          "(default 0.95)")
    run.add_argument("--pca", type=_positive, default=None, metavar="DIMS",
                     help="cluster-margin: reduce the embeddings to DIMS dimensions before the kNN graph "
                          "(default: no reduction)")
    run.add_argument("--candidates-factor", type=_positive, default=None, metavar="F",
                     help="cluster-margin: its k_m candidates are the F x budget lowest-margin unlabeled rows "
                          "(default 10, as the paper; with budgets above a tenth of the pool that is every unlabeled "
                          "row and the margins no longer choose)")
    run.add_argument("--epochs", type=_positive, default=None, help="the most training epochs per round (linear probe: L-BFGS iterations, default 200, "
                          "1000 for the multi-label sigmoid probe; cnn: epochs, default 30)")
    run.add_argument("--partitions", type=_positive, default=10,
                     help="parts of the partitioned-coreset / partitioned-badge strategies (default 10)")
    run.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--torch-threads", type=_torch_threads, default=0,
                     help="torch CPU threads for training/inference (0: the model's default, 1 for linear)")
    run.add_argument("--pool-size", type=_positive, default=None,
                     help="use a seeded random subset of this many pool rows (default: the whole pool)")
    tail = run.add_argument_group("class-imbalanced pools (single-label data)")
    tail.add_argument("--long-tail", type=_fraction, default=None, metavar="RATIO",
                      help="make the pool long-tailed as the BASE code makes CIFAR-10: class c keeps "
                           "floor(n_max x RATIO^(c/(C-1))) of its rows (n_max the largest class's, seeded draw, "
                           "after --pool-size), 0 < RATIO <= 1; the test split stays as it is (default: the pool as "
                           "loaded)")
    tail.add_argument("--class-weighted", action="store_true",
                      help="train with the class-weighted cross-entropy: every labeled class weighs the same "
                           "(weight n / (K n_c)); default the plain mean")
    run.add_argument("--out", default="alscale-results", metavar="DIR", help="output folder (default alscale-results)")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the runs checkpointed in DIR/checkpoints (same settings; --strategies and "
                            "--seeds may add runs)")
    again.add_argument("--overwrite", action="store_true",
                       help="delete the results and checkpoints of an earlier run in DIR first (without it such "
                            "a DIR is refused)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    syn = run.add_argument_group("synthetic data (--dataset synthetic)")
    syn.add_argument("--n", "--rows", dest="n", type=_positive, default=20_000,
                     help="pool rows (default 20000; under torchrun write --rows)")
    syn.add_argument("--dim", type=_positive, default=64, help="features (default 64)")
    syn.add_argument("--classes", type=_positive, default=10, help="classes (default 10)")
    syn.add_argument("--imbalance", type=real_at_least_one, default=10.0, help="largest / smallest class (default 10)")
    mos = run.add_argument_group("Fashion-MNIST mosaics (--dataset fashion-mnist-mosaic; seeded, generator seed 0)")
    mos.add_argument("--mosaics", type=_positive, default=20_000, help="pool mosaics (default 20000)")
    mos.add_argument("--test-mosaics", type=_positive, default=4_000, help="test mosaics (default 4000)")
    mos.add_argument("--grid", type=_positive, default=2, help="images per side of a mosaic (default 2: four images)")
    mos.add_argument("--downscale", type=_positive, default=2,
                     help="mean-pool the mosaics by this factor (default 2: 56x56 -> 28x28 pixels; 1 keeps them)")
    run.set_defaults(func=_run, resume_hint=_resume_command)


def _run(args: argparse.Namespace) -> int:
    try:
        return _run_checked(args)
    except BrokenPipeError:  # stdout's reader went away: main ends quietly
        raise
    except (ValueError, TypeError, OSError) as err:
        print(f"alscale run: error: {err}", file=sys.stderr)
        return 2


def _run_checked(args: argparse.Namespace) -> int:
    from .. import strategies
    from .datasets import load_dataset

    if args.list:
        print("\n".join(strategies.describe()))
        return 0
    multilabel = args.dataset == "fashion-mnist-mosaic"
    if args.strategies is None:
        args.strategies = DEFAULT_MULTILABEL_STRATEGIES if multilabel else DEFAULT_STRATEGIES
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        raise ValueError("--strategies is empty")
    suffixed = [s for s in names if s not in strategies.available() and multilabel_strategy(s)]
    unknown = [s for s in names if s not in strategies.available() and s not in suffixed]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(map(repr, unknown))}; available: "
                         f"{', '.join(strategies.available())}"
                         + (f" (on multi-label data also {', '.join(f'{m}-min' for m in MULTILABEL_STRATEGIES)})"
                            if multilabel else ""))
    if suffixed and not multilabel:
        raise ValueError(f"strategy {suffixed[0]!r}: a reduction over the classes is for multi-label data "
                         "(--dataset fashion-mnist-mosaic); use the name without it")
    if multilabel:
        softmax = [s for s in names if s not in suffixed and s not in MULTILABEL_STRATEGIES
                   and set(strategies.get_class(s).needs) - {"embeddings"}]
        if softmax:
            raise ValueError(f"strategy {softmax[0]!r} reads the model's outputs as one softmax (or the labels as class "
                             f"indices), but {args.dataset} is multi-label: use random, coreset, typiclust, probcover "
                             f"or {', '.join(MULTILABEL_STRATEGIES)} (with -mean or -min)")
    runs = [multilabel_strategy(s) or (s, None) if multilabel else (s, None) for s in names]
    if len(set(runs)) != len(runs):
        raise ValueError(f"--strategies repeats a name: {args.strategies}")
    if multilabel and args.model != "linear":
        raise ValueError(f"--model {args.model}: multi-label data trains the linear probe only (one sigmoid per "
                         "class): use --model linear")
    if (args.long_tail is not None or args.class_weighted) and multilabel:
        raise ValueError(f"--{'long-tail' if args.long_tail is not None else 'class-weighted'} is for single-label "
                         f"data (one class per row); {args.dataset} is multi-label")
    from .train import check_device

    try:
        check_device(args.device)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--device: {err}") from None
    syn = dict(n=args.n, dim=args.dim, num_classes=args.classes, imbalance=args.imbalance)
    mosaic = dict(n=args.mosaics, n_test=args.test_mosaics, grid=args.grid, downscale=args.downscale)
    data = load_dataset(args.dataset, data_dir=args.data_dir,
                        **(syn if args.dataset == "synthetic" else mosaic if multilabel else {}))
    if args.pool_size is not None and args.pool_size < len(data):
        data = data.subset(args.pool_size, seed=0)
    if args.long_tail is not None:
        data = data.long_tailed(args.long_tail, seed=0)
    needed = args.initial + args.budget * args.rounds
    if needed > len(data):
        raise ValueError(f"--initial + --budget x --rounds = {needed} labels, more than the pool's {len(data)} rows")
    if args.model == "cnn" and not data.is_image:
        raise ValueError(f"--model cnn needs images; {data.name} holds feature vectors: use --model linear")
    config = _config(args, data, names)
    # Before any rank can write (init_from_env waits for all of them): every rank checks DIR.
    seconds = _prepare_out(Path(args.out), config, args)

    # Under torchrun every rank runs this; rank 0 trains, reports and writes (docs/scale.md).
    from ..distributed import Comm, init_from_env

    group = init_from_env(args.device)
    try:
        return _run_ranks(args, data, names, config, seconds, group, Comm(group).rank)
    finally:
        if group is not None:
            import torch.distributed as dist

            dist.destroy_process_group()


def _config(args: argparse.Namespace, data, names: list) -> dict:
    syn = dict(n=args.n, dim=args.dim, num_classes=args.classes, imbalance=args.imbalance)
    return {
        "dataset": data.name, "pool": len(data), "test": int(len(data.y_test)), "classes": data.num_classes,
        "strategies": names, "initial": args.initial, "budget": args.budget, "rounds": args.rounds,
        "seeds": args.seeds, "model": args.model, "epochs": args.epochs, "partitions": args.partitions,
        "device": args.device, "torch_threads": args.torch_threads, "pool_size": args.pool_size,
        "mc_samples": args.mc_samples if args.model == "mlp-dropout" else None,
        "synthetic": syn if args.dataset == "synthetic" else None,
        # cluster-margin's clustering settings, only when given (earlier runs' configs lack them)
        **{key: value for key, value in (("knn_recall", args.knn_recall), ("pca", args.pca),
                                         ("candidates_factor", args.candidates_factor)) if value is not None},
        # the imbalanced-pool settings, only when given (earlier runs' configs lack them)
        **({"long_tail": args.long_tail} if args.long_tail is not None else {}),
        **({"class_weighted": True} if args.class_weighted else {}),
    }


def _run_ranks(args: argparse.Namespace, data, names: list, config: dict, seconds: dict, group, rank: int) -> int:
    import time

    from tqdm import tqdm

    from .. import strategies
    from . import report
    from .loop import ActiveLearningLoop, write_json_atomic
    from .train import cnn_trainer, linear_probe, mlp_dropout_trainer, sigmoid_probe

    out = Path(args.out)
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(ckpt_dir / RUN_STATE, {"config": config, "seconds": seconds})

    def make_trainer():
        opts = {"device": args.device}
        if args.torch_threads:
            opts["num_threads"] = args.torch_threads
        if args.epochs:
            opts["epochs"] = args.epochs
        if args.class_weighted:
            opts["class_weighted"] = True
        if data.multilabel:
            return sigmoid_probe(**opts)
        if args.model == "mlp-dropout":
            return mlp_dropout_trainer(mc_samples=args.mc_samples, **opts)
        return (cnn_trainer if args.model == "cnn" else linear_probe)(**opts)

    def make_strategy(name):
        ml = multilabel_strategy(name) if data.multilabel else None
        extra = {"multilabel": True, "reduction": ml[1]} if ml else {}
        name = ml[0] if ml else name
        if name.startswith("partitioned-"):
            return strategies.get(name, partitions=args.partitions)
        if name == "cluster-margin":
            opts = {"knn_recall": args.knn_recall, "pca": args.pca, "candidates_factor": args.candidates_factor}
            return strategies.get(name, **{k: v for k, v in opts.items() if v is not None}, **extra)
        return strategies.get(name, **extra)

    records = []
    total = len(names) * args.seeds * (args.rounds + 1)
    with tqdm(total=total, desc="alscale run", unit="round", disable=not args.progress or rank != 0,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for name in names:
            for seed in range(args.seeds):
                path = ckpt_dir / f"{name}-seed{seed}.json"
                key = path.stem
                seconds.setdefault(key, 0.0)
                mark = [time.perf_counter()]

                def advance(record, name=name, seed=seed, key=key, mark=mark):
                    # Only rank 0 gets here, right after the loop checkpointed the round.
                    now = time.perf_counter()
                    seconds[key] += now - mark[0]
                    mark[0] = now
                    write_json_atomic(ckpt_dir / RUN_STATE, {"config": config, "seconds": seconds})
                    metric = ("mAP", record["test_map"]) if "test_map" in record else ("acc", record["test_accuracy"])
                    bar.set_postfix_str(f"{name} seed {seed}: {record['n_labeled']} labels, "
                                        f"{metric[0]} {100 * metric[1]:.1f}%")
                    bar.update(1)

                try:
                    loop = ActiveLearningLoop.resume(path, data, make_strategy(name), make_trainer(),
                                                     initial=args.initial, budget=args.budget, rounds=args.rounds,
                                                     seed=seed, progress=advance, group=group, name=name)
                except ValueError as err:
                    text = str(err)
                    if str(path) not in text:
                        text = f"checkpoint {path}: {text}"
                    raise ValueError(f"{text} (delete it, or run without --resume to start afresh)") from None
                bar.update(len(loop.records))
                records.extend(loop.run())
    elapsed = sum(seconds[f"{name}-seed{seed}"] for name in names for seed in range(args.seeds))
    if rank != 0:
        return 0

    report.write_csv(out / "results.csv", records)
    write_json_atomic(out / "results.json", {"config": config, "seconds": elapsed, "records": records})
    model = "linear (one sigmoid per class)" if data.multilabel else args.model
    shown = data.name.split("(")[0] if data.multilabel else data.name  # the mosaics' settings: too long
    title = f"{shown}, {model}, {args.seeds} seed{'s' if args.seeds > 1 else ''}"
    plots = report.plot(records, names, out, title)
    print(f"# {data.name}: pool {len(data)}, test {len(data.y_test)}, {data.num_classes} classes; model {model}; "
          f"{args.initial} initial + {args.budget} x {args.rounds} rounds; {args.seeds} seed(s); {elapsed:.0f} s")
    what = "mAP over the classes" if data.multilabel else "accuracy"
    print(f"# test {what} (%), mean ± std over seeds; * best at that label count")
    report.accuracy_table(records, names, sys.stdout)
    final = report.summarize(records, "imbalance_ratio")
    n_final = args.initial + args.budget * args.rounds
    print("# imbalance ratio of the labeled set" + (" (positive labels)" if data.multilabel else "") + " at "
          + str(n_final) + " labels: " + ", ".join(
        f"{s} {final[s][n_final][0]:.2f}" for s in names if n_final in final[s]))
    print(f"# wrote {out / 'results.csv'}, {out / 'results.json'}")
    print(f"# plots: {', '.join(str(p) for p in plots)}")
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _bench(args: argparse.Namespace) -> int:
    if args.list or args.suite is not None:
        return _bench_suites(args)
    if args.compare or args.repeat is not None or args.scale != 1.0 or args.max_time != 60.0:
        print("alscale bench: error: --compare, --repeat, --scale and --max-time go with --suite", file=sys.stderr)
        return 2
    from . import bench

    rows = bench.run_bench(
        size=args.size,
        repeats=args.repeats,
        official=args.official,
        threads=args.threads,
        file=sys.stdout,
        seed=args.seed,
    )
    if args.json:
        bench.write_json(
            args.json,
            rows,
            size=args.size,
            repeats=args.repeats,
            threads=args.threads,
            seed=args.seed,
        )
        print(f"# wrote {args.json}")
    mismatched = [r["method"] for r in rows if r.get("match") is False]
    if mismatched:
        print(
            f"# WARNING: selection differs from alscale's for: {', '.join(mismatched)}",
            file=sys.stderr,
        )
    return 0


def _bench_suites(args: argparse.Namespace) -> int:
    from . import suites

    if args.list:
        print("\n".join(suites.describe()))
        return 0
    names = list(suites.SUITES) if args.suite == "all" else [args.suite]
    if names[0] not in suites.SUITES:
        print(f"alscale bench: error: unknown suite {args.suite!r}; available: {', '.join(suites.SUITES)}, all",
              file=sys.stderr)
        return 2
    try:
        return suites.run(names, scale=args.scale, repeat=args.repeat or 5, json_path=args.json,
                          compare=args.compare, threshold=args.threshold, max_time=args.max_time,
                          progress=args.progress,
                          argv=["alscale", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else None)
    except (ValueError, OSError) as err:
        print(f"alscale bench: error: {err}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------- DIR
#: What an earlier run leaves in DIR (besides DIR/checkpoints/*.json).
RESULT_FILES = ("results.csv", "results.json", "accuracy.png", "map.png", "balance.png")
#: DIR/checkpoints/RUN_STATE: the run's settings and the seconds each strategy-seed run spent in its
#: checkpointed rounds, so that --resume checks the settings and keeps the earlier sessions' time.
RUN_STATE = "run.json"
#: Settings that --resume may change: they choose which runs there are and where they run, not
#: what a run computes (each run's checkpoint checks its own settings too).
_RESUME_MAY_CHANGE = ("strategies", "seeds", "device", "torch_threads")
_FLAGS = {"dataset": "--dataset", "pool": "pool rows", "test": "test rows", "classes": "classes",
          "initial": "--initial", "budget": "--budget", "rounds": "--rounds", "model": "--model",
          "epochs": "--epochs", "partitions": "--partitions", "pool_size": "--pool-size", "n": "--n",
          "mc_samples": "--mc-samples", "knn_recall": "--knn-recall", "pca": "--pca",
          "candidates_factor": "--candidates-factor", "long_tail": "--long-tail",
          "class_weighted": "--class-weighted",
          "dim": "--dim", "num_classes": "--classes", "imbalance": "--imbalance"}


def _earlier_run(out: Path) -> list:
    """The files of an earlier run in ``out``: results and checkpoints (with leftover temp files)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    found = [out / f for f in RESULT_FILES if (out / f).exists()]
    ckpt = out / "checkpoints"
    if ckpt.is_dir():
        found += sorted(p for p in ckpt.iterdir() if p.suffix in (".json", ".tmp") and not p.is_dir())
    return found


def _prepare_out(out: Path, config: dict, args: argparse.Namespace) -> dict:
    """Refuses (ValueError) an ``out`` that holds an earlier run unless --resume (then with the
    same settings) or --overwrite (then deletes those files); returns the seconds spent so far
    by each strategy-seed run ({} for a new run)."""
    found = _earlier_run(out)
    if not args.resume:
        if found and not args.overwrite:
            shown = ", ".join(str(p.relative_to(out)) for p in found[:4]) + (", ..." if len(found) > 4 else "")
            raise ValueError(f"--out {out} holds an earlier run ({shown}): continue it with --resume, "
                             "replace it with --overwrite, or choose another --out")
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 deletes
            for p in found:
                p.unlink(missing_ok=True)
        return {}
    state = _read_run_state(out / "checkpoints" / RUN_STATE)
    if state is None:  # nothing to resume yet, or checkpoints of a version without run.json
        return {}
    changed = _changed_settings(state["config"], config)
    if changed:
        raise ValueError(f"--resume: the run in {out} was made with other settings: {'; '.join(changed)}. "
                         "Give the same settings, or start afresh with --overwrite")
    return state["seconds"]


def _read_run_state(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (ValueError, OSError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} cannot be read as JSON ({err}); delete it to resume without the "
                         "earlier sessions' time") from None
    ok = (isinstance(state, dict) and isinstance(state.get("config"), dict)
          and isinstance(state.get("seconds"), dict)
          and all(isinstance(k, str) and type(v) in (int, float) and math.isfinite(v) and v >= 0
                  for k, v in state["seconds"].items()))
    if not ok:
        raise ValueError(f"{path} is not an alscale run state ({{'config': {{...}}, 'seconds': {{run: seconds >= 0}}}}); "
                         "delete it to resume without the earlier sessions' time")
    state["seconds"] = {k: float(v) for k, v in state["seconds"].items()}
    return state


def _settings(config: dict) -> dict:
    flat = {}
    for key, value in config.items():
        if key in _RESUME_MAY_CHANGE:
            continue
        if key == "synthetic":
            flat.update((_FLAGS.get(k, k), v) for k, v in (value or {}).items())
        else:
            flat[_FLAGS.get(key, key)] = value
    return flat


def _changed_settings(before: dict, now: dict) -> list:
    """'--budget 10 (now 20)' for every setting that differs (a missing one is 'unset')."""
    a, b = _settings(before), _settings(now)

    def show(v):
        return "unset" if v is None else str(v)

    return [f"{k} {show(a.get(k))} (now {show(b.get(k))})" for k in dict.fromkeys([*b, *a]) if a.get(k) != b.get(k)]


# ---------------------------------------------------------------------------------- the rest
def _version() -> str:
    from .. import __version__

    return __version__


def _resume_command(args: argparse.Namespace, argv: list) -> str:
    """The command line that continues an interrupted ``alscale run``: the same one, without
    --overwrite (or an abbreviation of it), with --resume."""
    words = [w for w in argv if not (len(w) >= 4 and "--overwrite".startswith(w))]
    return shlex.join(["alscale", *words, *([] if args.resume else ["--resume"])])
