"""Bayesian active learning on Monte-Carlo samples (MC dropout, ensembles, any stochastic model
run T times): BALD, BatchBALD, stochastic (power) batch acquisition and MC-averaged scores.

``samples`` is everywhere either a (T, N, C) array (numpy or CPU torch; float16, bfloat16,
float32 or float64) or an iterable over T of (N, C) arrays — a list, a generator — so that a
pool never needs T x N x C in memory. An array in another layout is read in place when told:
``layout="ntc"`` for (N, T, C), ``layout="nct"`` for baal's (N, C, T) (the default is
``"tnc"``). A :class:`SamplesWarning` says when the input suggests a mix-up: a first axis (T)
larger than the second (N) and than 100 (MC samples number tens, pools thousands), or logits
that look like probabilities (every value of the first sample's first 1,024 rows >= 0, some
strictly between 0 and 1, each row summing to 1 within 1e-4) without ``probabilities=True``.
One pass over the samples: one pass over the samples accumulates, per row, the sum
of the probabilities and the sum of their entropies (the compiled kernel ``csrc/bayes.cpp``;
memory N x C sums for an iterable, a row per thread for an array). The samples are logits
(softmaxed with a stable softmax) unless ``probabilities=True``; probabilities must be finite,
non-negative and sum to 1 per row within 1e-3, else a ValueError names the sample and the row.

With q the mean over the samples of the probabilities of a row and H the entropy (natural log):

- BALD = H[q] - mean_t H[p_t], the mutual information between the label and the model
  (Houlsby et al. 2011; Gal et al. 2017), clipped at 0 where rounding makes it negative, and
  exactly 0 for a row whose T samples are the same, bit for bit (T = 1, or dropout off):
  identical samples tie exactly (the smaller row first), never by rounding noise;
- MC margin = q(1) - q(2), MC confidence = max q, MC entropy = H[q];
- BatchBALD: the batch that greedily maximises the joint mutual information (Kirsch et al. 2019);
- power acquisition: sample the batch without replacement with probability ∝ score^β
  (Kirsch et al. 2023, "Stochastic Batch Acquisition"), by Gumbel top-k.

Arithmetic: float32 sums for 16/32-bit samples, float64 for float64 samples (the library's rule).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _core
from ._backend.arrays import Exclusion, Logits, is_torch, as_budget, as_int, as_logits, as_seed, as_threads

__all__ = [
    "MCScores",
    "SamplesWarning",
    "bald_scores",
    "mc_confidence_scores",
    "mc_entropy_scores",
    "mc_margin_scores",
    "select_bald",
    "select_batchbald",
    "select_power",
    "select_power_entropy",
    "select_power_margin",
    "select_powerbald",
]

_KINDS = ("bald", "margin", "confidence", "entropy", "expected_entropy")
_LAYOUTS = ("tnc", "ntc", "nct")
#: Beyond this many samples on the first axis (and more than rows), the layout looks swapped.
_MANY_SAMPLES = 100
#: Rows of the first sample read to tell probabilities from logits.
_PROBE_ROWS = 1024


class SamplesWarning(UserWarning):
    """MC samples that look mixed up: the axes (a first axis T larger than the second, N, and than
    100: pass ``layout=``) or the values (logits that look like probabilities: pass
    ``probabilities=True``). The scores are computed as asked; the warning says what to check."""
_FAULT = re.compile(r"^sample (\d+) row (\d+)")


def _kernel_error(err: ValueError) -> ValueError:
    return ValueError(_FAULT.sub(r"samples[\1] row \2", str(err)))


def _kind(kind: str):
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    return getattr(_core.McScore, kind)


def _sample(x: Any, t: int) -> Logits:
    if isinstance(x, np.ndarray) or is_torch(x):
        if len(x.shape) != 2:
            raise ValueError(f"samples[{t}] must be 2-D (rows, classes), got shape {tuple(x.shape)}")
    return as_logits(x, name=f"samples[{t}]")


_PACKAGE = __file__.rsplit("bayesian.py", 1)[0]


def _warn(message: str) -> None:
    """A SamplesWarning pointing at the first caller outside alscale."""
    import sys

    frame, level = sys._getframe(1), 2  # level 1 is this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, SamplesWarning, stacklevel=level)


def _layout(samples: Any, layout: Any) -> Any:
    """A (T, N, C) view of a 3-D array given in ``layout`` (an iterable must be over T), with a
    SamplesWarning when T looks like the pool axis."""
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, _LAYOUTS))} (the axes of the samples: T "
                         f"samples, N rows, C classes), got {layout!r}")
    if not (isinstance(samples, np.ndarray) or is_torch(samples)):
        if layout != "tnc" and not isinstance(samples, (str, bytes)) and isinstance(samples, Iterable):
            raise ValueError(f"layout={layout!r} is for a 3-D array; an iterable of samples is over T already "
                             "(each item one (N, C) sample): drop layout=")
        return samples
    if len(samples.shape) != 3:
        return samples  # refused with the shape by the caller
    if layout == "ntc":
        samples = samples.transpose(1, 0, 2) if isinstance(samples, np.ndarray) else samples.permute(1, 0, 2)
    elif layout == "nct":
        samples = samples.transpose(2, 0, 1) if isinstance(samples, np.ndarray) else samples.permute(2, 0, 1)
    t, n = int(samples.shape[0]), int(samples.shape[1])
    if t > max(n, _MANY_SAMPLES):
        shape = tuple(int(v) for v in samples.shape)
        _warn(f"samples read as (T, N, C) = {shape} (layout={layout!r}): {t} MC samples of {n} rows? MC samples "
              "number tens and pools thousands; if the rows come first, pass layout='ntc' for (N, T, C) or "
              "layout='nct' for baal's (N, C, T)")
    return samples


def _check_values(x: Logits, probabilities: bool) -> None:
    """A SamplesWarning when logits (``probabilities`` False) look like probabilities: the first
    sample's first rows all >= 0, some strictly between 0 and 1, every row summing to 1 within
    1e-4 (with one class every input gives probability 1: no warning)."""
    if probabilities or x.classes < 2:
        return
    a = x.array[:_PROBE_ROWS]
    if x.bf16:
        a = (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all() or (a < 0).any() or not ((a > 0) & (a < 1)).any():
        return
    if np.all(np.abs(a.sum(axis=1) - 1.0) <= 1e-4):
        _warn("the samples look like probabilities (non-negative, each row summing to 1) but are read as logits "
              "and softmaxed again, which flattens them and changes the picks: pass probabilities=True if they are")


class MCScores:
    """Per-row sums over MC samples fed one (N, C) sample at a time (memory N x C, never T x N x C).

    Parameters
    ----------
    probabilities : bool
        The samples are probabilities (checked) rather than logits.
    num_threads : int
        OpenMP threads, 0 for all cores; the scores never depend on it.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> acc = alscale.MCScores()
    >>> for logits in (np.array([[3.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 3.0], [0.0, 0.0]])):
    ...     _ = acc.update(logits)
    >>> acc.samples, acc.scores("bald").round(3).tolist()
    (2, [0.502, 0.0])
    """

    def __init__(self, *, probabilities: bool = False, num_threads: int = 0):
        self.probabilities = bool(probabilities)
        self.num_threads = as_threads(num_threads)
        self._state = None
        self._wrap = None
        self._checked = False  # the values were checked for a mix-up (or need not be)

    @property
    def samples(self) -> int:
        """The number of samples added so far."""
        return 0 if self._state is None else int(self._state.samples)

    @property
    def rows(self) -> int | None:
        return None if self._state is None else int(self._state.rows)

    def update(self, sample: Any) -> "MCScores":
        """Adds one (N, C) sample (every sample of one shape)."""
        t = self.samples
        x = _sample(sample, t)
        if self._state is None:
            if not self._checked:
                _check_values(x, self.probabilities)
            self._state = _core.McState(x.rows, x.classes, x.array.dtype == np.float64 and not x.bf16)
            self._wrap = x.wrap
        elif (x.rows, x.classes) != (self._state.rows, self._state.classes):
            raise ValueError(f"samples[{t}] has shape {(x.rows, x.classes)}, but samples[0] had "
                             f"{(self._state.rows, self._state.classes)}: every MC sample covers the same rows and classes")
        try:
            self._state.add(x.array, x.bf16, self.probabilities, self.num_threads)
        except ValueError as err:
            raise _kernel_error(err) from None
        return self

    def raw(self, kind: str = "bald") -> np.ndarray:
        """The scores as a float64 numpy array (see :meth:`scores`)."""
        if self._state is None:
            raise ValueError("samples is empty: no MC sample has been added")
        try:
            return self._state.scores(_kind(kind), self.num_threads)
        except ValueError as err:
            raise _kernel_error(err) from None

    def scores(self, kind: str = "bald"):
        """(N,) float64 scores of the samples so far: ``"bald"``, ``"margin"``, ``"confidence"``,
        ``"entropy"`` (of the mean probabilities) or ``"expected_entropy"`` (mean of the
        samples' entropies); a torch tensor when the samples were tensors."""
        return self._wrap(self.raw(kind))


def _scores(samples: Any, kind: str, probabilities: bool, num_threads: Any, layout: Any = "tnc",
            check: bool = True):
    """(float64 scores, wrap) of MC samples: the fused kernel for a (T, N, C) array, the
    streaming state for an iterable over T. ``check``: warn of a likely mix-up (once per call)."""
    threads = as_threads(num_threads)
    code = _kind(kind)
    samples = _layout(samples, layout) if check else samples
    if isinstance(samples, np.ndarray) or is_torch(samples):
        if len(samples.shape) != 3:
            hint = (" (one deterministic output: pass logits[None], T = 1)" if len(samples.shape) == 2 else "")
            raise ValueError(f"samples must be 3-D (T samples, rows, classes) or an iterable over T of (rows, classes) "
                             f"arrays, got shape {tuple(samples.shape)}{hint}")
        if samples.shape[0] == 0:
            raise ValueError("samples is empty: no MC sample (T = 0)")
        views = [_sample(samples[t], t) for t in range(samples.shape[0])]
        first = views[0]
        if check:
            _check_values(first, probabilities)
        f64 = first.array.dtype == np.float64 and not first.bf16
        try:
            out = _core.mc_scores([v.array for v in views], first.bf16, bool(probabilities), f64, code, threads)
        except ValueError as err:
            raise _kernel_error(err) from None
        return out, first.wrap
    if isinstance(samples, (str, bytes)) or not isinstance(samples, Iterable):
        raise TypeError(f"samples must be a (T, N, C) array or an iterable over T of (N, C) arrays, got "
                        f"{type(samples).__name__}")
    acc = MCScores(probabilities=probabilities, num_threads=threads)
    acc._checked = not check
    for sample in samples:
        acc.update(sample)
    return acc.raw(kind), acc._wrap


def bald_scores(samples: Any, *, probabilities: bool = False, layout: str = "tnc", num_threads: int = 0):
    """BALD, the mutual information H[q] - mean_t H[p_t] of every row (natural log).

    Parameters
    ----------
    samples : array_like or torch.Tensor, shape (T, N, C), or an iterable over T of (N, C)
        MC samples of the pool's logits (or probabilities with ``probabilities=True``).
    probabilities : bool
        The samples are probabilities (checked: finite, >= 0, rows summing to 1 within 1e-3).
    layout : {"tnc", "ntc", "nct"}
        The axes of a 3-D ``samples``: (T, N, C) (default), (N, T, C), or baal's (N, C, T);
        read in place.
    num_threads : int
        OpenMP threads, 0 (default) for all cores; the result never depends on it.

    Returns
    -------
    scores : numpy.ndarray or torch.Tensor (torch samples), shape (N,), float64, >= 0; exactly 0
        for a row whose samples are all the same (T = 1, or a deterministic model).

    Warns
    -----
    SamplesWarning
        The axes or the values look mixed up (see the module's documentation).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> samples = np.array([[[4.0, 0.0], [0.0, 0.0]], [[0.0, 4.0], [0.0, 0.0]]])  # (T=2, N=2, C=2)
    >>> alscale.bald_scores(samples).round(3)
    array([0.603, 0.   ])
    """
    out, wrap = _scores(samples, "bald", probabilities, num_threads, layout)
    return wrap(out)


def mc_margin_scores(samples: Any, *, probabilities: bool = False, layout: str = "tnc", num_threads: int = 0):
    """q(1) - q(2) of the mean probabilities q of every row (see :func:`bald_scores`).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.mc_margin_scores(np.zeros((3, 1, 4)))
    array([0.])
    """
    out, wrap = _scores(samples, "margin", probabilities, num_threads, layout)
    return wrap(out)


def mc_confidence_scores(samples: Any, *, probabilities: bool = False, layout: str = "tnc", num_threads: int = 0):
    """max q, the largest mean probability of every row (see :func:`bald_scores`).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> alscale.mc_confidence_scores(np.zeros((3, 1, 4)))
    array([0.25])
    """
    out, wrap = _scores(samples, "confidence", probabilities, num_threads, layout)
    return wrap(out)


def mc_entropy_scores(samples: Any, *, probabilities: bool = False, layout: str = "tnc", num_threads: int = 0):
    """H[q], the entropy of the mean probabilities of every row (see :func:`bald_scores`).

    Examples
    --------
    >>> import numpy as np, alscale
    >>> float(alscale.mc_entropy_scores(np.zeros((3, 1, 4)))[0]) == float(np.log(4))
    True
    """
    out, wrap = _scores(samples, "entropy", probabilities, num_threads, layout)
    return wrap(out)


def _top(scores: np.ndarray, budget: Any, exclude: Any, threads: int, largest: bool) -> np.ndarray:
    k = as_budget(budget)
    mask = Exclusion(exclude, scores.shape[0]).mask(0, scores.shape[0])
    return _core.select_topk(scores, min(k, scores.shape[0]), mask, largest, threads)


def select_bald(samples: Any, budget: Any, *, probabilities: bool = False, exclude: Any = None,
                layout: str = "tnc", num_threads: int = 0):
    """The ``budget`` rows with the largest BALD score, largest first, ties to the smaller row.

    Parameters
    ----------
    samples : (T, N, C) array or tensor, or an iterable over T of (N, C) arrays
        See :func:`bald_scores`.
    budget : int
        Rows to select; clipped to the rows not excluded.
    probabilities : bool
    exclude : index array or boolean mask of shape (N,), optional
        Rows that may not be selected (already labeled).
    layout : {"tnc", "ntc", "nct"}
        See :func:`bald_scores`: ``"nct"`` reads baal's (N, C, T) layout.
    num_threads : int

    Returns
    -------
    indices : int64 numpy array, or torch tensor for torch samples.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> samples = np.array([[[4.0, 0.0], [0.0, 0.0], [1.0, 0.0]], [[0.0, 4.0], [0.0, 0.0], [0.0, 1.0]]])
    >>> alscale.select_bald(samples, 2)
    array([0, 2])
    >>> alscale.select_bald(samples.transpose(1, 2, 0), 2, layout="nct")  # baal's (N, C, T)
    array([0, 2])
    """
    scores, wrap = _scores(samples, "bald", probabilities, num_threads, layout)
    return wrap(_top(scores, budget, exclude, as_threads(num_threads), True))


def _beta(beta: Any) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise TypeError(f"beta must be a number, got {beta!r}")
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


def select_power(scores: Any, budget: Any, *, beta: float = 1.0, seed: Any = None, exclude: Any = None):
    """Stochastic batch acquisition (Kirsch et al. 2023): ``budget`` distinct rows sampled
    without replacement with probability ∝ score^β, in the order drawn.

    Sampled exactly by the Gumbel top-k trick: the rows with the largest β·log(score) + G_i,
    G_i i.i.d. standard Gumbel draws from ``numpy.random.default_rng(seed)`` (so the same seed
    gives the same batch, and the first row is drawn with probability score^β / Σ score^β, the
    next from the rest, ...). Rows with score 0 have probability 0: they come only after every
    positive row is taken, in uniformly random order. β = 0 is uniform sampling; large β
    approaches the top-k.

    Parameters
    ----------
    scores : array_like or torch.Tensor, shape (N,)
        Non-negative, finite acquisition scores (larger = more informative), e.g. BALD.
    budget : int
    beta : float
        The power β >= 0 (default 1).
    seed : int or numpy.random.Generator, optional
    exclude : index array or boolean mask, optional

    Returns
    -------
    indices : int64 numpy array (torch tensor for a torch ``scores``), shape (min(budget, available),)

    Examples
    --------
    >>> import numpy as np, alscale
    >>> picks = alscale.select_power(np.array([0.0, 1.0, 5.0, 0.2]), 3, seed=0)
    >>> sorted(picks.tolist())
    [1, 2, 3]
    """
    wrap = None
    if is_torch(scores):
        if scores.device.type != "cpu":
            raise ValueError("scores must be a CPU tensor (select_power has no GPU kernel)")
        from ._backend.arrays import torch_wrap

        wrap, scores = torch_wrap, scores.detach().cpu().numpy()
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per row), got shape {s.shape}")
    if s.dtype.kind not in "fiu" or s.dtype == np.bool_:
        raise TypeError(f"scores must be real numbers, got {s.dtype}")
    s = np.ascontiguousarray(s, dtype=np.float64)
    bad = ~np.isfinite(s) | (s < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"scores must be finite and >= 0 (probability ∝ score^beta); row {i} has {s[i]!r}")
    b = _beta(beta)
    k = as_budget(budget)
    n = s.shape[0]
    ex = Exclusion(exclude, n)
    rng = np.random.default_rng(as_seed(seed))
    gumbel = rng.gumbel(size=n)
    mask = ex.mask(0, n)
    taken = np.zeros(n, dtype=np.uint8) if mask is None else mask.copy()
    if b == 0:  # score^0 = 1: uniform over every row
        positive, keys = np.ones(n, dtype=bool), gumbel
    else:
        positive = s > 0
        keys = np.where(positive, b * np.log(np.where(positive, s, 1.0)) + gumbel, -np.inf)
    first = _core.select_topk(keys, min(k, n), (taken | ~positive).astype(np.uint8), True, 0)
    out = first
    if first.size < k:  # the zero-score rows, uniformly at random
        taken[first] = 1
        rest = _core.select_topk(gumbel, min(k - first.size, n), (taken | positive).astype(np.uint8), True, 0)
        out = np.concatenate([first, rest])
    return out if wrap is None else wrap(out)


