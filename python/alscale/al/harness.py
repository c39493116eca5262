"""alscale's one benchmark harness: data, timing, memory and output in one place.

Every benchmark of the project stands on it: ``alscale bench --suite NAME`` (the suites are in
:mod:`alscale.al.suites`), the pytest-benchmark suites and the scripts in ``benchmarks/``. It
needs numpy alone; torch is imported only by a case that runs a torch peer.

Data (deterministic: the same parameters and seed give the same arrays on any thread count)
    :func:`gaussian` — i.i.d. normal rows (structureless logits or embeddings); :func:`blobs` —
    Gaussian blobs, separated (``noise=0.15``) or overlapping (:data:`HARD_BLOBS`: 64-d, 20,000
    centres, noise 0.8); :func:`make_data` — ImageNet-like
    logits of a trained head; :func:`openimages_embeddings` — an Open-Images-like pool of
    embeddings with a 20,000-class linear head (the pool as a memmap when ``path`` is given);
    :func:`mc_samples` / :func:`mc_sample_stream` — MC-dropout-like logits (T, N, C), as one
    array or one sample at a time; :func:`fashion_mnist` — a real data
    set (the pixels of Fashion-MNIST's training images, float32 in [0, 1]).
    :func:`generate` builds any of them from a :class:`DataSpec` (a name and its parameters),
    which is what a case names and what the child process of a case rebuilds (or reads from the
    run's cache folder: the first case that needs a data set writes it there).
Time
    :func:`time_call`: ``warmup`` untimed calls, then ``repeat`` timed ones (fewer past
    ``max_time`` seconds, at least one); a :class:`Timing` holds every time and gives the median,
    min and max. Modules a case needs (torch, faiss, ...) are imported before its clock starts.
Memory
    One measure: the peak resident set (``VmHWM`` of ``/proc/self/status``, Linux) of a fresh
    child process that runs one case (:func:`run_case_in_child`: ``python -m alscale.al.harness``,
    fork + exec, so the high-water mark is the child's own — ``ru_maxrss`` would carry the
    parent's over exec). It includes the interpreter, the imports and the case's data; the
    resident set just before the first timed call is reported beside it (``base_rss``), so the
    case's own working memory is the difference. Pages of a memmapped pool count while mapped
    (file-backed, reclaimable: alscale's chunk sources release them chunk by chunk, a plain numpy
    or torch loop over the memmap does not). ``run_suite(isolate=False)`` runs the cases in the
    calling process (the fast tests): no memory figure then. :func:`peak_rss` reads it (``ru_maxrss`` where
    there is no ``/proc``); :func:`reset_peak_rss` lowers it, for a peak within one process (the
    pytest-benchmark suites record each test's this way). Before a suite starts, :func:`available_memory` (``MemAvailable`` of
    ``/proc/meminfo``) is compared with the suite's estimate, and a suite that will not fit is
    refused.
Output
    :func:`format_table` (a readable table, one block per group), :func:`write_json` (the machine,
    versions, load average and every figure), :func:`compare_runs` (``--compare old.json``: each
    row's median against the old run's, regressions beyond a threshold flagged).
    :func:`run_script` is what a script in ``benchmarks/`` calls: its suite in child processes, the
    load average before and after, the table, the JSON.

A case is a :class:`Case`: its group (rows measured against each other), its method name, its
role (``floor``, ``alscale`` or ``peer``), its data set, a ``setup(data) -> callable`` (untimed
set-up; the callable is what is timed), and for a peer a ``check(data, ours, theirs)`` that
compares its result with alscale's row of the same group (``(ok, verdict)``) where the peer
computes the same rule. A :class:`Suite` is a name, its data specs and its cases.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

import numpy as np

__all__ = [
    "HARD_BLOBS",
    "SIZES",
    "BenchData",
    "BenchSize",
    "Case",
    "DataSpec",
    "Suite",
    "Timing",
    "available_memory",
    "blobs",
    "cnn_features",
    "compare_runs",
    "current_rss",
    "env_size",
    "fashion_mnist",
    "format_table",
    "gaussian",
    "generate",
    "machine_info",
    "make_data",
    "mc_sample_stream",
    "mc_samples",
    "openimages_embeddings",
    "peak_rss",
    "reset_peak_rss",
    "run_script",
    "run_suite",
    "time_call",
    "write_json",
]

_GEN_CHUNK_ROWS = 16_384  # fixed, so the data depends only on the parameters and the seed


def _threads(threads: int) -> int:
    return threads if threads > 0 else (os.cpu_count() or 1)


def _chunked_fill(n: int, seed_seq: np.random.SeedSequence, fill: Callable, threads: int = 0) -> None:
    """Calls ``fill(a, b, rng)`` for fixed row chunks [a, b), each with its own generator spawned
    from ``seed_seq``, on ``threads`` threads: the result never depends on the thread count."""
    starts = list(range(0, n, _GEN_CHUNK_ROWS))
    seeds = seed_seq.spawn(len(starts))

    def one(k: int) -> None:
        a = starts[k]
        fill(a, min(a + _GEN_CHUNK_ROWS, n), np.random.default_rng(seeds[k]))

    with ThreadPoolExecutor(max_workers=_threads(threads)) as pool:
        list(pool.map(one, range(len(starts))))


# ============================================================================================
# Data
# ============================================================================================

#: The hard case of the kNN graph and of HAC: overlapping clusters (a point's nearest
#: neighbours are spread over many blobs). ``blobs(n, **HARD_BLOBS)``; suites that shrink N keep
#: the points per centre (n / 20,000 at their full size) by scaling ``centres`` with N.
HARD_BLOBS = {"dim": 64, "centres": 20_000, "noise": 0.8}


def blobs(
    n: int,
    dim: int = 64,
    centres: int = 100,
    noise: float = 0.15,
    seed: int = 0,
    *,
    out: Optional[np.ndarray] = None,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: ``centres`` centres ~ N(0, I_dim), each point a uniformly drawn centre plus
    ``noise`` · N(0, I_dim), float32.

    Parameters
    ----------
    n, dim : int
        Points and their dimension.
    centres : int
        Blob centres. The typical distance between two centres is √(2·dim) and a point's distance
        to its centre ≈ noise·√dim, so ``noise`` = 0.15 gives well-separated blobs and 0.5 or
        more blobs that overlap (:data:`HARD_BLOBS`: 64-d, 20,000 centres, noise 0.8).
    noise : float
        Standard deviation of the points around their centre.
    seed : int
        Same (n, dim, centres, noise, seed) → same points, whatever ``threads``.
    out : array (n, dim) float32, optional
        Where to write the points (e.g. a ``numpy.lib.format.open_memmap``).

    Returns
    -------
    (x, labels) : float32 (n, dim) and int64 (n,) — the points and the index of their centre.
    """
    n, dim, centres = int(n), int(dim), int(centres)
    if n < 1 or dim < 1 or centres < 1:
        raise ValueError(f"blobs needs n, dim, centres >= 1, got {n}, {dim}, {centres}")
    root = np.random.SeedSequence(seed)
    centre_seed, label_seed, noise_seed = root.spawn(3)
    c = np.random.default_rng(centre_seed).standard_normal((centres, dim), dtype=np.float32)
    labels = np.random.default_rng(label_seed).integers(0, centres, n)
    x = np.empty((n, dim), dtype=np.float32) if out is None else out
    if x.shape != (n, dim) or x.dtype != np.float32:
        raise ValueError(f"out must be float32 ({n}, {dim}), got {x.dtype} {x.shape}")
    scale = np.float32(noise)

    def fill(a: int, b: int, rng: np.random.Generator) -> None:
        block = rng.standard_normal((b - a, dim), dtype=np.float32)
        block *= scale
        block += c[labels[a:b]]
        x[a:b] = block

    _chunked_fill(n, noise_seed, fill, threads)
    return x, labels


