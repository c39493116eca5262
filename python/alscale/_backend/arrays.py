"""Inputs in, results out: numpy arrays and torch tensors, validated once, never copied in full.

Every public function converts its arguments here, calls one kernel of ``alscale._core`` and
wraps the result back into the caller's kind (numpy array, or torch tensor on the input's
device). torch is imported only when a tensor is actually passed.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import operator
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

_FLOAT_NAMES = "float16, bfloat16, float32 or float64"


def is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass(frozen=True)
class Logits:
    """A validated (N, C) logits matrix as a numpy view of the caller's memory."""

    array: np.ndarray  # float16/32/64, or int16 holding bfloat16 bits
    bf16: bool
    wrap: Callable[[np.ndarray], Any]  # numpy result -> the caller's kind

    @property
    def rows(self) -> int:
        return self.array.shape[0]

    @property
    def classes(self) -> int:
        return self.array.shape[1]


@dataclass(frozen=True)
class UnitEmbeddings:
    """Validated embeddings scaled to unit rows, with the call's ``labeled`` rows as a mask."""

    unit: np.ndarray  # (N, D) float32/float64, unit L2 rows
    labeled: np.ndarray  # (N,) bool
    wrap: Callable[[np.ndarray], Any]  # numpy result -> the caller's kind

    @property
    def rows(self) -> int:
        return self.unit.shape[0]


def as_unit_embeddings(embeddings: Any, labeled: Any = None) -> UnitEmbeddings:
    """The embeddings (:func:`as_embeddings`) scaled to unit rows, and ``labeled`` (index array
    or boolean mask, :func:`as_exclude`'s rules) as a boolean mask over them."""
    unit = unit_rows(as_embeddings(embeddings), "embeddings")
    mask = as_exclude(labeled, unit.shape[0], "labeled")
    return UnitEmbeddings(unit, np.zeros(unit.shape[0], dtype=bool) if mask is None else mask.astype(bool),
                          torch_wrap if is_torch(embeddings) else numpy_wrap)


def numpy_wrap(a: np.ndarray) -> np.ndarray:
    return a


def torch_wrap(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def device_error(name: str, device: Any) -> Exception:
    if getattr(device, "type", "") == "meta":
        return ValueError(f"{name} is a meta-device tensor: it has a shape but no data; pass a materialised tensor")
    if getattr(device, "type", "") == "cuda":
        return ValueError(
            f"{name} is a CUDA tensor ({device}), but this alscale build has no GPU kernels "
            "(alscale._cuda); pass a CPU tensor (tensor.cpu()) or build alscale with a CUDA toolkit"
        )
    return ValueError(f"{name} is on device {device}; alscale runs on CPU tensors (and CUDA ones with a GPU build)")


def as_logits(logits: Any, name: str = "logits", allow_empty: bool = False) -> Logits:
    """Validate shape and dtype of a logits matrix and view it as numpy without copying."""
    if is_torch(logits):
        import torch

        if logits.device.type != "cpu":
            raise device_error(name, logits.device)
        t = logits.detach()
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError(f"{name} must be a floating-point tensor ({_FLOAT_NAMES}), got {t.dtype}")
        _check_rank(name, tuple(t.shape))
        t = t.resolve_conj().resolve_neg()
        if t.dtype == torch.bfloat16:
            array, bf16 = t.view(torch.int16).numpy(), True
        else:
            array, bf16 = t.numpy(), False
        wrap = torch_wrap
    else:
        array = np.asarray(logits)
        if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4, 8):
            raise TypeError(f"{name} must be a floating-point array ({_FLOAT_NAMES}), got {array.dtype}")
        _check_rank(name, array.shape)
        bf16, wrap = False, numpy_wrap
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
    if array.shape[1] == 0:
        raise ValueError(f"{name} have no classes: shape {array.shape}")
    if array.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} have no rows: the pool is empty")
    return Logits(array, bf16, wrap)


