"""The ``alscale`` command line: ``alscale bench`` (and ``python -m alscale bench``)."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alscale",
        description="Fast, exact batch active learning at ImageNet scale.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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


def _bench(args: argparse.Namespace) -> int:
    from alscale import bench

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