def gaussian(
    n: int,
    dim: int,
    seed: int = 0,
    *,
    scale: float = 1.0,
    shift: float = 0.0,
    out: Optional[np.ndarray] = None,
    threads: int = 0,
) -> np.ndarray:
    """i.i.d. N(shift, scale²) float32 rows (n, dim): structureless logits (the worst case of a
    top-k: no row stands out) or embeddings; a negative ``shift`` gives multi-label-like logits
    (most classes absent: sigmoid(z) mostly below 1/2). Same (n, dim, seed, scale, shift) → same
    array, whatever ``threads``; ``out`` (e.g. a memmap) receives the rows chunk by chunk."""
    n, dim = int(n), int(dim)
    x = np.empty((n, dim), dtype=np.float32) if out is None else out
    if x.shape != (n, dim) or x.dtype != np.float32:
        raise ValueError(f"out must be float32 ({n}, {dim}), got {x.dtype} {x.shape}")
    factor, offset = np.float32(scale), np.float32(shift)

    def fill(a: int, b: int, rng: np.random.Generator) -> None:
        block = rng.standard_normal((b - a, dim), dtype=np.float32)
        if scale != 1:
            block *= factor
        if shift:
            block += offset
        x[a:b] = block

    _chunked_fill(n, np.random.SeedSequence(seed), fill, threads)
    return x


@dataclass(frozen=True)
class BenchSize:
    """Shape of a selection problem: ``n`` pool rows, ``c`` classes, ``d`` embedding width,
    ``budget`` rows to select."""

    name: str
    n: int
    c: int
    d: int
    budget: int

    def scaled(self, scale: float) -> "BenchSize":
        """N and B times ``scale`` (at least 1 row, and B at least 1), C and D unchanged."""
        if scale == 1:
            return self
        return BenchSize(self.name, n=max(2, round(self.n * scale)), c=self.c, d=self.d,
                         budget=max(1, round(self.budget * scale)))


SIZES = {
    # ImageNet-1k train set as the pool, a ResNet-50 head (2048 features), 10K labels a round.
    "imagenet": BenchSize("imagenet", n=1_281_167, c=1000, d=2048, budget=10_000),
    # Small enough for CI (well under a second per method), large enough to exercise every path.
    "small": BenchSize("small", n=20_000, c=100, d=64, budget=500),
}


@dataclass
class BenchData:
    """Synthetic pool: fp32 ``logits`` (n, c), the head's ``weight`` (c, d), ``labels`` (n,)."""

    size: BenchSize
    logits: np.ndarray
    weight: np.ndarray
    labels: np.ndarray
    seed: int

    @property
    def budget(self) -> int:
        return self.size.budget

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes)


def env_size(default: str = "small") -> str:
    """The size the pytest-benchmark suites run at: ``ALSCALE_BENCH_SIZE`` (a key of
    :data:`SIZES`; ``default`` when unset). ValueError names the allowed values."""
    size = os.environ.get("ALSCALE_BENCH_SIZE", default)
    if size not in SIZES:
        raise ValueError(f"ALSCALE_BENCH_SIZE must be one of {sorted(SIZES)}, got {size!r}")
    return size


def _resolve_size(size: "str | BenchSize") -> BenchSize:
    if isinstance(size, BenchSize):
        return size
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown benchmark size {size!r}; expected one of {sorted(SIZES)}") from None