def _check_rank(name: str, shape: tuple) -> None:
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (rows, classes), got shape {tuple(shape)}")


_INT64_MAX = 2**63 - 1
MAX_THREADS = 1 << 12


def as_int(value: Any, name: str, minimum: int = 0, hint: str = "", maximum: int = _INT64_MAX) -> int:
    """An integer argument (bools and floats refused) in [minimum, maximum] (int64 by default)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if result < minimum:
        need = "non-negative" if minimum == 0 else f"at least {minimum}"
        raise ValueError(f"{name} must be {need}{hint}, got {result}")
    if result > maximum:
        raise ValueError(f"{name} must be at most {maximum}{hint}, got {result}")
    return result


def as_budget(budget: Any) -> int:
    """A non-negative budget; values beyond int64 are clipped (a budget is clipped to the pool)."""
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, (bool, np.bool_)) and budget > _INT64_MAX:
        return _INT64_MAX
    return as_int(budget, "budget")


def as_threads(num_threads: Any) -> int:
    return as_int(num_threads, "num_threads", hint=" (0 means all cores)", maximum=MAX_THREADS)


def host_numpy(x: Any, name: str) -> np.ndarray:
    if is_torch(x):
        if x.device.type != "cpu":
            raise device_error(name, x.device)
        return x.detach().numpy()
    return np.asarray(x)


def as_exclude(exclude: Any, rows: int, name: str = "exclude") -> np.ndarray | None:
    """A boolean mask or an index array -> a uint8 mask over the rows (None: nothing excluded).
    The rules of :class:`Exclusion`, for a pool whose length is known."""
    e = Exclusion(exclude, rows, name)
    return e.mask(0, rows)


class Exclusion:
    """``exclude`` (or ``labeled``) checked once, by one set of rules for every kind of pool.

    - a boolean array is a mask with one entry per row;
    - an integer array holds row indices in [-rows, rows): negative ones count from the end, as
      in numpy; repeated ones are harmless. A pool whose length is not known before it is read
      (a one-shot iterator of chunks) cannot resolve a negative index: it is refused there;
    - an integer array of length ``rows`` (rows >= 3) that holds only 0 and 1 is refused: it is
      almost surely a 0/1 mask, which as indices would mean the rows {0, 1};
    - floats are refused.

    ``rows`` may be unknown (a stream of chunks): then :meth:`finish` checks what needs it once
    the rows are counted. :meth:`mask` gives the uint8 mask of rows [start, end).
    """

    def __init__(self, exclude: Any, rows: int | None, name: str = "exclude"):
        self.name = name
        self.bool_mask: np.ndarray | None = None
        self.indices: np.ndarray | None = None  # sorted, unique
        self._zero_one = 0  # length of an index array given as nothing but 0s and 1s (a mask look-alike)
        if exclude is None:
            return
        e = host_numpy(exclude, name)
        if e.ndim != 1:
            raise ValueError(f"{name} must be a 1-D index array or boolean mask, got shape {e.shape}")
        if e.dtype == np.bool_:
            self.bool_mask = e.view(np.uint8)
        elif e.size:
            if e.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer row indices or booleans, got {e.dtype}")
            if e.dtype == np.uint64 and e.max() > _INT64_MAX:
                raise ValueError(f"{name} index {int(e.max())} is out of range")
            e = e.astype(np.int64, copy=False)
            low = int(e.min())
            if low >= 0 and e.max() <= 1:
                self._zero_one = e.shape[0]
            if low < 0:
                if rows is None:
                    raise ValueError(
                        f"{name} index {low} is negative, but the pool's length is not known before it is read "
                        "(a one-shot iterator of chunks): give indices from 0, or a boolean mask"
                    )
                if low < -rows:
                    raise ValueError(f"{name} index {low} is out of range for a pool of {rows} rows")
                e = np.where(e < 0, e + rows, e)
            self.indices = np.unique(e)
        if rows is not None:
            self.finish(rows)

    def finish(self, rows: int) -> None:
        """The checks that need the number of rows."""
        name = self.name
        if self.bool_mask is not None and self.bool_mask.shape[0] != rows:
            raise ValueError(f"{name} mask has {self.bool_mask.shape[0]} entries but the pool has {rows} rows")
        e = self.indices
        if e is None:
            return
        if e[-1] >= rows:
            raise ValueError(f"{name} index {int(e[-1])} is out of range for a pool of {rows} rows")
        if rows >= 3 and self._zero_one == rows:
            raise ValueError(
                f"{name} is an integer array of {rows} zeros and ones, one per row: that looks like a 0/1 mask, "
                f"but integer arrays are row indices (here the rows {{{', '.join(map(str, e.tolist()))}}}); "
                f"pass a boolean mask ({name}.astype(bool)) or the indices (numpy.flatnonzero({name}))"
            )

    def mask(self, start: int, end: int) -> np.ndarray | None:
        """uint8 mask of the rows [start, end), or None when none of them is excluded."""
        if self.bool_mask is not None:
            return self.bool_mask[start:end]
        e = self.indices
        if e is None:
            return None
        inside = e[np.searchsorted(e, start) : np.searchsorted(e, end)]
        if inside.size == 0:
            return None
        mask = np.zeros(end - start, dtype=np.uint8)
        mask[inside - start] = 1
        return mask


def as_row_ids(row_ids: Any, rows: int | None) -> np.ndarray:
    """The global pool row of every local row: 1-D, integer, non-negative, all distinct (a row
    counted twice would be selectable twice), one per local row when ``rows`` is known."""
    ids = host_numpy(row_ids, "row_ids")
    if ids.ndim != 1:
        raise ValueError(f"row_ids must be 1-D (one global row id per local row), got shape {ids.shape}")
    if rows is not None and ids.shape[0] != rows:
        raise ValueError(f"row_ids has {ids.shape[0]} entries but the local pool has {rows} rows")
    if ids.size and ids.dtype.kind not in "iu":
        raise TypeError(f"row_ids must be integers, got {ids.dtype}")
    if ids.dtype == np.uint64 and ids.size and ids.max() > _INT64_MAX:
        raise ValueError("row_ids must fit in int64")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size == 0:
        return ids
    if ids.min() < 0:
        raise ValueError("row_ids must be non-negative")
    step = np.diff(ids)
    if not (step > 0).all():  # not strictly increasing: look for a repeat the slow way
        s = np.sort(ids)
        same = np.flatnonzero(s[1:] == s[:-1])
        if same.size:
            raise ValueError(
                f"row_ids gives row id {int(s[same[0]])} to more than one local row: every local row needs its own id"
            )
    return ids


#: From this many classes on, the head's inverse norms are computed pair by pair on demand
#: (``_core.PairNorms``: the weight and a C x C bfloat16 table of lower bounds) instead of held as
#: a C x C float64 table (512 MiB at 8192 classes, 3.2 GB at 20,000). Same selections, bit for bit.
PAIR_CLASSES = 8192


@dataclass(frozen=True)
class HeadNorms:
    """1 / ||w_p - w_c|| for every pair of head rows (+inf where the rows are equal), as
    ``inv * 2**shift``: ``inv`` is the C x C float64 table or, for many classes, a
    ``_core.PairNorms`` that gives the same values on demand; ``shift`` is 0 unless the true values
    leave float64's range (a head with entries near 2^±1000), when ``inv`` holds them scaled by an
    exact power of two — which orders every score r_c = gap * inv exactly as the true values do."""

    inv: Any
    shift: int


def check_weight(weight: Any, classes: int) -> np.ndarray:
    """The head weight as a finite, not all-zero, C-contiguous float64 (C, D) matrix with D >= 1:
    the rules every backend applies. (Equal rows are allowed: their boundary distance is +inf.)"""
    if is_torch(weight):
        import torch

        if weight.device.type == "meta":
            raise device_error("weight", weight.device)
        w = weight.detach().to("cpu", torch.float64).numpy()
    else:
        w = np.asarray(weight)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (classes, features), got shape {w.shape}")
    if w.shape[0] != classes:
        raise ValueError(f"weight has {w.shape[0]} rows but the logits have {classes} classes")
    if w.shape[1] == 0:
        raise ValueError(f"weight has no features: shape {w.shape}")
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weight must be a real-valued array, got {w.dtype}")
    w = np.ascontiguousarray(w, dtype=np.float64)
    check_finite_rows(w, "weight contains NaN or inf")
    if not w.any():
        raise ValueError(
            "weight is all zeros (an untrained or zeroed head?): no decision boundary is defined between any "
            "two classes; pass the trained head's weight, or weight=None for the plain logit gap"
        )
    return w


def head_norms(weight: Any, classes: int, *, table: bool = False) -> HeadNorms | None:
    """The validated head's inverse norms (None without a weight); ``table``: always the C x C
    table (the CUDA kernels and the official loop read it)."""
    if weight is None:
        return None
    return norms_of(check_weight(weight, classes), table=table)


def inverse_norms(weight: Any, classes: int, *, table: bool = False) -> Any:
    """What the kernels read (see :class:`HeadNorms`; None without a weight)."""
    h = head_norms(weight, classes, table=table)
    return None if h is None else h.inv


def norms_of(w: np.ndarray, *, table: bool = False) -> HeadNorms:
    """From the kernel (csrc/head.hpp: Gram matrix in a fixed lane order, direct norms where it
    cancels; no BLAS): the C x C table, or from PAIR_CLASSES classes on (unless ``table``) the
    pairs on demand. Weights beyond 2^±400 are first scaled by a power of two (exact), so the Gram
    matrix never overflows or underflows (such heads always get the table)."""
    from .. import _core

    top = float(np.abs(w).max(initial=0.0))
    e = 0
    if top > 2.0**400 or 0.0 < top < 2.0**-400:
        e = int(np.frexp(top)[1])
        w = np.ldexp(w, -e)  # exact
    if not table and not e and w.shape[0] >= PAIR_CLASSES:
        return HeadNorms(_core.PairNorms(w), 0)
    g = _core.inverse_norms(w)
    if e:
        with np.errstate(over="ignore", under="ignore"):
            true = np.ldexp(g, -e)  # the true values, unless they leave float64's range
        finite = np.isfinite(g)
        if np.isfinite(true[finite]).all() and (true[finite] >= np.finfo(np.float64).tiny).all():
            return HeadNorms(true, 0)
        return HeadNorms(g, -e)
    return HeadNorms(g, 0)


def real_matrix(x: Any, name: str, what: str) -> np.ndarray:
    """``x`` as a 2-D real numpy array (no copy where possible; torch's bfloat16 becomes float32,
    which holds it exactly). ``what`` names the rows in the error ("points", "rows")."""
    if is_torch(x):
        import torch

        if x.device.type != "cpu":
            raise device_error(name, x.device)
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.detach().float()
    a = host_numpy(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D ({what}, features), got shape {tuple(a.shape)}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real-valued array, got {a.dtype}")
    return a


def check_finite_rows(a: np.ndarray, message: str) -> None:
    """Raises ValueError(``message`` + " at row i") for the first row with NaN or inf, in bounded
    chunks (no N x D temporary)."""
    step = max(1, (1 << 22) // max(1, a.shape[1]))
    for s in range(0, a.shape[0], step):
        ok = np.isfinite(a[s : s + step]).all(axis=1)
        if not ok.all():
            raise ValueError(f"{message} at row {s + int(np.argmin(ok))}")


def as_points(x: Any, name: str = "x", min_rows: int = 2) -> np.ndarray:
    """A finite (N, D) real matrix of points as C-contiguous float64 (N >= ``min_rows``, D >= 1)."""
    a = real_matrix(x, name, "points")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} points to cluster, got {a.shape[0]}")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {tuple(a.shape)}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    check_finite_rows(a, f"{name} contains NaN or inf")
    return a


def unit_rows(a: np.ndarray, name: str = "x") -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); a zero row has no cosine distance and is refused."""
    scale = np.abs(a).max(axis=1)  # rows scaled by their largest entry: no overflow in the norm
    if not (scale > 0).all():
        raise ValueError(
            f"{name} row {int(np.argmin(scale > 0))} has zero norm: cosine distance is undefined for it"
        )
    b = a / scale[:, None]
    return np.ascontiguousarray(b / np.sqrt(np.einsum("ij,ij->i", b, b))[:, None], dtype=np.float32)


