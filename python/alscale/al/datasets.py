"""Data for the active-learning loop: Fashion-MNIST (IDX files), a user's npz of embeddings,
a synthetic long-tailed Gaussian mixture of any shape, and a multi-label data set of real
images (Fashion-MNIST mosaics, :func:`make_fashion_mosaics`).

A :class:`Dataset` holds a pool (``x``, ``y``) and a test split (``x_test``, ``y_test``) as numpy
arrays; images are uint8 (N, H, W), features float32 (N, D). Labels are class indices (N,)
int64, or, for a multi-label data set, an (N, C) uint8 0/1 matrix (row i's label set is the
columns holding 1; a row may have none).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = [
    "DEFAULT_FASHION_MNIST_DIR",
    "Dataset",
    "load_dataset",
    "load_fashion_mnist",
    "load_npz",
    "long_tail_sizes",
    "make_fashion_mosaics",
    "make_synthetic",
]

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {
    "x": "train-images-idx3-ubyte.gz",
    "y": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@dataclass
class Dataset:
    """A labeled pool and a test split.

    Attributes
    ----------
    name : str
    x : numpy.ndarray, shape (N, ...)
        The pool: uint8 images (N, H, W) or float32 features (N, D).
    y : numpy.ndarray, shape (N,) int64, or (N, C) uint8 0/1 for a multi-label data set
        The pool's true labels (read only by the simulated oracle and by oracle strategies).
    x_test, y_test : numpy.ndarray
        The test split.
    num_classes : int
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 3

    @property
    def multilabel(self) -> bool:
        """True when the labels are an (N, C) 0/1 matrix (several classes per row, or none)."""
        return self.y.ndim == 2

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, n: int, *, seed: int = 0) -> "Dataset":
        """The same data with a seeded random ``n`` of the pool rows (in pool order); the test
        split is kept."""
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=min(n, len(self)), replace=False))
        return Dataset(f"{self.name}[{rows.size}]", self.x[rows], self.y[rows], self.x_test, self.y_test,
                       self.num_classes)

    def long_tailed(self, ratio: float, *, seed: int = 0) -> "Dataset":
        """The pool made long-tailed as the official BASE code makes CIFAR-10 (the LDAM-DRW
        recipe): class c keeps ``floor(n_max · ratio^(c / (C-1)))`` of its rows (at most all of
        them), n_max the largest class's size, drawn at random (seeded) and kept in pool order;
        the test split is kept as it is (balanced stays balanced). ``ratio`` in (0, 1]: the
        rarest class's share of the largest (0.01: 100 times fewer); 1 keeps n_max rows of
        every class. Single-label data only.

        Examples
        --------
        >>> from alscale.al.datasets import make_synthetic
        >>> d = make_synthetic(1000, 4, 5, imbalance=1, seed=0).long_tailed(0.1)
        >>> np.bincount(d.y).tolist(), d.name
        ([200, 112, 63, 35, 20], 'synthetic long-tailed 0.1')
        """
        if self.multilabel:
            raise ValueError(f"{self.name} is multi-label: a long tail is defined for one class per row")
        sizes = long_tail_sizes(np.bincount(self.y, minlength=self.num_classes), ratio)
        rng = np.random.default_rng(seed)
        keep = [rng.permutation(np.flatnonzero(self.y == c))[:k] for c, k in enumerate(sizes)]
        rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
        return Dataset(f"{self.name} long-tailed {ratio:g}", self.x[rows], self.y[rows], self.x_test, self.y_test,
                       self.num_classes)