def make_data(size: "str | BenchSize" = "small", *, seed: int = 0, threads: int = 0) -> BenchData:
    """ImageNet-like logits: the structure of a trained classifier's, without an N×D×C GEMM.

    Each row is standard normal noise plus a bump on its "true" class. True classes follow a
    long-tailed (Zipf, exponent 1) distribution over a random permutation of the classes, and
    the bump is Gamma(2, 2) distributed (mean 4), so some rows are confidently classified,
    some are wrong and many are near a decision boundary, as in an active-learning round.
    The head's weight is standard normal / sqrt(d).

    Memory: the logits plus O(n) (the noise is written in place, chunk by chunk, on ``threads``
    threads, each chunk from its own seeded generator: same ``seed`` → same data).
    """
    sz = _resolve_size(size)
    n, c, d = sz.n, sz.c, sz.d
    root = np.random.SeedSequence(seed)
    meta_seed, weight_seed, noise_seed = root.spawn(3)
    meta = np.random.default_rng(meta_seed)

    ranks = meta.permutation(c)
    prior = 1.0 / (ranks + 1.0)
    prior /= prior.sum()
    labels = meta.choice(c, size=n, p=prior).astype(np.int64)
    bumps = meta.gamma(2.0, 2.0, size=n).astype(np.float32)

    weight = np.random.default_rng(weight_seed).standard_normal((c, d), dtype=np.float32)
    weight /= np.float32(math.sqrt(d))

    logits = np.empty((n, c), dtype=np.float32)

    def fill(a: int, b: int, rng: np.random.Generator) -> None:
        block = logits[a:b]
        rng.standard_normal(dtype=np.float32, out=block)
        block[np.arange(b - a), labels[a:b]] += bumps[a:b]

    _chunked_fill(n, noise_seed, fill, threads)
    return BenchData(size=sz, logits=logits, weight=weight, labels=labels, seed=seed)