def _mapping(a: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """The mmap behind a memmap view and the view's byte offset into it (None if not mapped)."""
    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, mmap.mmap):
        return None
    start = np.frombuffer(base, dtype=np.uint8, count=0).__array_interface__["data"][0]
    return base, a.__array_interface__["data"][0] - start


def release_pages(chunk: np.ndarray) -> None:
    """Drop a memmap chunk's pages from this process (they stay in the page cache), so that
    reading a file larger than memory keeps the resident set at one chunk."""
    found = _mapping(chunk)
    if found is None or not hasattr(mmap, "MADV_DONTNEED") or chunk.size == 0:
        return
    mm, offset = found
    page = mmap.PAGESIZE
    nbytes = (chunk.shape[0] - 1) * abs(chunk.strides[0]) + chunk.itemsize * (chunk.shape[1] if chunk.ndim > 1 else 1)
    lo = max(0, offset - offset % page)
    hi = min(len(mm), offset + nbytes)
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


GATHER_ROWS = 2048  # rows gathered from a memmap before the pages they span are let go


def take_rows(a: Any, rows: np.ndarray) -> np.ndarray:
    """``a[rows]`` for sorted row ids, gathered GATHER_ROWS at a time with the pages each block
    spans let go after it: reading a scattered row maps the file pages around it (up to 64 KB),
    so one gather of 65,536 rows of a 2M × 2048 memmap held most of its 8 GB resident."""
    if rows.size <= GATHER_ROWS or not isinstance(a, np.ndarray) or _mapping(a) is None:
        return np.asarray(a[rows])  # (a memmap seen as an ndarray is mapped all the same)
    out = np.empty((rows.size,) + a.shape[1:], dtype=a.dtype)
    for s in range(0, rows.size, GATHER_ROWS):
        part = rows[s : s + GATHER_ROWS]
        out[s : s + part.size] = a[part]
        release_pages(a[int(part.min()) : int(part.max()) + 1])
    return out


