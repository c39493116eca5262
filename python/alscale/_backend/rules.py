"""What a selection ranks the rows by: a softmax uncertainty or the distance to the nearest
decision boundary, with the direction of the ranking. One object per public call."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from .arrays import HeadNorms, Logits, check_weight, norms_of


class Head:
    """The head weight of a call, checked once against the number of classes, with its inverse
    norms computed once when first needed (they are C x C: never per chunk or per pass)."""

    def __init__(self, weight: Any):
        self.weight = weight
        self._classes: int | None = None
        self._checked: np.ndarray | None = None  # the validated float64 weight
        self._norms: HeadNorms | None = None

    def checked(self, classes: int) -> np.ndarray | None:
        """The weight as check_weight returns it (None without one)."""
        if self._classes != classes:
            self._classes, self._norms = classes, None
            self._checked = None if self.weight is None else check_weight(self.weight, classes)
        return self._checked

    def norms(self, classes: int) -> HeadNorms | None:
        w = self.checked(classes)
        if w is not None and self._norms is None:
            self._norms = norms_of(w)
        return self._norms

    def fingerprint(self, classes: int) -> bytes:
        """16 bytes that identify the validated weight (empty without one): ranks compare them."""
        w = self.checked(classes)
        return b"" if w is None else hashlib.blake2b(memoryview(w), digest_size=16).digest()

    def inv(self, classes: int) -> np.ndarray | None:
        n = self.norms(classes)
        return None if n is None else n.inv

    def shift(self, classes: int) -> int:
        n = self.norms(classes)
        return 0 if n is None else n.shift


@dataclass(frozen=True)
class Rule:
    """``kind``: a :class:`alscale._core.Uncertainty` value, or None for the boundary distance
    (BASE's r_c, with ``head``); ``largest``: rank the largest scores first (entropy);
    ``reduction``: None for one softmax over the classes, or a :class:`alscale._core.Reduction`
    for multi-label logits (one sigmoid per class, csrc/multilabel.hpp)."""

    name: str
    kind: Any
    largest: bool
    head: Head | None = None
    reduction: Any = None

    @property
    def multilabel(self) -> bool:
        return self.reduction is not None

    def host_scores(self, x: Logits, threads: int) -> np.ndarray:
        """The rule's scores of a host matrix (ranked as is: a shifted head keeps its order)."""
        if self.kind is None:
            return _core.boundary_scores(x.array, x.bf16, self.head.inv(x.classes), threads)
        if self.reduction is not None:
            return _core.multilabel_scores(x.array, x.bf16, self.kind, self.reduction, threads)
        return _core.uncertainty_scores(x.array, x.bf16, self.kind, threads)

    def true_scores(self, scores: np.ndarray, classes: int) -> np.ndarray:
        """Scores as the user reads them (the head's power-of-two shift undone)."""
        shift = 0 if self.head is None else self.head.shift(classes)
        if not shift:
            return scores
        with np.errstate(over="ignore", under="ignore"):  # beyond float64: inf (or 0), the true value rounded
            return np.ldexp(scores, shift)


class _DefaultReduction(str):
    """The default of ``reduction=``: reads as "mean" (signatures, docs) but is told apart from
    an explicit ``reduction="mean"``, which single-label calls refuse."""

    __slots__ = ()


#: ``reduction="mean"`` as the default of every public function that takes it.
DEFAULT_REDUCTION = _DefaultReduction("mean")
REDUCTIONS = ("mean", "min")


def as_reduction(multilabel: Any, reduction: Any) -> Any:
    """The kernel's reduction for ``multilabel=`` / ``reduction=`` (None: single-label softmax).

    Raises TypeError for a ``multilabel`` that is not a bool, ValueError for a ``reduction``
    other than "mean" / "min", or one given without ``multilabel=True``."""
    if not isinstance(multilabel, (bool, np.bool_)):
        raise TypeError(f"multilabel must be True or False, got {multilabel!r}")
    if not multilabel:
        if reduction is not DEFAULT_REDUCTION:
            raise ValueError(
                f"reduction={reduction!r} applies to multi-label scores only (one sigmoid per class); "
                "pass multilabel=True, or drop reduction= for softmax scores"
            )
        return None
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'min', got {reduction!r}")
    return _core.Reduction.mean if reduction == "mean" else _core.Reduction.min


def margin(multilabel: Any = False, reduction: Any = DEFAULT_REDUCTION) -> Rule:
    return Rule("margin", _core.Uncertainty.margin, False, reduction=as_reduction(multilabel, reduction))


def confidence(multilabel: Any = False, reduction: Any = DEFAULT_REDUCTION) -> Rule:
    return Rule("confidence", _core.Uncertainty.confidence, False, reduction=as_reduction(multilabel, reduction))


def entropy(multilabel: Any = False, reduction: Any = DEFAULT_REDUCTION) -> Rule:
    return Rule("entropy", _core.Uncertainty.entropy, True, reduction=as_reduction(multilabel, reduction))


def refuse_multilabel(multilabel: Any, function: str) -> None:
    """BASE and MASE are defined for one softmax: ``multilabel=True`` is refused, saying why."""
    if not isinstance(multilabel, (bool, np.bool_)):
        raise TypeError(f"multilabel must be True or False, got {multilabel!r}")
    if multilabel:
        raise ValueError(
            f"{function} does not take multi-label logits: BASE and MASE rank rows by their distance "
            "to the decision boundary between the predicted class and another class of one softmax "
            "(argmax over the classes), which independent sigmoids do not have; use select_margin, "
            "select_confidence, select_entropy or select_cluster_margin with multilabel=True"
        )


def boundary(weight: Any) -> Rule:
    return Rule("boundary", None, False, Head(weight))