def openimages_embeddings(
    n: int,
    dim: int = 256,
    classes: int = 20_000,
    *,
    seed: int = 0,
    path: Optional[str] = None,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An Open-Images-like pool: ``n`` embeddings (float32 (n, dim)) and a linear head of
    ``classes`` classes (weight (classes, dim) float32, bias (classes,) float32).

    The embeddings are blobs, one centre per class (noise 0.5: classes overlap), so the logits
    ``z Wᵀ + b`` of the head — whose rows are the class centres / √dim — put each row near a few
    classes, as a multi-label head's do. With ``path`` the pool is written to that ``.npy`` file
    chunk by chunk and returned as a copy-on-write memmap (at 9M × 256 it is 9.2 GB; "c", not "r":
    ``logits_from_embeddings`` hands its chunks to ``torch.from_numpy``, which warns on read-only
    arrays).
    """
    root = np.random.SeedSequence(seed)
    blob_seed, head_seed = root.spawn(2)
    blob_int = int(blob_seed.generate_state(1)[0])
    out = None
    if path is not None:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(int(n), int(dim)))
    x, _ = blobs(n, dim, classes, 0.5, blob_int, out=out, threads=threads)
    # the blobs' centres (blobs draws them from the first child of its seed), one per class
    centres = np.random.default_rng(np.random.SeedSequence(blob_int).spawn(3)[0]).standard_normal(
        (classes, dim), dtype=np.float32)
    weight = centres / np.float32(math.sqrt(dim))
    bias = np.random.default_rng(head_seed).normal(-2.0, 0.5, classes).astype(np.float32)
    if out is not None:
        out.flush()
        del x, out
        x = np.load(path, mmap_mode="c")  # copy-on-write: writable to torch.from_numpy, never written
    return x, weight, bias


def cnn_features(
    n: int,
    dim: int = 2048,
    clusters: int = 20_000,
    classes: int = 600,
    *,
    latent: int = 128,
    noise: float = 0.8,
    seed: int = 0,
    path: Optional[str] = None,
    dtype: Any = np.float16,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A pool shaped like a CNN's pooled features, for the paper-scale pipeline: ``n`` rows of
    ``dim`` non-negative features (ReLU of a fixed random projection of ``latent``-d points), the
    points overlapping Gaussian blobs (:func:`blobs`' centres and ``noise``; at 0.8 a point's
    neighbours spread over several blobs) with **long-tailed** sizes (blob j drawn with weight
    1 / (j + 10): at 9M × 20,000 blobs the largest has about 120,000 rows, the smallest about 60),
    and a multi-label head of ``classes`` sigmoids whose class c is the mean projected centre of
    the blobs j ≡ c (mod classes), scaled so that a row's nearest classes score above 0 (bias −4).

    Written chunk by chunk to ``path`` (a ``.npy``, ``dtype`` float16 by default: 9M × 2048 is
    37 GB) and returned as a read-only memmap, or in memory without ``path``.

    Returns
    -------
    (x, labels, weight, bias): (n, dim) ``dtype``, int64 (n,) blob of each row, float32
    (classes, dim) and (classes,).
    """
    n, dim, clusters, classes, latent = int(n), int(dim), int(clusters), int(classes), int(latent)
    if min(n, dim, clusters, classes, latent) < 1:
        raise ValueError(f"cnn_features needs positive sizes, got n={n}, dim={dim}, clusters={clusters}, "
                         f"classes={classes}, latent={latent}")
    root = np.random.SeedSequence(seed)
    centre_seed, label_seed, project_seed, noise_seed = root.spawn(4)
    centres = np.random.default_rng(centre_seed).standard_normal((clusters, latent), dtype=np.float32)
    weights = 1.0 / (np.arange(clusters) + 10.0)
    labels = np.random.default_rng(label_seed).choice(clusters, n, p=weights / weights.sum())
    proj = np.random.default_rng(project_seed).standard_normal((latent, dim), dtype=np.float32)
    proj /= np.float32(math.sqrt(latent))
    x = (np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, dim)) if path is not None
         else np.empty((n, dim), dtype=dtype))
    scale = np.float32(noise)

    def fill(a: int, b: int, rng: np.random.Generator) -> None:
        u = rng.standard_normal((b - a, latent), dtype=np.float32)
        u *= scale
        u += centres[labels[a:b]]
        x[a:b] = np.maximum(_product(u, proj), 0)

    _chunked_fill(n, noise_seed, fill, threads)
    protos = np.maximum(_product(centres, proj), 0)
    weight = np.zeros((classes, dim), dtype=np.float64)
    np.add.at(weight, np.arange(clusters) % classes, protos)
    norms = np.linalg.norm(weight, axis=1, keepdims=True)
    mean_norm = float(np.linalg.norm(protos, axis=1).mean())
    weight = (6.0 * weight / np.where(norms > 0, norms, 1.0) / mean_norm).astype(np.float32)
    bias = np.full(classes, -4.0, dtype=np.float32)
    if path is not None:
        x.flush()
        del x
        x = np.load(path, mmap_mode="r")
    return x, labels, weight, bias


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in float32 through torch where it is installed (numpy's bundled OpenBLAS crashes on
    some large products on these CPUs), else numpy."""
    try:
        import torch
    except ImportError:
        return a @ b
    return torch.mm(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))).numpy()


def mc_sample_stream(samples: int, n: int, classes: int, *, seed: int = 0, threads: int = 0) -> Iterator[np.ndarray]:
    """The samples of :func:`mc_samples` one at a time (float32 (n, classes) each, made on the fly:
    memory 2 · n · classes), for streamed (iterable-over-T) benchmarks: the same values."""
    root = np.random.SeedSequence(seed)
    base_seed, noise_seed = root.spawn(2)
    base = np.empty((n, classes), dtype=np.float32)

    def fill_base(a: int, b: int, rng: np.random.Generator) -> None:
        rng.standard_normal(dtype=np.float32, out=base[a:b])
        base[a:b] *= 2

    _chunked_fill(n, base_seed, fill_base, threads)
    for s in noise_seed.spawn(samples):
        out = np.empty((n, classes), dtype=np.float32)

        def fill(a: int, b: int, rng: np.random.Generator, out: np.ndarray = out) -> None:
            rng.standard_normal(dtype=np.float32, out=out[a:b])
            out[a:b] += base[a:b]

        _chunked_fill(n, s, fill, threads)
        yield out


def mc_samples(samples: int, n: int, classes: int, *, seed: int = 0, threads: int = 0) -> np.ndarray:
    """MC-dropout-like logits, float32 (samples, n, classes): a per-row signal 2·N(0, 1) shared by
    the samples plus per-sample N(0, 1) noise (rows where the samples disagree have high BALD)."""
    out = np.empty((samples, n, classes), dtype=np.float32)
    for t, x in enumerate(mc_sample_stream(samples, n, classes, seed=seed, threads=threads)):
        out[t] = x
    return out


def fashion_mnist(n: Optional[int] = None, *, data_dir: Optional[str] = None, seed: int = 0):
    """The real data set hook: Fashion-MNIST's training images as float32 pixels (N, 784) in
    [0, 1] and their labels (N,) int64 — the first ``n`` rows of a seeded permutation when ``n`` is
    given. Reads the IDX files of ``data_dir`` (default ``/usr/share/datasets/fashion-mnist``;
    Debian: ``apt-get install dataset-fashion-mnist``) with :func:`alscale.al.datasets.load_fashion_mnist`;
    FileNotFoundError says how to get them."""
    from .datasets import load_fashion_mnist

    data = load_fashion_mnist(data_dir)
    x, y = data.x, data.y
    if n is not None and n < len(y):
        rows = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
        x, y = x[rows], y[rows]
    return (x.reshape(len(x), -1).astype(np.float32) / np.float32(255)), y.astype(np.int64)


@dataclass(frozen=True)
class DataSpec:
    """A data set by name and parameters: ``generate(spec)`` builds it.

    Names: ``logits`` (:func:`make_data`; params n, c, d, budget, seed), ``gaussian``
    (:func:`gaussian`: an array ``x``), ``blobs`` (:func:`blobs`), ``embeddings`` (:func:`openimages_embeddings`, as a memmap in the cache
    folder), ``mc`` (:func:`mc_samples`), ``fashion-mnist`` (:func:`fashion_mnist`).
    ``nbytes`` is the memory it holds (the memmap's file is not counted: it is paged).
    """

    kind: str
    params: tuple = ()
    nbytes: int = 0
    mapped_bytes: int = 0

    @staticmethod
    def of(kind: str, nbytes: int = 0, mapped_bytes: int = 0, **params) -> "DataSpec":
        return DataSpec(kind, tuple(sorted(params.items())), int(nbytes), int(mapped_bytes))

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    @property
    def key(self) -> str:
        text = json.dumps([self.kind, self.params])
        return f"{self.kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "params": self.kwargs, "nbytes": self.nbytes, "mapped_bytes": self.mapped_bytes}


def generate(spec: DataSpec, cache: Optional[str] = None) -> dict:
    """The data set of ``spec`` as a dict of arrays (read from / written to ``cache`` when given:
    ``cache/<key>/<name>.npy``; memmapped pools stay memmaps)."""
    folder = Path(cache) / spec.key if cache else None
    mapped = {"embeddings": ("x",)}.get(spec.kind, ())
    if folder is not None and (folder / "done").exists():
        return {p.stem: np.load(p, mmap_mode="c" if p.stem in mapped else None)
                for p in sorted(folder.glob("*.npy"))}
    kw = spec.kwargs
    if spec.kind == "logits":
        d = make_data(BenchSize("logits", kw["n"], kw["c"], kw["d"], kw["budget"]), seed=kw.get("seed", 0))
        out = {"logits": d.logits, "weight": d.weight, "labels": d.labels}
    elif spec.kind == "gaussian":
        out = {"x": gaussian(**kw)}
    elif spec.kind == "blobs":
        x, labels = blobs(**kw)
        out = {"x": x, "labels": labels}
    elif spec.kind == "embeddings":
        if folder is None:
            tmp = tempfile.mkdtemp(prefix="alscale-bench-")
            folder = Path(tmp) / spec.key
        folder.mkdir(parents=True, exist_ok=True)
        x, w, b = openimages_embeddings(path=str(folder / "x.npy"), **kw)
        out = {"x": x, "weight": w, "bias": b}
    elif spec.kind == "mc":
        out = {"samples": mc_samples(**kw)}
    elif spec.kind == "fashion-mnist":
        x, y = fashion_mnist(**kw)
        out = {"x": x, "labels": y}
    else:
        raise ValueError(f"unknown data kind {spec.kind!r}")
    if cache is not None and folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in out.items():
            if name not in mapped:
                np.save(folder / f"{name}.npy", arr)
        (folder / "done").write_text("")
    return out


# ============================================================================================
# Time and memory
# ============================================================================================


@dataclass
class Timing:
    """Seconds of each timed call (warm-up calls excluded): wall clock (``times``) and the CPU
    seconds of every thread of the process (``cpu``, ``time.process_time``). On a loaded machine
    the CPU time shows what a call costs apart from waiting for a core."""

    times: list
    cpu: list = field(default_factory=list)

    @property
    def cpu_median(self) -> Optional[float]:
        return statistics.median(self.cpu) if self.cpu else None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def time_call(
    fn: Callable[[], Any], repeat: int = 5, *, warmup: int = 1, max_time: Optional[float] = None
) -> tuple[Timing, Any]:
    """``warmup`` untimed calls of ``fn``, then ``repeat`` timed ones (``time.perf_counter``);
    returns the :class:`Timing` (wall and CPU seconds of each timed call) and the last result.

    ``max_time`` (seconds): no further call starts once the calls so far (warm-up included) plus
    one more would pass it — at least one timed call is always made — so a slow case at a large
    scale is timed fewer times (``Timing.times`` says how many)."""
    result = None
    start = time.perf_counter()
    last = 0.0
    for _ in range(max(0, int(warmup))):
        t0 = time.perf_counter()
        result = fn()
        last = time.perf_counter() - t0
    times: list = []
    cpu: list = []
    for _ in range(max(1, int(repeat))):
        if times and max_time is not None and time.perf_counter() - start + last > max_time:
            break
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        last = time.perf_counter() - t0
        cpu.append(time.process_time() - c0)
        times.append(last)
    return Timing(times, cpu), result


def _status_kib(field_name: str, pid: Any = "self") -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """This process's peak resident set in bytes: ``VmHWM`` (Linux), else ``ru_maxrss``.
    Measured in the fresh child process of one case, it is that case's high-water mark."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def watch_peak_rss(pid: int, interval: float = 0.1) -> Callable[[], Optional[int]]:
    """Watches another process's high-water mark (its ``VmHWM``, read every ``interval`` seconds
    on a thread) while it runs; the returned function stops the watch and gives the last reading
    in bytes (None where there is no /proc). For a child started by ``subprocess``: ``wait4``'s
    ``ru_maxrss`` would carry the parent's resident set over the fork and exec."""
    import threading

    seen: list = [None]
    stop = threading.Event()

    def poll() -> None:
        while True:
            kib = _status_kib("VmHWM", pid)
            if kib is not None:
                seen[0] = kib * 1024
            if stop.wait(interval):
                return

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()

    def done() -> Optional[int]:
        stop.set()
        thread.join()
        return seen[0]

    return done


def reset_peak_rss() -> bool:
    """Lowers this process's high-water mark (``VmHWM``) to its resident set now (Linux: writes
    5 to ``/proc/self/clear_refs``), so that :func:`peak_rss` afterwards is the peak of what runs
    next, in-process (the pytest-benchmark suites). False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss() -> Optional[int]:
    """This process's resident set now, in bytes (``VmRSS``; None where there is no /proc)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def available_memory() -> Optional[int]:
    """Bytes a new process can take without swapping: ``MemAvailable`` of ``/proc/meminfo``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """Where a figure was measured: CPU, cores, memory, load average, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    from .. import __version__

    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1) if mem else None,
        "available_gib": round((available_memory() or 0) / 2**30, 1),
        "load_average": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "alscale": __version__,
    }
    for name in ("torch", "scipy", "faiss", "fastcluster", "baal"):
        info[name] = _version_of(name)
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def _version_of(module: str) -> Optional[str]:
    from importlib import metadata

    dist = {"faiss": "faiss-cpu"}.get(module, module)
    for name in (dist, module, "faiss-gpu" if module == "faiss" else module):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