def long_tail_sizes(counts, ratio: float) -> np.ndarray:
    """How many rows of each class a long-tailed pool keeps (:meth:`Dataset.long_tailed`):
    ``min(counts[c], floor(n_max · ratio^(c / (C-1))))`` with n_max = max(counts), as int64.
    ``ratio`` must be a number in (0, 1] (a ValueError names it otherwise).

    >>> long_tail_sizes([6000] * 10, 0.01).tolist()
    [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise TypeError(f"the long-tail ratio must be a number in (0, 1], got {ratio!r}")
    if not 0.0 < float(ratio) <= 1.0:  # NaN fails too
        raise ValueError(f"the long-tail ratio must be in (0, 1] (the rarest class's size over the largest's), "
                         f"got {ratio!r}")
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise ValueError("counts must be a non-empty list of class sizes >= 0")
    c = np.arange(counts.size)
    share = float(ratio) ** (c / max(1, counts.size - 1))
    # floor(n_max * share): int() in the BASE code; a hair of rounding slack (6000 * 0.1**1 is 600.0000000000001)
    wanted = np.floor(counts.max() * share + 1e-9).astype(np.int64)
    return np.minimum(counts, wanted)


#: Deflate cannot expand data more than ~1032-fold: a header that claims more than this many
#: bytes per byte of .gz file lies (a truncated file), and is refused before any allocation.
_GZIP_MAX_EXPANSION = 1100


def _read_idx(path: Path, rows_shape: tuple) -> np.ndarray:
    """An unsigned-byte IDX array from a .gz file, shape (N, *rows_shape). A file that is not
    gzip, not IDX, of another shape, truncated or with data after the array is a ValueError
    naming the file; the array is allocated only once the header is known to be plausible."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise ValueError(f"{path} is not an IDX file: {len(head)} bytes, too short for a header")
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08:
                raise ValueError(f"{path} is not an unsigned-byte IDX file (magic number {head.hex()}, "
                                 "expected 000008 and the number of dimensions)")
            if ndim != 1 + len(rows_shape):
                raise ValueError(f"{path}: an IDX array of {ndim} dimensions, expected {1 + len(rows_shape)}")
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(f"{path} is truncated inside its IDX header")
            shape = struct.unpack(">" + "I" * ndim, dims)
            if shape[1:] != rows_shape:
                raise ValueError(f"{path}: IDX shape {shape}, expected (N, {', '.join(map(str, rows_shape))})")
            size = math.prod(shape)
            if size > _GZIP_MAX_EXPANSION * max(1, os.path.getsize(path)):
                raise ValueError(f"{path}: the header claims shape {shape} ({size} bytes), more than a "
                                 f"{os.path.getsize(path)}-byte .gz file can hold (truncated file?)")
            out = np.empty(size, dtype=np.uint8)
            view, got = memoryview(out), 0
            while got < size:
                n = f.readinto(view[got : got + (1 << 20)])
                if not n:
                    raise ValueError(f"{path}: the header says shape {shape} ({size} values) but the file "
                                     f"holds {got} (truncated file?)")
                got += n
            if f.read(1):
                raise ValueError(f"{path}: data after the {size} values of shape {shape} (corrupted file?)")
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # not gzip, cut short, corrupted stream
        raise ValueError(f"{path} is not a readable .gz file ({type(err).__name__}: {err}); "
                         "download it again") from None
    return out.reshape(shape)


def load_fashion_mnist(data_dir: Optional[str] = None) -> Dataset:
    """Fashion-MNIST from its four IDX .gz files: 60,000 pool and 10,000 test 28x28 images.

    Parameters
    ----------
    data_dir : str, optional
        Directory of the four files; default /usr/share/datasets/fashion-mnist (Debian's
        ``dataset-fashion-mnist`` package).

    Examples
    --------
    >>> from alscale.al.datasets import load_fashion_mnist
    >>> load_fashion_mnist("/nonexistent")
    Traceback (most recent call last):
    ...
    FileNotFoundError: Fashion-MNIST not found in /nonexistent: missing train-images-idx3-ubyte.gz, ...
    """
    folder = Path(data_dir or DEFAULT_FASHION_MNIST_DIR)
    missing = [f for f in _FASHION_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder}: missing {', '.join(missing)}. Install it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass --data-dir DIR with the four "
            "IDX .gz files"
        )
    arrays = {k: _read_idx(folder / f, (28, 28) if k.startswith("x") else ()) for k, f in _FASHION_FILES.items()}
    for split in ("", "_test"):
        images, labels = arrays["x" + split], arrays["y" + split]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{folder}: {_FASHION_FILES['x' + split]} holds {images.shape[0]} images but "
                             f"{_FASHION_FILES['y' + split]} {labels.shape[0]} labels")
        if labels.size and labels.max() >= len(FASHION_CLASSES):
            raise ValueError(f"{folder / _FASHION_FILES['y' + split]}: label {labels.max()}; Fashion-MNIST's "
                             f"labels are 0..{len(FASHION_CLASSES) - 1}")
    if arrays["x"].shape[0] == 0 or arrays["x_test"].shape[0] == 0:
        raise ValueError(f"{folder}: the pool and the test split need at least one image each")
    return Dataset(
        "fashion-mnist",
        arrays["x"],
        arrays["y"].astype(np.int64),
        arrays["x_test"],
        arrays["y_test"].astype(np.int64),
        10,
    )


