"""Pools that do not fit in memory: logits read chunk by chunk, from memmaps, iterators or
embeddings and a head, with memory bounded by one chunk plus the selection's O(C·k) state.

A *local pool* is what one process holds: one (N, C) matrix, or an iterable of (n_i, C) chunks,
together with the global row id of each local row (``row_ids``; default: the local position)
and the local rows to skip (``exclude``). :class:`LocalPool` walks it chunk by chunk and hands
every chunk out with its ids and exclusion mask; the selection functions take it from there.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backend.arrays import Logits, _host_numpy, _is_torch, as_exclude, as_int, as_logits, as_row_ids

__all__ = ["chunked", "logits_from_embeddings", "EmbeddingLogits"]

# Bytes of logits per chunk read from a memmap: large enough for full-speed kernels and few
# Python round trips, small enough to bound memory.
CHUNK_BYTES = 256 << 20


def default_chunk_rows(row_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, row_bytes))


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


class ChunkedArray:
    """An (N, C) array (memmap, numpy or CPU torch) seen as consecutive row chunks.

    Re-iterable: each ``iter()`` walks the rows again. Memmap chunks are released after use,
    so selection over a file larger than memory keeps one chunk resident.
    """

    def __init__(self, array: Any, chunk_rows: Any = None):
        if not _is_torch(array) and not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if len(array.shape) != 2:
            raise ValueError(f"logits must be 2-D (rows, classes), got shape {tuple(array.shape)}")
        self.array = array
        row_bytes = int(array.shape[1]) * int(array.element_size() if _is_torch(array) else array.itemsize)
        self.chunk_rows = (
            default_chunk_rows(row_bytes) if chunk_rows is None else as_int(chunk_rows, "chunk_rows", minimum=1)
        )

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __iter__(self) -> Iterator[Any]:
        n = len(self)
        for start in range(0, n, self.chunk_rows):
            chunk = self.array[start : start + self.chunk_rows]
            yield chunk
            if isinstance(chunk, np.ndarray):
                release_pages(chunk)


def chunked(array: Any, chunk_rows: Any = None) -> ChunkedArray:
    """An (N, C) logits array as a re-iterable of row chunks (for the selection functions).

    Memmapped arrays are already read this way by every selection function; use this to choose
    the chunk size, or to stream an in-memory array.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> logits = np.random.default_rng(0).normal(size=(1000, 10))
    >>> bool((alscale.select_margin(alscale.chunked(logits, 128), 5) == alscale.select_margin(logits, 5)).all())
    True
    """
    return ChunkedArray(array, chunk_rows)


class EmbeddingLogits:
    """Logits computed chunk by chunk from embeddings and a linear head, never all at once.

    For pools whose N x C logits would not fit anywhere (Open Images: 9M x 20K classes is 720
    GB in float32) but whose embeddings do, in memory or in a memmap. Each chunk is
    ``embeddings[rows] @ weight.T + bias`` in float32 through torch (BLAS); re-iterable.

    Parameters
    ----------
    embeddings : array_like, numpy memmap or CPU torch tensor, shape (N, D)
    weight : array_like or torch.Tensor, shape (C, D)
        Also the ``weight=`` to give :func:`alscale.select_balanced`.
    bias : array_like or torch.Tensor, shape (C,), optional
    chunk_rows : int, optional
        Rows per chunk; default keeps a chunk of logits near 256 MiB.
    """

    def __init__(self, embeddings: Any, weight: Any, bias: Any = None, *, chunk_rows: Any = None):
        import torch

        if not _is_torch(embeddings) and not isinstance(embeddings, np.ndarray):
            embeddings = np.asarray(embeddings)
        if len(embeddings.shape) != 2:
            raise ValueError(f"embeddings must be 2-D (rows, dims), got shape {tuple(embeddings.shape)}")
        w = torch.as_tensor(_host_numpy(weight, "weight"), dtype=torch.float32)
        if w.ndim != 2 or w.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"weight must have shape (classes, {embeddings.shape[1]}) to match the embeddings, got {tuple(w.shape)}"
            )
        b = None
        if bias is not None:
            b = torch.as_tensor(_host_numpy(bias, "bias"), dtype=torch.float32)
            if b.shape != (w.shape[0],):
                raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(b.shape)}")
        self.embeddings = embeddings
        self.weight = weight
        self._wt = w.T.contiguous()
        self._bias = b
        self._torch_out = _is_torch(embeddings)
        self.chunk_rows = (
            default_chunk_rows(4 * int(w.shape[0])) if chunk_rows is None else as_int(chunk_rows, "chunk_rows", minimum=1)
        )

    @property
    def num_classes(self) -> int:
        return int(self._wt.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def __iter__(self) -> Iterator[Any]:
        import torch

        for start in range(0, len(self), self.chunk_rows):
            e = self.embeddings[start : start + self.chunk_rows]
            z = (e.detach() if self._torch_out else torch.from_numpy(np.ascontiguousarray(e))).to(torch.float32)
            out = torch.mm(z, self._wt) if self._bias is None else torch.addmm(self._bias, z, self._wt)
            if isinstance(e, np.ndarray):
                release_pages(e)
            yield out if self._torch_out else out.numpy()


def logits_from_embeddings(embeddings: Any, weight: Any, bias: Any = None, *, chunk_rows: Any = None) -> EmbeddingLogits:
    """Logits of a linear head over (memmapped) embeddings, as a re-iterable of chunks.

    Examples
    --------
    >>> import numpy as np, alscale
    >>> rng = np.random.default_rng(0)
    >>> z, w = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(8, 16)).astype(np.float32)
    >>> pool = alscale.logits_from_embeddings(z, w, chunk_rows=100)
    >>> full = np.concatenate(list(pool))      # the same logits, all at once (for the check)
    >>> full.shape
    (500, 8)
    >>> bool((alscale.select_balanced(pool, 16, weight=w) == alscale.select_balanced(full, 16, weight=w)).all())
    True
    """
    return EmbeddingLogits(embeddings, weight, bias, chunk_rows=chunk_rows)


def is_chunked(logits: Any) -> bool:
    """True for chunk sources (memmaps, iterables of 2-D chunks); False for one in-memory matrix."""
    if isinstance(logits, (ChunkedArray, EmbeddingLogits, np.memmap)):
        return True
    if isinstance(logits, np.ndarray) or _is_torch(logits) or hasattr(logits, "__array__"):
        return False
    if isinstance(logits, (list, tuple)):
        return len(logits) > 0 and len(getattr(logits[0], "shape", ())) == 2
    return isinstance(logits, Iterable)


@dataclass
class Chunk:
    """One chunk of a local pool: its logits, where it starts among the local rows, the global
    ids of its rows (ids, or offset + arange) and its exclusion mask."""

    x: Logits
    start: int
    ids: np.ndarray | None
    offset: int
    mask: np.ndarray | None


class LocalPool:
    """One process's rows of the pool: a matrix or chunks, their global ids, rows excluded.

    ``passes()`` counts the walks; a one-shot iterator can be walked once only.
    """

    def __init__(self, logits: Any, *, row_ids: Any = None, exclude: Any = None, chunk_rows: Any = None):
        if isinstance(logits, np.memmap) or (chunk_rows is not None and not is_chunked(logits)):
            logits = ChunkedArray(logits, chunk_rows)
        self.source = logits
        self.chunked = is_chunked(logits)
        self.one_shot = isinstance(logits, Iterator)  # generators and other iterators walk once
        self.walks = 0
        self.rows: int | None = None  # known after the first walk
        self.classes: int | None = None
        self.wrap: Any = None
        self._row_ids = row_ids
        self._exclude = exclude
        self._ids: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._excluded_idx: np.ndarray | None = None
        self._error: Exception | None = None
        try:
            self._prepare_exclusions()
        except Exception as err:  # raised by chunks(), where the ranks agree on failures
            self._error = err

    def _prepare_exclusions(self) -> None:
        if not self.chunked:
            return  # checked against the matrix's rows when it is walked
        if self._row_ids is not None:
            ids = _host_numpy(self._row_ids, "row_ids")
            if ids.ndim != 1:
                raise ValueError(f"row_ids must be 1-D, got shape {ids.shape}")
            self._ids = as_row_ids(ids, ids.shape[0])
        if self._exclude is not None:
            e = _host_numpy(self._exclude, "exclude")
            if e.ndim != 1:
                raise ValueError(f"exclude must be a 1-D index array or boolean mask, got shape {e.shape}")
            if e.dtype == np.bool_:
                self._mask = e.view(np.uint8)
            elif e.size:
                if e.dtype.kind not in "iu":
                    raise TypeError(f"exclude must hold integer row indices or booleans, got {e.dtype}")
                e = np.sort(e.astype(np.int64))
                if e[0] < 0:
                    raise ValueError(
                        f"exclude index {int(e.min())} is negative: with chunked logits give indices from 0"
                    )
                self._excluded_idx = e

    @staticmethod
    def _check_length(what: str, n: int | None, rows: int) -> None:
        if n is not None and n != rows:
            raise ValueError(f"{what} has {n} entries but the local pool has {rows} rows")

    def chunks(self) -> Iterator[Chunk]:
        """Walk the local rows once, chunk by chunk."""
        if self.walks and self.one_shot:
            raise RuntimeError(
                "the selection needs another pass over the pool (BASE, with heavy ties or a budget close "
                "to the pool's size), but the logits were a one-shot iterator; pass a re-iterable instead (a list of chunks, "
                "alscale.chunked(memmap), alscale.logits_from_embeddings(...), or an object whose "
                "__iter__ starts over)"
            )
        if self._error is not None:
            raise self._error
        self.walks += 1
        if not self.chunked:
            x = as_logits(self._host(self.source), allow_empty=True)
            self._set_shape(x)
            ids = None if self._row_ids is None else as_row_ids(self._row_ids, x.rows)
            yield Chunk(x, 0, ids, 0, as_exclude(self._exclude, x.rows))
            self.rows = x.rows
            return
        start = 0
        for part in self.source:
            x = as_logits(self._host(part), name="logits chunk", allow_empty=True)
            self._set_shape(x)
            yield self._chunk(x, start, start + x.rows)
            start += x.rows
        self._finish(start)

    def _host(self, part: Any) -> Any:
        """torch CUDA chunks are read through host memory, one chunk at a time (the sharded and
        chunked paths run on the CPU kernels); the result goes back to their device."""
        if _is_torch(part) and part.device.type != "cpu":
            self._device = part.device
            return part.detach().to("cpu")
        return part

    def _set_shape(self, x: Logits) -> None:
        if self.classes is None:
            self.classes, self.wrap = x.classes, x.wrap
            device = getattr(self, "_device", None)
            if device is not None:
                self.wrap = lambda a: x.wrap(a).to(device)
        elif x.classes != self.classes:
            raise ValueError(f"logits chunks disagree on the number of classes: {self.classes} and {x.classes}")

    def _chunk(self, x: Logits, start: int, end: int) -> Chunk:
        ids = None
        if self._ids is not None:
            if end > self._ids.shape[0]:
                raise ValueError(f"row_ids has {self._ids.shape[0]} entries but the local pool has more rows")
            ids = self._ids[start:end]
        mask = None
        if self._mask is not None:
            if end > self._mask.shape[0]:
                raise ValueError(f"exclude mask has {self._mask.shape[0]} entries but the local pool has more rows")
            mask = self._mask[start:end]
        elif self._excluded_idx is not None:
            e = self._excluded_idx  # sorted
            inside = e[np.searchsorted(e, start) : np.searchsorted(e, end)]
            if inside.size:
                mask = np.zeros(end - start, dtype=np.uint8)
                mask[inside - start] = 1
        return Chunk(x, start, ids, start, mask)

    def _finish(self, rows: int) -> None:
        self.rows = rows
        self._check_length("row_ids", None if self._ids is None else self._ids.shape[0], rows)
        self._check_length("exclude mask", None if self._mask is None else self._mask.shape[0], rows)
        e = self._excluded_idx
        if e is not None and e[-1] >= rows:
            raise ValueError(f"exclude index {int(e[-1])} is out of range for a pool of {rows} rows")
