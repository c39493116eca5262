"""Hypothesis strategies and assertion helpers shared by the alscale tests.

They live in their own module rather than in conftest.py because pytest imports every
``conftest.py`` under the module name ``conftest``: with ``testpaths = ["tests",
"benchmarks"]`` a ``benchmarks/conftest.py`` would shadow ``tests/conftest.py`` and
``from conftest import ...`` would break. conftest.py only registers the settings profiles.

Large arrays are generated from a drawn seed with numpy's generator (fast at thousands of
rows); hypothesis draws the seed, the shape, the value mode, the dtype and the memory layout.
Every generated input carries its exact float64 values (``x64``), which is what the
references receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st

NUMPY_DTYPES = ("float16", "float32", "float64")
TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64")
NUMPY_LAYOUTS = ("contiguous", "fortran", "colstride", "rowstride", "negstride", "offset")
TORCH_LAYOUTS = ("contiguous", "fortran", "colstride", "rowstride", "offset")
VALUE_MODES = ("normal", "wide", "integer", "halves", "constant", "duplicate_rows", "peaked")

SEEDS = st.integers(0, 2**32 - 1)


def examples(fraction: float, minimum: int = 10) -> settings:
    """Settings running ``fraction`` of the active profile's max_examples (for slow tests)."""
    return settings(max_examples=max(minimum, int(settings.default.max_examples * fraction)))


# --------------------------------------------------------------------------- arrays


