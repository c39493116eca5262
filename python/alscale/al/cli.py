"""The ``alscale`` command line: ``alscale run`` (the active-learning loop: strategies compared
on real data, with a table, a CSV and plots) and ``alscale bench`` (the selection kernels' speed);
also ``python -m alscale ...``."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _torch_threads(text: str) -> int:
    from .train import max_threads

    value = _non_negative(text)
    if value > max_threads():
        raise argparse.ArgumentTypeError(f"must be at most {max_threads()} (4 x the cores), got {value}")
    return value


def _imbalance(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alscale",
        description="Fast, exact batch active learning at ImageNet scale.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)

    bench = sub.add_parser(
        "bench",
        help="time the selection kernels against their baselines on synthetic data",
        description=(
            "Time alscale's BASE, MASE and margin selection against the floor (one numpy pass "
            "over the logits) and the baselines (the paper's torch loop, numpy), on synthetic "
            "logits, and check they select the same rows. The 'imagenet' size needs ~6 GB of "
            "free memory and a few minutes (the official BASE loop alone takes ~2 minutes)."
        ),
    )
    bench.add_argument(
        "--size",
        choices=("imagenet", "small"),
        default="imagenet",
        help=(
            "imagenet: N=1,281,167 C=1000 D=2048 B=10,000 (default); "
            "small: N=20,000 C=100 D=64 B=500"
        ),
    )
    bench.add_argument(
        "--repeats", type=_positive, default=5, help="runs per method, median reported (default 5)"
    )
    bench.add_argument(
        "--no-official",
        dest="official",
        action="store_false",
        help="skip the official BASE torch loop (the slow baseline)",
    )
    bench.add_argument(
        "--threads", type=_non_negative, default=0, help="alscale/torch threads (0 = all cores)"
    )
    bench.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    bench.add_argument(
        "--json", metavar="PATH", help="also write the results and the machine to PATH"
    )
    bench.set_defaults(func=_bench)
    return parser


DEFAULT_STRATEGIES = "random,margin,confidence,entropy,base,coreset,badge"


def _add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="compare active-learning strategies on a dataset (the default: Fashion-MNIST, a few minutes)",
        description=(
            "Run the active-learning loop for each strategy and seed: train, evaluate, select, "
            "label, round after round. Writes DIR/results.csv, DIR/results.json and the plots "
            "DIR/accuracy.png and DIR/balance.png, and prints test accuracy per strategy at each "
            "label count. Every run checkpoints after each round (DIR/checkpoints); --resume "
            "continues killed runs with exactly the results an uninterrupted run gives."
        ),
    )
    run.add_argument("--dataset", default="fashion-mnist",
                     help="fashion-mnist (default), npz:PATH (arrays X, y [, X_test, y_test]) or synthetic")
    run.add_argument("--data-dir", default=None,
                     help="folder of the four Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)")
    run.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                     help=f"comma-separated strategy names (default {DEFAULT_STRATEGIES}); see --list")
    run.add_argument("--list", action="store_true", help="list the strategies and exit")
    run.add_argument("--initial", type=_positive, default=100, help="initial random labels (default 100)")
    run.add_argument("--budget", type=_positive, default=100, help="labels per round (default 100)")
    run.add_argument("--rounds", type=_non_negative, default=5, help="selection rounds (default 5)")
    run.add_argument("--seeds", type=_positive, default=3, help="seeds 0..N-1 per strategy (default 3)")
    run.add_argument("--model", choices=("linear", "cnn"), default="linear",
                     help="linear: a linear probe on fixed features (pixels for images; default); "
                          "cnn: a small CNN fine-tuned end to end with light augmentation (images)")
    run.add_argument("--epochs", type=_positive, default=None, help="max training epochs per round")
    run.add_argument("--partitions", type=_positive, default=10,
                     help="parts of the partitioned-coreset / partitioned-badge strategies (default 10)")
    run.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--torch-threads", type=_torch_threads, default=0,
                     help="torch CPU threads for training/inference (0: the model's default, 1 for linear)")
    run.add_argument("--pool-size", type=_positive, default=None,
                     help="use a seeded random subset of this many pool rows (default: the whole pool)")
    run.add_argument("--out", default="alscale-results", metavar="DIR", help="output folder (default alscale-results)")
    run.add_argument("--resume", action="store_true", help="continue the runs checkpointed in DIR/checkpoints")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    syn = run.add_argument_group("synthetic data (--dataset synthetic)")
    syn.add_argument("--n", "--rows", dest="n", type=_positive, default=20_000,
                     help="pool rows (default 20000; under torchrun write --rows)")
    syn.add_argument("--dim", type=_positive, default=64, help="features (default 64)")
    syn.add_argument("--classes", type=_positive, default=10, help="classes (default 10)")
    syn.add_argument("--imbalance", type=_imbalance, default=10.0, help="largest / smallest class (default 10)")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        return _run_checked(args)
    except (ValueError, TypeError, OSError) as err:
        print(f"alscale run: error: {err}", file=sys.stderr)
        return 2


def _run_checked(args: argparse.Namespace) -> int:
    from . import strategies
    from .datasets import load_dataset

    if args.list:
        print("\n".join(strategies.available()))
        return 0
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        raise ValueError("--strategies is empty")
    unknown = [s for s in names if s not in strategies.available()]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(map(repr, unknown))}; available: "
                         f"{', '.join(strategies.available())}")
    if len(set(names)) != len(names):
        raise ValueError(f"--strategies repeats a name: {args.strategies}")
    from .train import check_device

    try:
        check_device(args.device)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--device: {err}") from None
    syn = dict(n=args.n, dim=args.dim, num_classes=args.classes, imbalance=args.imbalance)
    data = load_dataset(args.dataset, data_dir=args.data_dir, **(syn if args.dataset == "synthetic" else {}))
    if args.pool_size is not None and args.pool_size < len(data):
        data = data.subset(args.pool_size, seed=0)
    needed = args.initial + args.budget * args.rounds
    if needed > len(data):
        raise ValueError(f"--initial + --budget x --rounds = {needed} labels, more than the pool's {len(data)} rows")
    if args.model == "cnn" and not data.is_image:
        raise ValueError(f"--model cnn needs images; {data.name} holds feature vectors: use --model linear")

    # Under torchrun every rank runs this; rank 0 trains, reports and writes (docs/scale.md).
    from ..distributed import Comm, init_from_env

    group = init_from_env(args.device)
    try:
        return _run_ranks(args, data, names, group, Comm(group).rank)
    finally:
        if group is not None:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_ranks(args: argparse.Namespace, data, names: list, group, rank: int) -> int:
    import time
    from pathlib import Path

    from tqdm import tqdm

    from . import report, strategies
    from .loop import ActiveLearningLoop, write_json_atomic
    from .train import cnn_trainer, linear_probe

    syn = dict(n=args.n, dim=args.dim, num_classes=args.classes, imbalance=args.imbalance)
    out = Path(args.out)
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "dataset": data.name, "pool": len(data), "test": int(data.y_test.size), "classes": data.num_classes,
        "strategies": names, "initial": args.initial, "budget": args.budget, "rounds": args.rounds,
        "seeds": args.seeds, "model": args.model, "epochs": args.epochs, "partitions": args.partitions,
        "device": args.device, "torch_threads": args.torch_threads, "pool_size": args.pool_size, "synthetic": syn if args.dataset == "synthetic" else None,
    }

    def make_trainer():
        opts = {"device": args.device}
        if args.torch_threads:
            opts["num_threads"] = args.torch_threads
        if args.epochs:
            opts["epochs"] = args.epochs
        return (cnn_trainer if args.model == "cnn" else linear_probe)(**opts)

    def make_strategy(name):
        return strategies.get(name, **({"partitions": args.partitions} if name.startswith("partitioned-") else {}))

    records = []
    started = time.perf_counter()
    total = len(names) * args.seeds * (args.rounds + 1)
    with tqdm(total=total, desc="alscale run", unit="round", disable=not args.progress or rank != 0,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for name in names:
            for seed in range(args.seeds):
                path = ckpt_dir / f"{name}-seed{seed}.json"
                if rank == 0 and not args.resume and path.exists():
                    path.unlink()
                if group is not None:
                    import torch.distributed as dist

                    dist.barrier(group)  # the other ranks read the checkpoint only after that

                def advance(record, name=name, seed=seed):
                    bar.set_postfix_str(f"{name} seed {seed}: {record['n_labeled']} labels, "
                                        f"acc {100 * record['test_accuracy']:.1f}%")
                    bar.update(1)

                try:
                    loop = ActiveLearningLoop.resume(path, data, make_strategy(name), make_trainer(),
                                                     initial=args.initial, budget=args.budget, rounds=args.rounds,
                                                     seed=seed, progress=advance, group=group)
                except ValueError as err:
                    text = str(err)
                    if str(path) not in text:
                        text = f"checkpoint {path}: {text}"
                    raise ValueError(f"{text} (delete it, or run without --resume to start afresh)") from None
                bar.update(len(loop.records))
                records.extend(loop.run())
    elapsed = time.perf_counter() - started
    if rank != 0:
        return 0

    report.write_csv(out / "results.csv", records)
    write_json_atomic(out / "results.json", {"config": config, "seconds": elapsed, "records": records})
    title = f"{data.name}, {args.model}, {args.seeds} seed{'s' if args.seeds > 1 else ''}"
    plots = report.plot(records, names, out, title)
    print(f"# {data.name}: pool {len(data)}, test {data.y_test.size}, {data.num_classes} classes; model {args.model}; "
          f"{args.initial} initial + {args.budget} x {args.rounds} rounds; {args.seeds} seed(s); {elapsed:.0f} s")
    print("# test accuracy (%), mean ± std over seeds; * best at that label count")
    report.accuracy_table(records, names, sys.stdout)
    final = report.summarize(records, "imbalance_ratio")
    n_final = args.initial + args.budget * args.rounds
    print("# imbalance ratio of the labeled set at " + str(n_final) + " labels: " + ", ".join(
        f"{s} {final[s][n_final][0]:.2f}" for s in names if n_final in final[s]))
    print(f"# wrote {out / 'results.csv'}, {out / 'results.json'}")
    print(f"# plots: {', '.join(str(p) for p in plots)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``alscale`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