def _power(samples: Any, kind: str, budget: Any, beta: Any, probabilities: bool, seed: Any, exclude: Any,
           num_threads: Any, layout: Any = "tnc"):
    scores, wrap = _scores(samples, kind, probabilities, num_threads, layout)
    if kind == "margin":
        scores = 1.0 - scores
    return wrap(select_power(scores, budget, beta=beta, seed=seed, exclude=exclude))


def select_powerbald(samples: Any, budget: Any, *, beta: float = 1.0, probabilities: bool = False, seed: Any = None,
                     exclude: Any = None, layout: str = "tnc", num_threads: int = 0):
    """PowerBALD: :func:`select_power` on :func:`bald_scores` (Kirsch et al. 2023).

    Rows whose samples all agree have BALD exactly 0, so probability 0: they come only after
    every row with a positive BALD, in uniformly random order (``seed``). Samples that agree on
    every row (T = 1, dropout off) thus give a uniformly random batch — the same batch as
    ``select_power(zeros, budget, seed=seed)``, whatever the samples' values — never one drawn
    in proportion to rounding noise.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> samples = np.random.default_rng(0).normal(size=(5, 100, 3))
    >>> alscale.select_powerbald(samples, 10, seed=1).shape
    (10,)
    """
    return _power(samples, "bald", budget, beta, probabilities, seed, exclude, num_threads, layout)


