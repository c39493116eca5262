"""Pools that do not fit in memory: logits read chunk by chunk, from memmaps, iterators or
embeddings and a head, with memory bounded by one chunk plus the selection's O(C·k) state.

Every selection function reads a chunk source (a memmap, an iterable of (n_i, C) chunks, or the
objects made here) one chunk at a time, through the chunked backend (alscale._backend.chunks).
"""

from __future__ import annotations

import warnings

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._backend.arrays import GATHER_ROWS, host_numpy, is_torch, as_int, check_finite_rows
from ._backend.chunks import ChunkedArray, default_chunk_rows, release_pages

__all__ = ["chunked", "logits_from_embeddings", "ChunkedArray", "EmbeddingLogits", "release_pages"]

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


_GATHER_ROWS = GATHER_ROWS  # rows gathered from a memmap before its pages are let go


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
        Rows per chunk; default keeps a chunk of logits and of float32 embeddings together near
        256 MiB (wide embeddings, e.g. 2048-d under a 600-class head, would otherwise take 3.4×
        the logits' bytes).
    """

    chunk_source = True  # read chunk by chunk by every selection function (alscale._backend.chunks)

    def __init__(self, embeddings: Any, weight: Any, bias: Any = None, *, chunk_rows: Any = None):
        try:
            import torch
        except ImportError as err:
            raise ImportError(
                "logits_from_embeddings computes its GEMMs with torch, which is not installed: pip install torch "
                "(or compute the logits chunk by chunk yourself and pass an iterable of chunks)"
            ) from err

        if not is_torch(embeddings) and not isinstance(embeddings, np.ndarray):
            embeddings = np.asarray(embeddings)
        if len(embeddings.shape) != 2:
            raise ValueError(f"embeddings must be 2-D (rows, dims), got shape {tuple(embeddings.shape)}")
        w64 = np.asarray(host_numpy(weight, "weight"))
        if w64.ndim != 2 or w64.shape[1] != embeddings.shape[1] or w64.shape[0] == 0:
            raise ValueError(
                f"weight must have shape (classes, {embeddings.shape[1]}) to match the embeddings, got {tuple(w64.shape)}"
            )
        if w64.dtype.kind not in "fiu":
            raise TypeError(f"weight must be a real-valued array, got {w64.dtype}")
        check_finite_rows(w64, "weight contains NaN or inf")
        w = torch.as_tensor(np.array(w64, dtype=np.float32, order="C"))  # a copy: the head may be a read-only memmap
        b = None
        if bias is not None:
            b64 = np.asarray(host_numpy(bias, "bias"))
            if b64.shape != (w.shape[0],):
                raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(b64.shape)}")
            if b64.dtype.kind not in "fiu":
                raise TypeError(f"bias must be a real-valued array, got {b64.dtype}")
            if not np.isfinite(b64).all():
                raise ValueError(f"bias contains NaN or inf at class {int(np.argmin(np.isfinite(b64)))}")
            b = torch.as_tensor(np.array(b64, dtype=np.float32))
        self.embeddings = embeddings
        self.weight = weight
        self._wt = w.T.contiguous()
        self._bias = b
        self._torch_out = is_torch(embeddings)
        self.chunk_rows = (
            default_chunk_rows(4 * (int(w.shape[0]) + int(w.shape[1]))) if chunk_rows is None else as_int(chunk_rows, "chunk_rows", minimum=1)
        )

    @property
    def num_classes(self) -> int:
        return int(self._wt.shape[1])

    @property
    def shape(self) -> tuple:
        """(N, C): the shape of the logits these chunks make up."""
        return (len(self), self.num_classes)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def __getitem__(self, rows: Any) -> Any:
        """The logits of some rows only — an integer array (e.g. a batch's ids; ascending reads
        a memmap forward) or a slice — computed as the chunks are; a numpy array, or a torch
        tensor for torch embeddings. From a memmap the rows are gathered a block at a time and
        each block's pages let go (the kernel maps up to 64 KB around each row it reads: 20,000
        scattered rows held ~5 GB of file pages in RSS)."""
        if isinstance(rows, slice):
            e = self.embeddings[rows]
            out = self._head(self._as_float32(e))
            if isinstance(e, np.ndarray):
                release_pages(e)
            return out if self._torch_out else out.numpy()
        idx = np.asarray(rows)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise IndexError(f"EmbeddingLogits rows must be a slice or a 1-D integer array, got "
                             f"{type(rows).__name__}" + (f" of dtype {idx.dtype}, shape {idx.shape}"
                                                         if idx.dtype != object else ""))
        n = len(self)
        if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"row index out of range for a pool of {n} rows")
        idx = idx.astype(np.int64) % max(n, 1)
        if self._torch_out:
            import torch

            out = self._head(self._as_float32(self.embeddings[torch.from_numpy(idx)]))
            return out
        blocks = []
        for s in range(0, idx.size, _GATHER_ROWS):
            part = idx[s : s + _GATHER_ROWS]
            blocks.append(self._head(self._as_float32(self.embeddings[part])).numpy())
            if part.size:
                release_pages(self.embeddings[int(part.min()) : int(part.max()) + 1])
        return np.concatenate(blocks) if blocks else np.empty((0, self.num_classes), dtype=np.float32)

    def _as_float32(self, e: Any) -> Any:
        import torch

        if self._torch_out:
            return e.detach().to(torch.float32)
        with warnings.catch_warnings():  # a read-only memmap: torch only reads it (a GEMM input)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
            return torch.from_numpy(np.ascontiguousarray(e)).to(torch.float32)

    def _head(self, z: Any, out: Any = None) -> Any:
        import torch

        if self._bias is None:
            return torch.mm(z, self._wt, out=out)
        return torch.addmm(self._bias, z, self._wt, out=out)

    def __iter__(self) -> Iterator[Any]:
        """The chunks of logits, each a new array: a caller may keep them (``list(pool)``)."""
        return self._chunks(reuse=False)

    def chunks_reusing_buffer(self) -> Iterator[Any]:
        """The same chunks written into one buffer: each chunk is valid only until the next one
        is asked for. For consumers that keep nothing of a chunk (the selection functions read
        every chunk through this), it saves a fresh allocation per chunk, whose pages the
        operating system would otherwise fault in and zero (about a third of a pass's time at
        C = 20,000)."""
        return self._chunks(reuse=True)

    def _chunks(self, reuse: bool) -> Iterator[Any]:
        import torch

        buf = None
        for start in range(0, len(self), self.chunk_rows):
            e = self.embeddings[start : start + self.chunk_rows]
            z = self._as_float32(e)
            out = None
            if reuse:
                if buf is None:
                    buf = torch.empty((min(self.chunk_rows, len(self)), self.num_classes), dtype=torch.float32)
                out = buf[: z.shape[0]]
            out = self._head(z, out)
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