# ============================================================================================
# Cases and suites
# ============================================================================================


Check = Callable[[dict, dict, dict], "tuple[Optional[bool], str]"]


@dataclass
class Case:
    """One row of a suite.

    group : rows compared with each other (e.g. "margin B=10,000"); method : the row's name;
    role : "floor" (one numpy pass over the input), "alscale" or "peer"; data : the key of the
    suite's data set; setup(data) -> zero-argument callable, the timed call (set-up untimed);
    repeat : at most this many timed calls (slow peers: 1); warmup : untimed calls first;
    needs : modules that must import (else the row is listed as skipped); skip : a reason to
    skip, fixed when the suite is built (None: run); check(data, ours, theirs) -> (ok, verdict):
    a peer's result against the alscale row of its group (results as dicts of arrays);
    memory : bytes the case needs beyond its data (estimate, for the memory check).
    """

    group: str
    method: str
    role: str
    data: str
    setup: Callable[[dict], Callable[[], Any]]
    repeat: Optional[int] = None
    warmup: int = 1
    needs: tuple = ()
    skip: Optional[str] = None
    check: Optional[Check] = None
    memory: int = 0
    floor: Optional[str] = None  # the floor row's method (default: the suite's floor on this data)


@dataclass
class Suite:
    """A named list of cases over named data sets, at one scale."""

    name: str
    description: str
    data: dict
    cases: list
    scale: float = 1.0
    notes: list = field(default_factory=list)

    def case_memory(self, case: Case) -> int:
        spec = self.data[case.data]
        return spec.nbytes + case.memory + _BASE_PROCESS_BYTES

    def memory_needed(self) -> int:
        """The most memory one case needs (cases run one at a time, each in its own process)."""
        return max((self.case_memory(c) for c in self.cases if c.skip is None), default=0)

    def disk_needed(self) -> int:
        """Bytes of the memmapped data sets, written to the run's temporary folder."""
        return sum(spec.mapped_bytes for spec in self.data.values())