def fingerprint(a: Any, *extra: Any) -> bytes:
    """The one fingerprint of the library: 16 bytes (BLAKE2b) of an array's values, read in
    chunks of rows (a memmap stays on disk, a contiguous array is not copied), then of the
    ``repr`` of ``extra`` if given (e.g. the shape, the dtype and settings). The same values and
    extras give the same bytes, whatever the chunking."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(a, np.ndarray) and a.flags.c_contiguous and not isinstance(a, np.memmap) or np.ndim(a) == 0:
        h.update(np.ascontiguousarray(a).data.cast("B"))
    else:
        step = max(1, (64 << 20) // max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * 8))
        for start in range(0, int(a.shape[0]), step):
            part = np.asarray(a[start:start + step])
            h.update(np.ascontiguousarray(part).data.cast("B"))
            release_pages(part)
    if extra:
        h.update(repr(extra).encode())
    return h.digest()


def as_fraction(value: Any, name: str) -> float:
    """A real number in (0, 1] (a recall, a purity): TypeError for a non-number (booleans
    included), ValueError outside the interval, each naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    v = float(value)
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return v


def check_random_state(seed: Any) -> np.random.Generator:
    """The one seed rule of every public function, as a numpy Generator: None (fresh entropy),
    an int in [0, 2^64), or a numpy Generator (used as it is; a BitGenerator or SeedSequence
    seeds a new one). Anything else is a TypeError, a negative or too large int a ValueError."""
    if seed is None or isinstance(seed, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    return np.random.default_rng(as_int(seed, "seed", hint=" (or None, or a numpy Generator)", maximum=2**64 - 1))


def as_seed(seed: Any) -> int:
    """:func:`check_random_state`'s rule, as the 64-bit seed a kernel takes: an int is used as
    it is, a Generator gives one draw, None fresh entropy."""
    if seed is None:
        return int(np.random.default_rng().integers(0, 2**63))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63))
    if isinstance(seed, (np.random.BitGenerator, np.random.SeedSequence)):
        return int(np.random.default_rng(seed).integers(0, 2**63))
    return as_int(seed, "seed", hint=" (or None, or a numpy Generator)", maximum=2**64 - 1)  # any uint64