def select_power_entropy(samples: Any, budget: Any, *, beta: float = 1.0, probabilities: bool = False,
                         seed: Any = None, exclude: Any = None, layout: str = "tnc", num_threads: int = 0):
    """Power entropy: :func:`select_power` on the entropy of the mean probabilities,
    H[q] (:func:`mc_entropy_scores`; with T = 1, the softmax entropy)."""
    return _power(samples, "entropy", budget, beta, probabilities, seed, exclude, num_threads, layout)


def select_power_margin(samples: Any, budget: Any, *, beta: float = 1.0, probabilities: bool = False,
                        seed: Any = None, exclude: Any = None, layout: str = "tnc", num_threads: int = 0):
    """Power margin: :func:`select_power` on 1 - margin, where margin = q(1) - q(2) of the mean
    probabilities (:func:`mc_margin_scores`; with T = 1, the softmax margin).

    The score is the margin's complement, 1 - (q(1) - q(2)) in [0, 1], not 1 / margin: it is
    larger for more uncertain rows as power acquisition needs, finite at margin 0 (where
    1 / margin would put all the probability on exact ties), and 0 only for rows with q(1) = 1.
    """
    return _power(samples, "margin", budget, beta, probabilities, seed, exclude, num_threads, layout)


def _probabilities(samples: Any, probabilities: bool, rows: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """(n, T, C) float64 probabilities of ``rows`` (all rows when None), checked by the kernel's
    rules (finite logits; or finite, non-negative probabilities summing to 1 within 1e-3), and
    the wrap of the first sample."""
    if isinstance(samples, np.ndarray) or is_torch(samples):
        if len(samples.shape) != 3:
            raise ValueError(f"samples must be 3-D (T, rows, classes) or an iterable over T, got shape "
                             f"{tuple(samples.shape)}")
        seq: Any = [samples[t] for t in range(samples.shape[0])]
    elif isinstance(samples, (str, bytes)) or not isinstance(samples, Iterable):
        raise TypeError(f"samples must be a (T, N, C) array or an iterable over T of (N, C) arrays, got "
                        f"{type(samples).__name__}")
    else:
        seq = samples
    out: list = []
    wrap, first = None, (0, 0)
    for t, sample in enumerate(seq):
        x = _sample(sample, t)
        if out and (x.rows, x.classes) != first:
            raise ValueError(f"samples[{t}] has shape {(x.rows, x.classes)}, but samples[0] had {first}: every MC "
                             "sample covers the same rows and classes")
        if not out:
            wrap, first = x.wrap, (x.rows, x.classes)
            _check_values(x, probabilities)
        a = x.array
        if x.bf16:
            a = (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        a = np.asarray(a if rows is None else a[rows], dtype=np.float64)
        ok = np.isfinite(a).all(axis=1)
        if probabilities:
            ok &= (a >= 0).all(axis=1) & (np.abs(a.sum(axis=1) - 1.0) <= 1e-3)
        if not ok.all():
            i = int(np.argmin(ok))
            row = i if rows is None else int(rows[i])
            what = ("is not a probability vector (finite, >= 0, summing to 1 within 1e-3): logits? then pass "
                    "probabilities=False") if probabilities else "contains NaN or inf"
            raise ValueError(f"samples[{t}] row {row} {what}")
        out.append(a)
    if not out:
        raise ValueError("samples is empty: no MC sample (T = 0)")
    p = np.stack(out, axis=1)  # (n, T, C)
    if not probabilities:
        p -= p.max(axis=2, keepdims=True)
        np.exp(p, out=p)
        p /= p.sum(axis=2, keepdims=True)
    return np.ascontiguousarray(p), wrap


def select_batchbald(samples: Any, budget: Any, *, probabilities: bool = False, exclude: Any = None,
                     num_samples: int = 1000, candidates: Any = None, seed: Any = None, layout: str = "tnc",
                     num_threads: int = 0):
    """BatchBALD (Kirsch et al. 2019): the batch built greedily, each pick the row that most
    increases the joint mutual information I(y_1..y_n; ω) = H(y_1..y_n) - Σ_i E_ω H(y_i | ω).

    The joint entropy of the batch so far and a candidate is exact while its label
    configurations number at most ``num_samples`` (C^n with n rows taken); beyond, it is the
    usual importance-sampling estimate over ``num_samples`` configurations drawn from the
    joint predictive distribution — kept from pick to pick and extended by ancestral sampling
    (each configuration's next label drawn from its posterior mixture over the T samples), so
    the draws stay exact samples of the joint. Ties go to the smaller row. The first pick is
    the BALD argmax.

    Parameters
    ----------
    samples : (T, N, C) array or tensor, or an iterable over T of (N, C) arrays
        MC samples of logits (or probabilities). The candidates' T x C probabilities are held
        in float64 (memory candidates x T x C x 8 bytes).
    budget : int
    probabilities : bool
    exclude : index array or boolean mask, optional
    num_samples : int
        Label configurations: exact up to this many, sampled beyond (default 1000).
    candidates : int, optional
        Consider only this many rows with the largest BALD score (default: every available
        row). Needs the samples twice: a 3-D array or a re-iterable (a list).
    seed : int or numpy.random.Generator, optional
        Seeds the configurations' draws (only used once they are sampled).
    layout : {"tnc", "ntc", "nct"}
        See :func:`bald_scores`.
    num_threads : int

    Returns
    -------
    indices : int64 numpy array (torch tensor for torch samples), in pick order.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> rng = np.random.default_rng(0)
    >>> one = rng.normal(size=(8, 1, 3)) * 3
    >>> samples = np.concatenate([one, one, rng.normal(size=(8, 2, 3)) * 3], axis=1)  # rows 0 and 1 equal
    >>> picks = alscale.select_batchbald(samples, 2)
    >>> sorted(picks.tolist()) != [0, 1]  # a duplicate brings no new information
    True
    """
    picks, _, wrap = batchbald_picks(samples, budget, probabilities=probabilities, exclude=exclude,
                                     num_samples=num_samples, candidates=candidates, seed=seed, layout=layout,
                                     num_threads=num_threads)
    return wrap(picks)


def batchbald_picks(samples: Any, budget: Any, *, probabilities: bool = False, exclude: Any = None,
                    num_samples: int = 1000, candidates: Any = None, seed: Any = None, layout: str = "tnc",
                    num_threads: int = 0) -> tuple:
    """:func:`select_batchbald`'s picks (an int64 numpy array, in pick order), each pick's gain
    in the batch's joint mutual information, I(y_1..y_k; ω) - I(y_1..y_{k-1}; ω) in nats (the
    first is its BALD; exact while the configurations are enumerated, estimated once they are
    sampled; they sum to the batch's I), and the wrap of the samples' kind."""
    threads = as_threads(num_threads)
    k = as_budget(budget)
    m_max = as_int(num_samples, "num_samples", minimum=1)
    rng = np.random.default_rng(as_seed(seed))
    samples = _layout(samples, layout)
    if candidates is not None:
        if not (isinstance(samples, (list, tuple)) or isinstance(samples, np.ndarray) or is_torch(samples)):
            raise ValueError("candidates= reads the samples twice (BALD first): pass a (T, N, C) array or a list")
        nc = as_int(candidates, "candidates", minimum=1)
        bald, _ = _scores(samples, "bald", probabilities, threads, check=False)  # checked below
        rows = np.sort(_top(bald, nc, exclude, threads, True))
        p, wrap = _probabilities(samples, probabilities, rows)
    else:
        p, wrap = _probabilities(samples, probabilities, None)
        n = p.shape[0]
        mask = Exclusion(exclude, n).mask(0, n)
        rows = np.arange(n, dtype=np.int64) if mask is None else np.flatnonzero(mask == 0).astype(np.int64)
        p = p[rows] if rows.size != n else p
    n, t, c = p.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    expected = -plogp.sum(axis=2).mean(axis=1)  # E_ω H(y_i | ω)
    configs = np.ones((1, t))  # P[m, k] = Π_b p_k(yhat_{m,b})
    weight = np.ones(1)
    log_scale = 0.0  # mean log of the configurations' scale factors (sampled mode)
    exact = True
    taken = np.zeros(n, dtype=bool)
    picks: list[int] = []
    gains: list[float] = []
    before = 0.0  # H(y_1..y_{k-1}), the batch's joint entropy so far
    for _ in range(min(k, n)):
        joint = _core.joint_entropy(configs, weight, p, threads) - log_scale
        score = joint - expected
        score[taken] = -np.inf
        best = int(np.argmax(score))  # the first maximum: ties to the smaller row
        picks.append(best)
        gains.append(float(score[best]) - before)  # H_k - H_{k-1} - E H(y_k | ω)
        before = float(joint[best])
        taken[best] = True
        pb = p[best]  # (T, C)
        if exact and configs.shape[0] * c <= m_max:
            configs = (configs[:, None, :] * pb.T[None, :, :]).reshape(-1, t)
            weight = np.ones(configs.shape[0])
            continue
        if exact:  # from here on: m_max configurations drawn from the exact joint
            mass = configs.mean(axis=1)
            draw = rng.choice(configs.shape[0], size=m_max, p=mass / mass.sum())
            configs = configs[draw]
            exact = False
            log_scale = 0.0
        post = configs / configs.sum(axis=1, keepdims=True)  # posterior over the T samples
        pred = np.einsum("mk,kc->mc", post, pb)  # each configuration's predictive for the new row
        u = rng.random(configs.shape[0])[:, None]
        label = np.minimum((np.cumsum(pred, axis=1) < u * pred.sum(axis=1, keepdims=True)).sum(axis=1), c - 1)
        configs = configs * pb[:, label].T
        top = configs.max(axis=1, keepdims=True)
        configs = configs / top
        log_scale = log_scale + float(np.mean(np.log(top)))
        weight = 1.0 / (configs.shape[0] * configs.mean(axis=1))
    return rows[np.asarray(picks, dtype=np.int64)], np.asarray(gains, dtype=np.float64), wrap