#: Largest class label an npz may hold (labels index the head's outputs: a label of 2**40 would
#: ask for a trillion-class model).
MAX_LABEL = 10**7 - 1
_RELABEL = "relabel the classes 0..C-1, e.g. y = numpy.unique(y, return_inverse=True)[1]"


def _check_labels(y: np.ndarray, name: str, path) -> np.ndarray:
    if y.ndim != 1:
        raise ValueError(f"{path}: {name} must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{path}: {name} must hold integer class labels, got {y.dtype}")
    if y.size and y.dtype.kind == "i" and y.min() < 0:
        raise ValueError(f"{path}: {name} has a negative label ({y.min()})")
    if y.size and y.max() > MAX_LABEL:
        raise ValueError(f"{path}: {name} has a label {y.max()}; class labels must lie in 0..{MAX_LABEL} "
                         f"({_RELABEL})")
    return y.astype(np.int64)


def _num_classes(y: np.ndarray, y_test: np.ndarray, path) -> int:
    """C = the largest label + 1, refused when most of 0..C-1 are labels of no row at all: the
    head, the logits (N x C) and the per-class counts all have C columns, so sparse labels
    (say 5 classes numbered up to 10**7) would ask for gigabytes of empty classes. At least half
    of 0..C-1 must occur in y or y_test; the labels are never renumbered silently."""
    classes = int(max(y.max(initial=-1), y_test.max(initial=-1))) + 1
    present = np.unique(np.concatenate([y, y_test])).size
    if classes > 2 * present:
        name = "y" if y.max(initial=-1) + 1 == classes else "y_test"
        raise ValueError(f"{path}: {name} has a label {classes - 1} but only {present} distinct labels occur: "
                         f"labels must be 0..C-1 with at least half of those classes present ({_RELABEL})")
    return classes


def _member(data, key: str, path) -> np.ndarray:
    """One array of an open npz, any read failure a ValueError naming the file and the key."""
    try:
        return data[key]
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{path}: array '{key}' holds Python objects (dtype object); save numbers: "
                             "X as floats, y as integers") from None
        raise ValueError(f"{path}: array '{key}' cannot be read: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: array '{key}' cannot be read (corrupted file?): {type(err).__name__}: {err}"
        ) from None


def _as_features(a: np.ndarray, name: str, path) -> np.ndarray:
    """A finite, non-empty (rows, D >= 1) float32 matrix; values beyond float32's range refused."""
    if a.ndim != 2:
        raise ValueError(f"{path}: {name} must be 2-D (rows, features), got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{path}: {name} must be real-valued (float or int), got {a.dtype}")
    if a.shape[0] == 0:
        raise ValueError(f"{path}: {name} has no rows: shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{path}: {name} has no features: shape {a.shape}")
    finite = np.isfinite(a).all(axis=1)
    if not finite.all():
        raise ValueError(f"{path}: {name} contains NaN or inf (first in row {int(np.argmin(finite))})")
    with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
        out = a.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{path}: {name} has values beyond float32's range (|v| > 3.4e38)")
    return out