def as_float32_points(a: np.ndarray, name: str = "x") -> np.ndarray:
    """The points as float32 (the kernels' precision); values beyond float32's range are refused."""
    with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
        out = np.ascontiguousarray(a, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name} row {int(np.argmin(finite))} has values beyond float32's range (|v| > 3.4e38)")
    return out


def as_embeddings(embeddings: Any, rows: int | None = None, name: str = "embeddings") -> np.ndarray:
    """A finite (N, D) float32/float64 C-contiguous numpy array, N >= 1 and D >= 1, holding the
    values exactly: 16-bit floats (torch's bfloat16 included) and 8/16-bit integers become
    float32, 32/64-bit integers float64 (refused beyond 2^53, where float64 would round them)."""
    z = real_matrix(embeddings, name, "rows")
    if rows is not None and z.shape[0] != rows:
        raise ValueError(f"{name} have {z.shape[0]} rows but the pool has {rows}")
    if z.shape[0] == 0:
        raise ValueError(f"{name} have no rows: the pool is empty")
    if z.shape[1] == 0:
        raise ValueError(f"{name} have no features: shape {tuple(z.shape)}")
    wide = z.dtype == np.float64 or (z.dtype.kind in "iu" and z.dtype.itemsize >= 4)
    if z.dtype.kind in "iu" and z.dtype.itemsize == 8 and (z.max() > 2**53 or z.min() < -(2**53)):
        raise ValueError(f"{name} hold integers beyond 2^53, which float64 cannot represent exactly; "
                         "convert them to floating point yourself")
    z = np.ascontiguousarray(z, dtype=np.float64 if wide else np.float32)
    check_finite_rows(z, f"{name} contain NaN or inf")
    return in_float64_range(z)


def in_float64_range(z: np.ndarray) -> np.ndarray:
    """float64 embeddings so large (or small) that squared distances summed over the pool would
    overflow (or underflow) float64, scaled by an exact power of two: every distance scales by
    the same power of four, so every pick (a comparison or a ratio of them) is unchanged.
    float32 values cannot get there (the kernels compute in float64)."""
    if z.dtype != np.float64:
        return z
    top = max(float(z.max()), -float(z.min()))
    if top == 0.0:
        return z
    exponent = int(np.frexp(top)[1])  # top = m * 2^exponent, 0.5 <= m < 1
    # A squared distance is at most 4·D·top², a row's gradient distance 8·D·top², the D² total
    # N times that: keep it below 2^1000; below 2^-400 squares start to lose bits.
    bits = 2 * exponent + math.log2(8.0 * z.shape[1] * z.shape[0])
    if bits <= 1000 and exponent >= -400:
        return z
    return np.ldexp(z, -exponent)


def wrap_like(x: Any, result: np.ndarray):
    """``result`` as the kind of ``x``: a torch tensor for a torch ``x``, else the numpy array."""
    return torch_wrap(result) if is_torch(x) else result
