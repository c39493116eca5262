"""A local pool read chunk by chunk: what one process holds of the pool — one matrix, a memmap
or an iterable of (n_i, C) chunks — with the global row id of each local row (``row_ids``;
default: the local position) and the local rows to skip (``exclude``), all checked by the rules
of :mod:`alscale._backend.arrays`. Walking it yields :class:`Chunk`\\ s; a kernel's error about a
row inside a chunk is renamed to the pool row."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import Exclusion, Logits, is_torch, as_int, as_logits, as_row_ids, release_pages

_NON_FINITE = re.compile(r"logits contain NaN or inf at row (\d+)$")

# Bytes of logits per chunk read from a memmap: large enough for full-speed kernels and few
# Python round trips, small enough to bound memory.
CHUNK_BYTES = 256 << 20


def default_chunk_rows(row_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, row_bytes))


class ChunkedArray:
    """An (N, C) array (memmap, numpy or CPU torch) seen as consecutive row chunks.

    Re-iterable: each ``iter()`` walks the rows again. Memmap chunks are released after use,
    so selection over a file larger than memory keeps one chunk resident.
    """

    chunk_source = True  # read chunk by chunk by every selection function

    def __init__(self, array: Any, chunk_rows: Any = None):
        if not is_torch(array) and not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if len(array.shape) != 2:
            raise ValueError(f"logits must be 2-D (rows, classes), got shape {tuple(array.shape)}")
        self.array = array
        row_bytes = int(array.shape[1]) * int(array.element_size() if is_torch(array) else array.itemsize)
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


def is_chunked(logits: Any) -> bool:
    """True for chunk sources (memmaps, iterables of 2-D chunks); False for one in-memory matrix."""
    if isinstance(logits, np.memmap) or getattr(type(logits), "chunk_source", False):
        return True
    if isinstance(logits, np.ndarray) or is_torch(logits) or hasattr(logits, "__array__"):
        return False
    if isinstance(logits, (list, tuple)):
        return len(logits) > 0 and len(getattr(logits[0], "shape", ())) == 2
    return isinstance(logits, Iterable)




@dataclass
class Chunk:
    """One chunk of a local pool: its logits, its first local row, the global ids of its rows
    (``ids``; None: ``start + arange``, the local rows are the pool rows) and its exclusion mask."""

    x: Logits
    start: int
    ids: np.ndarray | None
    mask: np.ndarray | None

    def pool_row(self, row: int) -> int:
        """The global pool row of the chunk's row ``row``."""
        return int(self.ids[row]) if self.ids is not None else self.start + row

    @contextmanager
    def rows_named(self):
        """Kernel errors about a row of this chunk name the pool row instead."""
        try:
            yield
        except ValueError as err:
            m = _NON_FINITE.match(str(err))
            if m is None:
                raise
            raise ValueError(f"logits contain NaN or inf at row {self.pool_row(int(m[1]))}") from None


def _known_rows(source: Any, chunked: bool) -> int | None:
    """The local pool's row count where it is known before reading (None for an iterator)."""
    if not chunked:
        return int(source.shape[0]) if hasattr(source, "shape") else len(source)
    if getattr(type(source), "chunk_source", False):  # ChunkedArray, EmbeddingLogits: their rows
        return len(source)
    if isinstance(source, (list, tuple)) and all(hasattr(p, "shape") for p in source):
        return sum(int(p.shape[0]) for p in source)
    return None


class LocalPool:
    """One process's rows of the pool. ``walks`` counts the passes; a one-shot iterator can be
    walked once only. Errors found before the walk are raised by :meth:`chunks` (where the ranks
    of a group agree on failures)."""

    def __init__(self, logits: Any, *, row_ids: Any = None, exclude: Any = None):
        if isinstance(logits, np.memmap):
            logits = ChunkedArray(logits)
        self.source = logits
        self.chunked = is_chunked(logits)
        self.one_shot = isinstance(logits, Iterator)  # generators and other iterators walk once
        self.walks = 0
        self.rows: int | None = None  # known after the first walk
        self.classes: int | None = None
        self.wrap: Any = None
        self._device: Any = None
        self._ids: np.ndarray | None = None
        self.exclude = Exclusion(None, None)
        self._error: Exception | None = None
        try:
            known = _known_rows(logits, self.chunked)
            self.exclude = Exclusion(exclude, known)
            if row_ids is not None:
                self._ids = as_row_ids(row_ids, known)
        except Exception as err:  # raised by chunks(), where the ranks agree on failures
            self._error = err

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
        # a source that can write its chunks into one buffer does so: nothing here keeps a chunk
        # past the next one (the kernels copy what they keep; tests/test_pool.py checks this)
        reusing = getattr(self.source, "chunks_reusing_buffer", None)
        parts = [self.source] if not self.chunked else self.source if reusing is None else reusing()
        name = "logits" if not self.chunked else "logits chunk"
        start = 0
        for part in parts:
            x = as_logits(self._host(part), name=name, allow_empty=True)
            self._set_shape(x)
            end = start + x.rows
            ids = None
            if self._ids is not None:
                if end > self._ids.shape[0]:
                    raise ValueError(f"row_ids has {self._ids.shape[0]} entries but the local pool has more rows")
                ids = self._ids[start:end]
            if self.exclude.bool_mask is not None and end > self.exclude.bool_mask.shape[0]:
                raise ValueError(
                    f"exclude mask has {self.exclude.bool_mask.shape[0]} entries but the local pool has more rows"
                )
            yield Chunk(x, start, ids, self.exclude.mask(start, end))
            start = end
        self.rows = start
        if self._ids is not None and self._ids.shape[0] != start:
            raise ValueError(f"row_ids has {self._ids.shape[0]} entries but the local pool has {start} rows")
        self.exclude.finish(start)

    def _host(self, part: Any) -> Any:
        """torch CUDA chunks are read through host memory, one chunk at a time (chunked and
        sharded pools run on the CPU kernels); the result goes back to their device."""
        if is_torch(part) and part.device.type != "cpu":
            self._device = part.device
            return part.detach().to("cpu")
        return part

    def _set_shape(self, x: Logits) -> None:
        if self.classes is None:
            self.classes, self.wrap = x.classes, x.wrap
            if self._device is not None:
                device = self._device
                self.wrap = lambda a: x.wrap(a).to(device)
        elif x.classes != self.classes:
            raise ValueError(f"logits chunks disagree on the number of classes: {self.classes} and {x.classes}")