def load_npz(path: str, *, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A user's own embeddings from an .npz: arrays ``X`` (N, D) and ``y`` (N,), optionally
    ``X_test`` and ``y_test``; without them a seeded random ``test_fraction`` of the rows is the
    test split. Labels are class indices 0..C-1 (C = the largest label + 1, at most 10**7), at
    least half of which occur in ``y`` or ``y_test``: sparse labels (ids such as 3, 1000, 10**6)
    are refused with a ValueError that says how to renumber them, never renumbered silently.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from alscale.al.datasets import load_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "emb.npz")
    >>> np.savez(path, X=np.random.default_rng(0).normal(size=(100, 8)), y=np.arange(100) % 4)
    >>> d = load_npz(path)
    >>> len(d), d.x_test.shape, d.num_classes
    (80, (20, 8), 4)
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"npz file {p} does not exist")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{p} is not a readable .npz file: {err}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{p} is not an .npz archive (it holds a single .npy array): save X and y with "
                         "numpy.savez(path, X=..., y=...)")
    with data:
        keys = set(data.files)
        for key in ("X", "y"):
            if key not in keys:
                raise ValueError(f"{p} has no array '{key}' (found: {', '.join(sorted(keys)) or 'none'}); it needs X "
                                 "(N, D) embeddings and y (N,) labels, optionally X_test and y_test")
        if ("X_test" in keys) != ("y_test" in keys):
            raise ValueError(f"{p} has only one of X_test / y_test: give both or neither")
        x, y = _member(data, "X", p), _check_labels(_member(data, "y", p), "y", p)
        has_test = "X_test" in keys
        x_test = _member(data, "X_test", p) if has_test else None
        y_test = _check_labels(_member(data, "y_test", p), "y_test", p) if has_test else None
    x = _as_features(x, "X", p)
    if has_test:
        x_test = _as_features(x_test, "X_test", p)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{p}: X has {x.shape[0]} rows but y has {y.shape[0]}")
    if has_test:
        if x_test.shape[1] != x.shape[1] or x_test.shape[0] != y_test.shape[0]:
            raise ValueError(f"{p}: X_test {x_test.shape} / y_test {y_test.shape} do not match X {x.shape}")
    else:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if x.shape[0] < 2:
            raise ValueError(f"{p}: X has {x.shape[0]} rows, too few to split off a test set")
        order = np.random.default_rng(seed).permutation(x.shape[0])
        n_test = min(x.shape[0] - 1, max(1, int(round(test_fraction * x.shape[0]))))  # the pool keeps a row
        test, pool = order[:n_test], np.sort(order[n_test:])
        x, y, x_test, y_test = x[pool], y[pool], x[np.sort(test)], y[np.sort(test)]
    return Dataset(f"npz:{p}", x, y, x_test, y_test, _num_classes(y, y_test, p))


def class_sizes(n: int, num_classes: int, imbalance: float) -> np.ndarray:
    """Long-tailed class sizes summing to n: size_c ∝ imbalance^(-c/(C-1)), so class 0 is
    ``imbalance`` times larger than class C-1 (every class gets at least one row when n >= C)."""
    if not np.isfinite(imbalance) or imbalance < 1:
        raise ValueError(f"imbalance must be a finite number >= 1, got {imbalance}")
    w = imbalance ** (-np.arange(num_classes) / max(1, num_classes - 1))
    sizes = np.floor(w / w.sum() * n).astype(np.int64)
    if n >= num_classes:
        sizes = np.maximum(sizes, 1)
    sizes[0] += n - sizes.sum()  # remainder to the head class
    return sizes


