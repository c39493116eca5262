"""Pools that do not fit in memory: logits read chunk by chunk, from memmaps, iterators or
embeddings and a head, with memory bounded by one chunk plus the selection's O(C·k) state.

Every selection function reads a chunk source (a memmap, an iterable of (n_i, C) chunks, or the
objects made here) one chunk at a time, through the chunked backend (alscale._backend.chunks).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ._backend.arrays import _host_numpy, _is_torch, as_int, check_finite_rows

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
        try:
            import torch
        except ImportError as err:
            raise ImportError(
                "logits_from_embeddings computes its GEMMs with torch, which is not installed: pip install torch "
                "(or compute the logits chunk by chunk yourself and pass an iterable of chunks)"
            ) from err

        if not _is_torch(embeddings) and not isinstance(embeddings, np.ndarray):
            embeddings = np.asarray(embeddings)
        if len(embeddings.shape) != 2:
            raise ValueError(f"embeddings must be 2-D (rows, dims), got shape {tuple(embeddings.shape)}")
        w64 = np.asarray(_host_numpy(weight, "weight"))
        if w64.ndim != 2 or w64.shape[1] != embeddings.shape[1] or w64.shape[0] == 0:
            raise ValueError(
                f"weight must have shape (classes, {embeddings.shape[1]}) to match the embeddings, got {tuple(w64.shape)}"
            )
        if w64.dtype.kind not in "fiu":
            raise TypeError(f"weight must be a real-valued array, got {w64.dtype}")
        check_finite_rows(w64, "weight contains NaN or inf")
        w = torch.as_tensor(np.ascontiguousarray(w64, dtype=np.float32))
        b = None
        if bias is not None:
            b64 = np.asarray(_host_numpy(bias, "bias"))
            if b64.shape != (w.shape[0],):
                raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(b64.shape)}")
            if b64.dtype.kind not in "fiu":
                raise TypeError(f"bias must be a real-valued array, got {b64.dtype}")
            if not np.isfinite(b64).all():
                raise ValueError(f"bias contains NaN or inf at class {int(np.argmin(np.isfinite(b64)))}")
            b = torch.as_tensor(np.ascontiguousarray(b64, dtype=np.float32))
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