def is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def make_values(rng: np.random.Generator, n: int, c: int, mode: str) -> np.ndarray:
    """(n, c) float64 logits of one of several shapes of distribution."""
    if mode == "normal":
        return rng.standard_normal((n, c)) * rng.choice([0.1, 1.0, 3.0])
    if mode == "wide":
        return rng.uniform(-20.0, 20.0, (n, c))
    if mode == "integer":  # many exact ties, within rows and across rows
        k = int(rng.choice([0, 1, 2, 5]))
        return rng.integers(-k, k + 1, (n, c)).astype(np.float64)
    if mode == "halves":
        return np.round(rng.standard_normal((n, c)) * 2.0) / 2.0
    if mode == "constant":
        return np.full((n, c), float(rng.integers(-3, 4)))
    if mode == "duplicate_rows":
        base = rng.standard_normal((max(1, n // 3), c))
        return base[rng.integers(0, base.shape[0], n)]
    if mode == "peaked":  # one dominant class per row, like a trained network
        x = rng.standard_normal((n, c))
        x[np.arange(n), rng.integers(0, c, n)] += 8.0
        return x
    raise AssertionError(mode)


def _numpy_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A view of an array equal to ``a`` with the given memory layout."""
    n, c = a.shape
    if layout == "contiguous":
        return np.ascontiguousarray(a)
    if layout == "fortran":  # the transpose of a C-contiguous (C, N) array
        return np.ascontiguousarray(a.T).T
    if layout == "colstride":  # big[:, ::2]
        big = np.zeros((n, 2 * c), dtype=a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    if layout == "rowstride":
        big = np.zeros((2 * n, c), dtype=a.dtype)
        big[::2] = a
        return big[::2]
    if layout == "negstride":
        big = np.ascontiguousarray(a[::-1, ::-1])
        return big[::-1, ::-1]
    if layout == "offset":
        big = np.zeros((n + 1, c + 3), dtype=a.dtype)
        big[1:, 2:-1] = a
        return big[1:, 2:-1]
    raise AssertionError(layout)


def _torch_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    n, c = t.shape
    if layout == "contiguous":
        return t.contiguous()
    if layout == "fortran":
        return t.t().contiguous().t()
    if layout == "colstride":
        big = torch.zeros((n, 2 * c), dtype=t.dtype)
        big[:, ::2] = t
        return big[:, ::2]
    if layout == "rowstride":
        big = torch.zeros((2 * n, c), dtype=t.dtype)
        big[::2] = t
        return big[::2]
    if layout == "offset":
        big = torch.zeros((n + 1, c + 3), dtype=t.dtype)
        big[1:, 2:-1] = t
        return big[1:, 2:-1]
    raise AssertionError(layout)


def to_kind(values: np.ndarray, kind: str, dtype: str, layout: str = "contiguous"):
    """(x, x64): ``values`` cast to ``dtype`` in numpy or torch with ``layout``, and the
    exact float64 values of the cast."""
    if kind == "numpy":
        a = values.astype(getattr(np, dtype))
        x64 = a.astype(np.float64)
        return _numpy_layout(a, layout), x64
    t = torch.tensor(values, dtype=torch.float64).to(getattr(torch, dtype))
    x64 = t.to(torch.float64).numpy().copy()
    return _torch_layout(t, layout), x64


@dataclass
class Logits:
    """Logits as alscale receives them (``x``) and their exact float64 values (``x64``)."""

    x: object
    x64: np.ndarray
    kind: str
    dtype: str
    layout: str
    mode: str
    seed: int = field(default=0)

    @property
    def n(self) -> int:
        return self.x64.shape[0]

    @property
    def c(self) -> int:
        return self.x64.shape[1]

    def __repr__(self) -> str:
        head = (f"Logits({self.kind} {self.dtype} {self.layout} mode={self.mode} "
                f"N={self.n} C={self.c} seed={self.seed}")
        if self.x64.size <= 200:
            return head + f", x64=np.array({self.x64.tolist()!r}))"
        return head + ")"


BUCKETS = {  # (max rows, max classes)
    "tiny": (8, 5),
    "small": (120, 24),
    "medium": (1000, 100),
    "large": (None, None),  # up to max_n, max_c
}


@st.composite
def shapes(draw, max_n: int = 3000, max_c: int = 300, max_elems: int = 60_000):
    """(N, C) from one of four size buckets, log-uniform inside it (hypothesis alone draws
    mostly the smallest sizes); N <= max_n, C <= max_c, N * C <= max_elems."""
    bucket = draw(st.sampled_from(list(BUCKETS)))
    hi_n, hi_c = BUCKETS[bucket]
    hi_n, hi_c = min(hi_n or max_n, max_n), min(hi_c or max_c, max_c)
    rng = np.random.default_rng(draw(SEEDS))
    if bucket in ("tiny", "small"):
        n = int(np.exp(rng.uniform(0, np.log(hi_n + 1))))
    else:
        n = int(rng.integers(max(1, hi_n // 5), hi_n + 1))
    c = int(np.exp(rng.uniform(0, np.log(hi_c + 1))))
    n, c = min(max(n, 1), hi_n), min(max(c, 1), hi_c)
    return max(1, min(n, max_elems // c)), c


@st.composite
def logits(draw, *, kinds=("numpy", "torch"), dtypes=None, layouts=None, modes=VALUE_MODES,
           max_n: int = 3000, max_c: int = 300, max_elems: int = 60_000, min_c: int = 1):
    """A :class:`Logits` case: any kind, dtype, layout, value mode and shape."""
    n, c = draw(shapes(max_n=max_n, max_c=max_c, max_elems=max_elems))
    c = max(c, min_c)
    kind = draw(st.sampled_from(kinds))
    dtype = draw(st.sampled_from(dtypes or (NUMPY_DTYPES if kind == "numpy" else TORCH_DTYPES)))
    if kind == "torch" and dtype not in TORCH_DTYPES or kind == "numpy" and dtype not in NUMPY_DTYPES:
        dtype = "float32"
    layout = draw(st.sampled_from(layouts or (NUMPY_LAYOUTS if kind == "numpy" else TORCH_LAYOUTS)))
    if kind == "torch" and layout not in TORCH_LAYOUTS:
        layout = "contiguous"
    mode = draw(st.sampled_from(modes))
    seed = draw(SEEDS)
    values = make_values(np.random.default_rng(seed), n, c, mode)
    x, x64 = to_kind(values, kind, dtype, layout)
    return Logits(x, x64, kind, dtype, layout, mode, seed)


@dataclass
class Weight:
    """A head weight as alscale receives it (``w``; None for no weight)."""

    w: object
    mode: str

    def __repr__(self) -> str:
        if self.w is None:
            return "Weight(None)"
        w64 = self.w.detach().double().numpy() if is_torch(self.w) else np.asarray(self.w, np.float64)
        kind = "torch" if is_torch(self.w) else "numpy"
        body = f"np.array({w64.tolist()!r})" if w64.size <= 200 else f"shape={w64.shape}"
        return f"Weight({kind} {self.w.dtype} mode={self.mode} {body})"


WEIGHT_MODES = ("none", "normal", "duplicated", "near_duplicated", "integer", "identical", "scaled")


@st.composite
def weights(draw, num_classes: int, kind: str = "numpy", allow_none: bool = True):
    """None, or a (C, D) weight: random, with duplicated rows (zero ||w_p - w_c||), with
    nearly duplicated rows, integer-valued (many equal rows), all rows identical, scaled."""
    modes = WEIGHT_MODES if allow_none else WEIGHT_MODES[1:]
    mode = draw(st.sampled_from(modes))
    if mode == "none":
        return Weight(None, mode)
    rng = np.random.default_rng(draw(SEEDS))
    d = draw(st.integers(1, 12))
    C = num_classes
    if mode == "normal":
        w = rng.standard_normal((C, d))
    elif mode == "duplicated":
        w = rng.standard_normal((C, d))
        for i in range(C):
            if rng.random() < 0.4:
                w[i] = w[rng.integers(0, C)]
    elif mode == "near_duplicated":
        w = rng.standard_normal((C, d))
        for i in range(C):
            if rng.random() < 0.4:
                w[i] = w[rng.integers(0, C)] * (1.0 + 1e-15 * rng.integers(-2, 3))
    elif mode == "integer":
        w = rng.integers(-1, 2, (C, d)).astype(np.float64)
        w[0, 0] = w[0, 0] or 1.0  # an all-zero weight is refused (tests/test_inputs_selection.py)
    elif mode == "identical":
        w = np.tile(rng.standard_normal((1, d)), (C, 1))
    elif mode == "scaled":
        w = rng.standard_normal((C, d)) * float(rng.choice([1e-3, 1e3]))
    else:
        raise AssertionError(mode)
    dtype = draw(st.sampled_from(["float32", "float64"]))
    layout = draw(st.sampled_from(["contiguous", "fortran"]))
    if kind == "numpy":
        a = w.astype(dtype)
        return Weight(np.ascontiguousarray(a.T).T if layout == "fortran" else a, mode)
    t = torch.tensor(w, dtype=getattr(torch, dtype))
    return Weight(t.t().contiguous().t() if layout == "fortran" else t, mode)


EXCLUDE_MODES = ("none", "indices", "negative_indices", "mask", "empty_indices", "all_mask",
                 "all_indices", "most_mask")


@st.composite
def excludes(draw, n: int, kind: str = "numpy"):
    """None, integer indices (int32/int64, duplicates, negatives), an empty index array,
    or a boolean mask (incl. everything excluded); a torch tensor for ``kind == 'torch'``.
    Never an integer array of n zeros and ones: that 0/1 mask look-alike is refused
    (tests/test_inputs_selection.py)."""
    mode = draw(st.sampled_from(EXCLUDE_MODES))
    if mode == "none":
        return None
    rng = np.random.default_rng(draw(SEEDS))
    if mode == "indices":
        e = rng.integers(0, n, int(rng.integers(0, 2 * n + 1)))
    elif mode == "negative_indices":
        e = rng.integers(-n, n, int(rng.integers(0, 2 * n + 1)))
    elif mode == "empty_indices":
        e = np.zeros(0, dtype=np.int64)
    elif mode == "all_indices":
        e = rng.permutation(n)
    elif mode == "mask":
        e = rng.random(n) < rng.random()
    elif mode == "all_mask":
        e = np.ones(n, dtype=bool)
    elif mode == "most_mask":
        e = rng.random(n) < 0.95
    else:
        raise AssertionError(mode)
    if e.dtype != np.bool_:
        if n >= 3 and e.size == n and e.min() >= 0 and e.max() <= 1:  # the 0/1 mask look-alike
            e = e[:-1]
        e = e.astype(draw(st.sampled_from(["int64", "int32"])))
    return torch.from_numpy(np.ascontiguousarray(e)) if kind == "torch" else e


@st.composite
def budgets(draw, n: int):
    """0, within the pool, around its size, or far past it."""
    return draw(st.one_of(st.just(0), st.integers(0, min(n, 40)), st.integers(0, n),
                          st.integers(max(0, n - 3), n + 3), st.integers(n, 3 * n + 10)))


#: Value modes of the BASE large-budget and device-serving hypothesis tests.
SELECTION_MODES = ("normal", "integer", "halves", "constant", "duplicate_rows", "peaked")


@st.composite
def selection_cases(draw, max_n: int, max_c: int, small_budgets: bool = False):
    """(logits float64, weight or None, exclude mask or None, budget): N small, C up to a few
    hundred, budgets from N/10 up to past N (and from 0 when ``small_budgets``)."""
    rng = np.random.default_rng(draw(SEEDS))
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    x = make_values(rng, n, c, draw(st.sampled_from(SELECTION_MODES)))
    w = draw(weights(c))
    exclude = None
    if draw(st.booleans()):
        exclude = rng.random(n) < draw(st.sampled_from([0.05, 0.3, 0.9]))
    ranges = [st.integers(max(0, n // 10), n), st.integers(n, n + 5)]
    if small_budgets:
        ranges.insert(0, st.integers(0, max(1, n // 10)))
    budget = draw(st.one_of(*ranges))
    return x, w.w, exclude, budget


@st.composite
def head_cases(draw, max_n: int = 300, max_c: int = 40):
    """(logits float64 or float32, head weight, budget 0..N+3, exclude mask or None): the cases of
    the tests that compare a way of reading the head (the pairs on demand) with the float64 table
    and the reference."""
    rng = np.random.default_rng(draw(SEEDS))
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    x = make_values(rng, n, c, draw(st.sampled_from(["normal", "integer", "constant", "duplicate_rows", "peaked"])))
    if draw(st.booleans()):
        x = x.astype(np.float32)
    w = draw(weights(c, allow_none=False)).w
    budget = draw(st.integers(0, n + 3))
    exclude = rng.random(n) < 0.2 if draw(st.booleans()) else None
    return x, w, budget, exclude


THREADS = (1, 2)


# --------------------------------------------------------------------------- assertions


def result_numpy(got, like) -> np.ndarray:
    """Check that ``got`` is an int64 index result of the kind of ``like`` (numpy input ->
    numpy int64 ndarray; torch -> CPU torch.int64 tensor) and return it as numpy."""
    if is_torch(like):
        assert isinstance(got, torch.Tensor), type(got)
        assert got.dtype == torch.int64, got.dtype
        assert got.device.type == "cpu", got.device
        assert got.ndim == 1, got.shape
        return got.numpy().copy()
    assert isinstance(got, np.ndarray), type(got)
    assert got.dtype == np.int64, got.dtype
    assert got.ndim == 1, got.shape
    return got.copy()


def scores_numpy(got, like, n: int) -> np.ndarray:
    """Check that ``got`` is a (n,) float64 score result of the kind of ``like``."""
    if is_torch(like):
        assert isinstance(got, torch.Tensor), type(got)
        assert got.dtype == torch.float64, got.dtype
        assert got.device.type == "cpu", got.device
        out = got.numpy().copy()
    else:
        assert isinstance(got, np.ndarray), type(got)
        assert got.dtype == np.float64, got.dtype
        out = got.copy()
    assert out.shape == (n,), out.shape
    return out


def assert_same_indices(got: np.ndarray, expected: np.ndarray, context: str = "") -> None:
    """Exact equality of two index arrays, with a readable first difference."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape == expected.shape and np.array_equal(got, expected):
        return
    msg = [f"index mismatch {context}: got {got.size} indices, expected {expected.size}"]
    k = min(got.size, expected.size)
    diff = np.flatnonzero(got[:k] != expected[:k])
    if diff.size:
        i = int(diff[0])
        msg.append(f"first difference at position {i}: got {got[i]}, expected {expected[i]}")
        msg.append(f"got[{max(0, i - 3)}:{i + 4}]={got[max(0, i - 3):i + 4].tolist()}")
        msg.append(f"expected[{max(0, i - 3)}:{i + 4}]={expected[max(0, i - 3):i + 4].tolist()}")
    elif got.size <= 50 and expected.size <= 50:
        msg.append(f"got={got.tolist()} expected={expected.tolist()}")
    raise AssertionError("\n".join(msg))


def assert_same_bits(got: np.ndarray, expected: np.ndarray, context: str = "") -> None:
    """Exact float equality (inf == inf), with the first differing row."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    bad = np.flatnonzero(~((got == expected) | (np.isnan(got) & np.isnan(expected))))
    if bad.size:
        i = int(bad[0])
        raise AssertionError(f"{bad.size} values differ {context}; first at row {i}: "
                             f"got {got[i]!r}, expected {expected[i]!r}")


def own_topk(name, logits, budget, exclude):
    """The reference top-k rule (ties to the smaller row) on the kernel's own scores: scores
    equal in exact arithmetic may round apart, so the float64 reference scores cannot decide
    ties (the scores themselves are checked against it in test_scoring.py)."""
    import alscale
    import reference

    kind = name.removeprefix("select_")
    scores = getattr(alscale, kind + "_scores")(logits)
    topk = reference.topk_largest if kind == "entropy" else reference.topk_smallest
    return topk(np.asarray(scores), budget, exclude)