def make_synthetic(
    n: int = 20_000,
    dim: int = 64,
    num_classes: int = 10,
    *,
    imbalance: float = 10.0,
    n_test: Optional[int] = None,
    separation: float = 4.0,
    seed: int = 0,
) -> Dataset:
    """A long-tailed Gaussian mixture: class c has its mean drawn from N(0, separation²/dim · I)
    and unit-variance noise; the pool's class sizes fall off geometrically by a factor
    ``imbalance`` from class 0 to class C-1; the test split is balanced. Generated in float32
    chunks, so ImageNet's shape (n=1,281,167, dim=2048, num_classes=1000) needs only the
    output's memory (~10.5 GB).

    Examples
    --------
    >>> from alscale.al.datasets import make_synthetic
    >>> d = make_synthetic(1000, 8, 5, imbalance=10, seed=0)
    >>> d.x.shape, d.x.dtype, int((d.y == 0).sum()) > 5 * int((d.y == 4).sum())
    ((1000, 8), dtype('float32'), True)
    """
    from .._backend.arrays import as_int

    n, dim = as_int(n, "n", minimum=1), as_int(dim, "dim", minimum=1)
    num_classes = as_int(num_classes, "num_classes", minimum=1)
    n_test = as_int(n_test, "n_test", minimum=1) if n_test is not None else max(num_classes, n // 5)
    seed = as_int(seed, "seed")
    if not isinstance(separation, (int, float, np.integer, np.floating)) or not 0 <= separation < math.inf:
        raise ValueError(f"separation must be a finite number >= 0, got {separation!r}")
    class_sizes(n, 1, imbalance)  # checks imbalance before anything is allocated
    need = 4 * dim * (n + n_test + num_classes) + 16 * (n + n_test)
    total = _physical_memory()
    if total is not None and need > total:
        raise ValueError(f"synthetic data of n={n} + n_test={n_test} rows x dim={dim} (and {num_classes} class "
                         f"means) needs {need / 2**30:.1f} GiB, more than this machine's {total / 2**30:.1f} GiB")
    rng = np.random.default_rng(seed)
    means = (rng.standard_normal((num_classes, dim)) * (separation / np.sqrt(dim))).astype(np.float32)

    def draw(labels: np.ndarray) -> np.ndarray:
        out = np.empty((labels.size, dim), dtype=np.float32)
        step = max(1, (1 << 24) // dim)
        for s in range(0, labels.size, step):
            chunk = labels[s : s + step]
            out[s : s + chunk.size] = rng.standard_normal((chunk.size, dim), dtype=np.float32) + means[chunk]
        return out

    y = rng.permutation(np.repeat(np.arange(num_classes), class_sizes(n, num_classes, imbalance)))
    y_test = rng.permutation(np.arange(n_test) % num_classes)
    return Dataset("synthetic", draw(y), y.astype(np.int64), draw(y_test), y_test.astype(np.int64), num_classes)


def _mosaics(images: np.ndarray, labels: np.ndarray, num_classes: int, n: int, grid: int, downscale: int,
             rng: np.random.Generator) -> tuple:
    """``n`` mosaics of ``grid`` x ``grid`` tiles drawn independently and uniformly (with
    replacement) from ``images``, and their label sets: ((n, H, W) uint8, (n, C) uint8)."""
    h, w = images.shape[1:]
    picks = rng.integers(0, images.shape[0], size=(n, grid * grid))
    tiles = images[picks].reshape(n, grid, grid, h, w)
    x = np.ascontiguousarray(tiles.transpose(0, 1, 3, 2, 4)).reshape(n, grid * h, grid * w)
    if downscale > 1:  # mean of each downscale x downscale block, rounded half up
        hh, ww = x.shape[1] // downscale, x.shape[2] // downscale
        blocks = x[:, : hh * downscale, : ww * downscale].reshape(n, hh, downscale, ww, downscale)
        area = downscale * downscale
        x = ((blocks.sum(axis=(2, 4), dtype=np.uint32) + area // 2) // area).astype(np.uint8)
    y = np.zeros((n, num_classes), dtype=np.uint8)
    y[np.arange(n)[:, None], labels[picks]] = 1
    return x, y


def make_fashion_mosaics(
    source: Optional[Dataset] = None,
    *,
    n: int = 20_000,
    n_test: int = 4_000,
    grid: int = 2,
    downscale: int = 2,
    seed: int = 0,
    data_dir: Optional[str] = None,
) -> Dataset:
    """A multi-label data set of real images: mosaics of ``grid`` x ``grid`` Fashion-MNIST
    images whose label set is the classes present.

    The generator, seeded and deterministic (same arguments, same arrays, on every machine):
    each mosaic draws ``grid``² images independently and uniformly at random, with
    replacement, from the source's pool (the pool's mosaics) or from its test split (the test
    mosaics, so no test image is ever in the pool), tiles them row by row (the first draw top
    left), and, with ``downscale`` d > 1, takes the mean of each d x d block (rounded half
    up). Its labels are the (N, C) 0/1 matrix of the classes of its tiles. The number of
    distinct classes per mosaic varies (two tiles may share a class): with 2 x 2 mosaics of
    Fashion-MNIST's 10 balanced classes, 1 to 4 classes, 3.44 on average, and each class is
    present in about 1 - 0.9⁴ = 34 % of the mosaics — class frequencies as they come out of the
    draws, no row without a label.

    The defaults (20,000 pool and 4,000 test mosaics of 2 x 2 images, downscaled by 2 to
    28 x 28 pixels) keep a linear probe's round to seconds on 2 cores.

    Parameters
    ----------
    source : Dataset, optional
        A single-label data set of images (N, H, W) uint8; default Fashion-MNIST
        (:func:`load_fashion_mnist` from ``data_dir``).
    n, n_test : int
        Mosaics in the pool and in the test split.
    grid : int
        Tiles per side (default 2: four images per mosaic).
    downscale : int
        Block size of the mean pooling (default 2: 56 x 56 mosaics become 28 x 28); 1 keeps
        the full resolution.
    seed : int
        Seeds the draws (the pool's and the test split's come from one generator, pool first).

    Examples
    --------
    >>> import numpy as np
    >>> from alscale.al.datasets import Dataset, make_fashion_mosaics
    >>> rng = np.random.default_rng(0)
    >>> src = Dataset("tiny", rng.integers(0, 256, (50, 4, 4), dtype=np.uint8), np.arange(50) % 5,
    ...               rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), np.arange(20) % 5, 5)
    >>> d = make_fashion_mosaics(src, n=30, n_test=10, downscale=1, seed=1)
    >>> d.x.shape, d.y.shape, d.multilabel, bool((d.y.sum(axis=1) >= 1).all())
    ((30, 8, 8), (30, 5), True, True)
    """
    from .._backend.arrays import as_int

    n, n_test = as_int(n, "n", minimum=1), as_int(n_test, "n_test", minimum=1)
    grid, downscale = as_int(grid, "grid", minimum=1), as_int(downscale, "downscale", minimum=1)
    seed = as_int(seed, "seed")
    if source is None:
        source = load_fashion_mnist(data_dir)
    if not source.is_image or source.multilabel:
        raise ValueError(f"mosaics are made of single-label images (N, H, W); {source.name} holds "
                         f"{'multi-label data' if source.multilabel else 'feature vectors'}")
    side = grid * min(source.x.shape[1:])
    if downscale > side:
        raise ValueError(f"downscale {downscale} is larger than the mosaics' {side} pixels")
    rng = np.random.default_rng(seed)
    x, y = _mosaics(source.x, source.y, source.num_classes, n, grid, downscale, rng)
    x_test, y_test = _mosaics(source.x_test, source.y_test, source.num_classes, n_test, grid, downscale, rng)
    name = f"{source.name}-mosaic(grid={grid},n={n},n_test={n_test},downscale={downscale},seed={seed})"
    return Dataset(name, x, y, x_test, y_test, source.num_classes)


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def load_dataset(spec: str, *, data_dir: Optional[str] = None, seed: int = 0, **synthetic) -> Dataset:
    """``fashion-mnist``, ``fashion-mnist-mosaic`` (multi-label: :func:`make_fashion_mosaics`
    with its defaults, seeded by ``seed``), ``npz:PATH`` or ``synthetic`` (keyword options go to
    :func:`make_synthetic`, or to :func:`make_fashion_mosaics` for the mosaics)."""
    if spec == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    if spec == "fashion-mnist-mosaic":
        return make_fashion_mosaics(data_dir=data_dir, seed=seed, **synthetic)
    if spec.startswith("npz:"):
        if not spec[4:]:
            raise ValueError("dataset npz: needs a path: npz:PATH")
        return load_npz(os.path.expanduser(spec[4:]), seed=seed)
    if spec == "synthetic":
        return make_synthetic(seed=seed, **synthetic)
    raise ValueError(f"unknown dataset {spec!r}: use fashion-mnist, fashion-mnist-mosaic, npz:PATH or synthetic")