_BASE_PROCESS_BYTES = 300 * 2**20  # the interpreter, numpy, alscale (torch adds ~400 MiB)


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _to_arrays(result: Any) -> dict:
    """A case's result as a dict of numpy arrays (what a check compares and what is saved)."""
    if result is None:
        return {}
    if isinstance(result, dict):
        return {str(k): _np(v) for k, v in result.items()}
    if hasattr(result, "linkage") and hasattr(result, "labels"):
        return {"labels": _np(result.labels), "linkage": _np(result.linkage)}
    if isinstance(result, tuple):
        return {str(i): _np(v) for i, v in enumerate(result)}
    if np.ndim(result) == 0:
        return {}
    return {"0": _np(result)}


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _run_case(spec: dict, *, isolated: bool) -> dict:
    """Builds the case of ``spec``, times it and checks it; the figures as a dict. Isolated (in
    its own fresh process): with its peak and base resident sets."""
    import importlib

    for p in spec.get("sys_path", []):
        if p not in sys.path:
            sys.path.insert(0, p)
    module = importlib.import_module(spec["module"])
    suite = module.build_suite(spec["suite"], spec["scale"])
    case = suite.cases[spec["index"]]
    data = generate(suite.data[case.data], spec.get("cache"))
    for name in case.needs:  # imported before the clock starts (torch alone takes seconds)
        with warnings.catch_warnings():  # a peer's own deprecation warnings are not the benchmark's
            warnings.simplefilter("ignore")
            importlib.import_module(name)
    out: dict = {}
    fn = case.setup(data)
    out["base_rss"] = current_rss() if isolated else None
    warmup = case.warmup if spec.get("warmup") is None else spec["warmup"]
    timing, result = time_call(fn, spec["repeat"], warmup=warmup, max_time=spec.get("max_time"))
    out["times"] = timing.times
    out["cpu_times"] = timing.cpu
    out["peak_rss"] = peak_rss() if isolated else None
    arrays = _to_arrays(result)
    np.savez(spec["result"], **arrays)
    if case.check is not None and spec.get("against"):
        with np.load(spec["against"]) as f:
            ours = {k: f[k] for k in f.files}
        try:
            ok, verdict = case.check(data, ours, arrays)
        except Exception as err:  # a broken check is a failed check, with its reason
            ok, verdict = False, f"check raised {type(err).__name__}: {err}"
        out["check"] = {"ok": None if ok is None else bool(ok), "verdict": verdict}
    return out


def _worker(spec_path: str) -> int:
    """The child process of one case (``python -m alscale.al.harness SPEC.json``)."""
    spec = json.loads(Path(spec_path).read_text())
    out = _run_case(spec, isolated=True)
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


def run_case_in_child(spec: dict, workdir: str, timeout: Optional[float] = None) -> dict:
    """Runs one case in a fresh ``python -m alscale.al.harness`` process; returns its figures
    (or ``{"error": ...}`` with the tail of its stderr)."""
    path = Path(workdir) / f"case{spec['index']}.json"
    spec = dict(spec, out=str(path) + ".out")
    path.write_text(json.dumps(spec))
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-m", "alscale.al.harness", str(path)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not Path(spec["out"]).exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}
    return json.loads(Path(spec["out"]).read_text())


