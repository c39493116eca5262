"""The command lines' argument types, shared by :mod:`alscale.cli` (query, teach, status) and
:mod:`alscale.al.cli` (run, bench): each parses one word or raises
``argparse.ArgumentTypeError`` saying what it must be."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

__all__ = ["classes", "fraction", "non_negative", "option", "positive", "real_at_least_one"]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def real_at_least_one(text: str) -> float:
    """A finite number >= 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 1, got {text}")
    return value


def classes(text: str) -> list:
    """Comma-separated class names."""
    names = [x.strip() for x in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be comma-separated class names, got {text!r}")
    return names


def option(text: str) -> tuple:
    """``NAME=VALUE``: a strategy option; VALUE is read as JSON (numbers, true/false, null),
    else taken as a string."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE (a strategy option), got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name, value