def run_suite(
    suite: Suite,
    *,
    repeat: int = 5,
    module: str = "alscale.al.suites",
    file: Optional[TextIO] = sys.stdout,
    progress: Optional[bool] = None,
    sys_path: Sequence[str] = (),
    isolate: bool = True,
    warmup: Optional[int] = None,
    max_time: Optional[float] = 60.0,
) -> list:
    """Runs every case of ``suite`` (one fresh process each, in order) and returns its rows.

    ``module`` is the importable module whose ``build_suite(name, scale)`` rebuilds the suite in
    the child. Progress: a tqdm bar on stderr when ``progress`` (default: stderr is a terminal).
    ``isolate=False`` runs the cases in this process instead (the same code, for fast tests): no
    peak memory is measured then (``peak_rss`` None). ``warmup``: untimed calls per case instead
    of each case's own (1, or 0 for slow peers at large sizes). ``max_time``: seconds of calls per
    case after which no repeat starts (at least one timed call; None: always ``repeat``).
    Each row (a dict): suite, group, method, role, median_s, min_s, max_s, times_s, cpu_median_s, repeats,
    ratio_to_floor, ratio_to_alscale (peers: their median / the alscale row's),
    vs_peers (alscale rows: {peer: peer median / ours}), peak_rss, base_rss, check
    ({"against", "ok", "verdict"}) and skipped (the reason) or error.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    rows: list = []
    by_method: dict = {}
    with tempfile.TemporaryDirectory(prefix=f"alscale-bench-{suite.name}-") as work:
        cache = os.path.join(work, "data")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(suite.cases), desc=f"bench {suite.name}", unit="case", file=sys.stderr,
                       dynamic_ncols=True)
        try:
            for i, case in enumerate(suite.cases):
                if bar is not None:
                    bar.set_postfix_str(case.method[:40])
                row = {"suite": suite.name, "group": case.group, "method": case.method, "role": case.role,
                       "data": case.data}
                missing = [m for m in case.needs if not _importable(m)]
                reason = case.skip or (f"needs {', '.join(missing)}" if missing else None)
                alscale_row = _alscale_of(suite, case, by_method)
                if reason is not None:
                    row["skipped"] = reason
                else:
                    reps = repeat if case.repeat is None else max(1, min(repeat, case.repeat))
                    spec = {"module": module, "suite": suite.name, "scale": suite.scale, "index": i,
                            "repeat": reps, "cache": cache, "result": os.path.join(work, f"result{i}.npz"),
                            "sys_path": list(sys_path), "warmup": warmup, "max_time": max_time}
                    if case.check is not None and alscale_row is not None and "result" in alscale_row:
                        spec["against"] = alscale_row["result"]
                    got = run_case_in_child(spec, work) if isolate else _run_case(spec, isolated=False)
                    if "error" in got:
                        row["error"] = got["error"]
                    else:
                        t = Timing(got["times"], got.get("cpu_times", []))
                        row.update(median_s=t.median, min_s=t.min, max_s=t.max, times_s=t.times,
                                   cpu_median_s=t.cpu_median,
                                   repeats=len(t.times), peak_rss=got["peak_rss"], base_rss=got["base_rss"],
                                   result=spec["result"])
                        if case.check is not None:
                            chk = got.get("check") or {"ok": None, "verdict": "not checked: no alscale result"}
                            row["check"] = {"against": alscale_row["method"] if alscale_row else None, **chk}
                by_method[(case.group, case.method)] = row
                row["_case"] = case
                rows.append(row)
                if file is not None and "skipped" not in row:
                    say = row.get("error") or f"{row['median_s']:.4g} s"
                    print(f"# {suite.name}: {case.group}: {case.method}: {say}", file=file, flush=True)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    _ratios(suite, rows)
    for row in rows:
        row.pop("result", None)
        row.pop("_case", None)
    return rows


def _load() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "unknown"


def run_script(
    suite: Suite,
    *,
    module: str,
    sys_path: Sequence[str] = (),
    repeat: int = 3,
    json_path: Optional[str] = None,
    argv: Optional[list] = None,
    file: Optional[TextIO] = None,
) -> int:
    """A ``benchmarks/`` script's run: every case of ``suite`` in its own fresh process (its peak
    memory its own; ``module``, importable from ``sys_path``, rebuilds the suite there with its
    ``build_suite(name, scale)``), each timed ``repeat`` times after one warm-up call; the load
    average before and after (the machine may be shared), the table (:func:`format_table`), the
    suite's notes, and with ``json_path`` the JSON file of ``alscale bench --json``. Returns 1
    when a check failed or a case broke, else 0. ``file``: where to print (default stdout)."""
    file = sys.stdout if file is None else file
    print(f"# {suite.name}: {suite.description}; load average {_load()} before", file=file, flush=True)
    rows = run_suite(suite, repeat=repeat, module=module, sys_path=sys_path, file=file, progress=False,
                     max_time=None)
    print(format_table(rows), file=file)
    print("\n".join([f"# note: {note}" for note in suite.notes] + [f"# load average {_load()} after"]),
          file=file, flush=True)
    if json_path:
        run = {"suite": suite.name, "scale": suite.scale, "repeat": repeat, "memory_needed": suite.memory_needed(),
               "data": {k: v.to_json() for k, v in suite.data.items()}, "rows": rows}
        write_json(json_path, [run], argv=argv)
    broken = [r for r in rows if "error" in r or (r.get("check") or {}).get("ok") is False]
    return 1 if broken else 0


def _alscale_of(suite: Suite, case: Case, by_method: dict) -> Optional[dict]:
    for c in suite.cases:
        if c.group == case.group and c.role == "alscale":
            return by_method.get((c.group, c.method))
    return None


def _ratios(suite: Suite, rows: list) -> None:
    floors = {}
    for row in rows:
        case = row["_case"]
        if case.role == "floor" and "median_s" in row:
            floors.setdefault(case.data, row)
            floors[case.method] = row
    groups: dict = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    for row in rows:
        case = row["_case"]
        if "median_s" not in row:
            continue
        if case.role == "floor":
            fl = row
        else:
            fl = floors.get(case.floor) if case.floor else floors.get(case.data)
        if fl is not None and fl["median_s"] > 0:
            row["ratio_to_floor"] = row["median_s"] / fl["median_s"]
            row["floor"] = fl["method"]
        ours = next((r for r in groups[row["group"]] if r["role"] == "alscale" and "median_s" in r), None)
        if ours is None or ours is row:
            continue
        if row["role"] == "peer" and ours["median_s"] > 0:
            row["ratio_to_alscale"] = row["median_s"] / ours["median_s"]
            ours.setdefault("vs_peers", {})[row["method"]] = row["ratio_to_alscale"]


# ============================================================================================
# Output
# ============================================================================================


def _fmt_s(s: Optional[float]) -> str:
    if s is None:
        return "-"
    return f"{s:.4g}" if s >= 1e-4 else f"{s:.2e}"


def _mib(b: Optional[int]) -> str:
    return "-" if b is None else f"{b / 2**20:,.0f}"


def format_table(rows: list) -> str:
    """The rows as an aligned table, one block per group.

    Columns: method; median, min and max seconds over the repeats; ``cpu s`` (the median CPU
    seconds of the case's process per call, every thread: near ``median s`` × threads when the
    cores were free); ``x floor`` (median / the
    floor's median: 1.00 is the speed of one numpy pass over the input); ``x alscale`` (a peer's
    median / alscale's in its group: 3.0 means alscale is 3 times faster); peak MiB (the case's
    process high-water mark, interpreter and data included) and base MiB (its resident set
    before the timed calls: peak - base is the call's own memory); the correctness check of a
    peer against alscale's picks.
    """
    header = ("method", "median s", "min s", "max s", "cpu s", "x floor", "x alscale", "peak MiB", "base MiB",
              "check")
    body: list = []
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            body.append(("== " + group,))
        if "skipped" in r:
            body.append((r["method"], *["-"] * 8, "skipped: " + r["skipped"]))
            continue
        if "error" in r:
            body.append((r["method"], *["-"] * 8, "ERROR: " + r["error"]))
            continue
        chk = r.get("check")
        if chk is None:
            verdict = ""
        else:
            mark = {True: "ok", False: "FAIL", None: "n/a"}[chk.get("ok")]
            verdict = f"{mark}: {chk.get('verdict', '')}"
        ratio = r.get("ratio_to_floor")
        body.append((
            r["method"], _fmt_s(r.get("median_s")), _fmt_s(r.get("min_s")), _fmt_s(r.get("max_s")),
            _fmt_s(r.get("cpu_median_s")), "-" if ratio is None else f"{ratio:.2f}",
            f"{r['ratio_to_alscale']:.2f}" if "ratio_to_alscale" in r else "",
            _mib(r.get("peak_rss")), _mib(r.get("base_rss")), verdict,
        ))
    cols = len(header)
    widths = [max([len(header[i])] + [len(b[i]) for b in body if len(b) == cols]) for i in range(cols)]
    right = set(range(1, cols - 1))

    def line(cells):
        if len(cells) == 1:
            return cells[0]
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def write_json(path: str, runs: list, *, argv: Optional[list] = None) -> None:
    """``runs``: one dict per suite ({"suite", "scale", "repeat", "memory_needed", "rows"}); the
    file adds the machine (CPU, memory, load average, versions) and the command line."""
    payload = {"format": "alscale-bench/1", "argv": argv, "machine": machine_info(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "suites": runs}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, allow_nan=True, default=_json_default)
        f.write("\n")


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str) -> dict:
    with open(path) as f:
        payload = json.load(f)
    if not isinstance(payload, dict) or "suites" not in payload:
        raise ValueError(f"{path} is not an `alscale bench --json` file (no 'suites')")
    return payload


def compare_runs(old: dict, new_runs: list, *, threshold: float = 0.10) -> tuple[str, list]:
    """Each new row's median against the old run's row of the same suite, group and method.

    Returns (the text, the regressions): ``new / old`` per row; a row more than ``threshold``
    slower (ratio > 1 + threshold) is flagged REGRESSION, a check that passed before and fails now
    is flagged too; a flagged row whose fastest new run is no slower than the old run's slowest is
    marked as overlapping (likely noise). Rows only in one run are listed as new / gone.
    """
    before = {(s["suite"], r["group"], r["method"]): r for s in old["suites"] for r in s["rows"]}
    lines = ["suite / group / method: new median / old median", "-" * 48]
    regressions = []
    seen = set()
    for s in new_runs:
        for r in s["rows"]:
            key = (s["suite"], r["group"], r["method"])
            seen.add(key)
            o = before.get(key)
            name = " / ".join(key)
            if o is None:
                lines.append(f"{name}: new row")
                continue
            if "median_s" not in r or "median_s" not in o:
                lines.append(f"{name}: not measured in {'this' if 'median_s' not in r else 'the old'} run")
                continue
            ratio = r["median_s"] / o["median_s"] if o["median_s"] > 0 else float("inf")
            flag = ""
            if ratio > 1 + threshold and r.get("role") != "floor":
                flag = f"  REGRESSION (> {1 + threshold:.2f})"
                if r.get("min_s") is not None and o.get("max_s") is not None and r["min_s"] <= o["max_s"]:
                    flag += " but the runs' ranges overlap (noise?)"
                regressions.append(key)
            if (o.get("check") or {}).get("ok") is True and (r.get("check") or {}).get("ok") is False:
                flag += "  CHECK NOW FAILS"
                regressions.append(key)
            lines.append(f"{name}: {ratio:.2f}x  ({_fmt_s(r['median_s'])} s vs {_fmt_s(o['median_s'])} s){flag}")
    for key in before:
        if key not in seen and key[0] in {s["suite"] for s in new_runs}:
            lines.append(f"{' / '.join(key)}: gone")
    lo, ln = old.get("machine", {}), machine_info()
    if lo.get("cpu") != ln.get("cpu") or lo.get("cpu_count") != ln.get("cpu_count"):
        lines.append(f"# note: other machine ({lo.get('cpu')}, {lo.get('cpu_count')} cores); ratios compare machines")
    return "\n".join(lines), regressions


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
