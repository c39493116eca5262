"""Device dispatch: CUDA tensors (torch) and CuPy arrays to the GPU kernels of ``alscale._cuda``.

Nothing here links libtorch or CuPy. An input on a CUDA device is read through its
``__cuda_array_interface__`` (a torch bfloat16 tensor, which has none, as its int16 bits); the
kernels run on the caller's current stream of the input's device; outputs are allocated by the
caller's framework (``torch.empty`` / ``cupy.empty``) on that device and handed to the kernels
as raw pointers, so results come back as the same kind on the same device. The head weight's
inverse norms are computed on the device (cuda/head.cu, the CPU's arithmetic) from a device
weight read in place, or from a host weight checked as on the CPU path and copied once; an
exclude list is converted on the host exactly as on the CPU path and copied to the device.

The selection functions call :func:`wants` first: True sends the call here, False leaves it to
the CPU path; an input on a CUDA device without the GPU build raises a clear ValueError.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # the GPU build is optional; decided here once (alscale.HAS_CUDA)
    from .. import _cuda

    CUDA_IMPORT_ERROR: ImportError | None = None
except ImportError as _err:  # pragma: no cover - depends on the build
    _cuda = None
    CUDA_IMPORT_ERROR = _err
HAS_CUDA = _cuda is not None
from .. import _core
from .arrays import device_error, is_torch, as_exclude, as_points, check_weight, unit_rows
from .rules import Head, Rule

# the kernels' dtype codes (csrc/dtype.hpp DType, for the CPU and CUDA kernels alike; alscale._core.DType)
_F16, _BF16, _F32, _F64 = (int(_core.DType.f16), int(_core.DType.bf16), int(_core.DType.f32), int(_core.DType.f64))
_TYPESTR_CODES = {"f2": _F16, "f4": _F32, "f8": _F64}
_FLOAT_NAMES = "float16, bfloat16, float32 or float64"


@dataclass(frozen=True)
class Interface:
    """A parsed ``__cuda_array_interface__``: pointer, shape, strides in bytes, dtype."""

    ptr: int
    shape: tuple
    strides: tuple  # bytes
    typestr: str
    readonly: bool

    @property
    def itemsize(self) -> int:
        return int(self.typestr[2:])

    @property
    def kind(self) -> str:
        return self.typestr[1]


def parse_interface(cai: Any, name: str = "array") -> Interface:
    """Validates a ``__cuda_array_interface__`` dict (versions 0-3) and fills in C-contiguous
    strides when they are None. Raises ValueError/TypeError naming ``name`` on a malformed one."""
    if not isinstance(cai, dict):
        raise TypeError(f"{name}.__cuda_array_interface__ must be a dict, got {type(cai).__name__}")
    for key in ("shape", "typestr", "data"):
        if key not in cai:
            raise ValueError(f"{name}.__cuda_array_interface__ has no {key!r} entry")
    if cai.get("mask") is not None:
        raise ValueError(f"{name} is a masked device array; alscale does not read masks")
    shape = tuple(int(s) for s in cai["shape"])
    if any(s < 0 for s in shape):
        raise ValueError(f"{name} has a negative dimension: shape {shape}")
    typestr = cai["typestr"]
    if not isinstance(typestr, str) or len(typestr) < 3 or typestr[0] not in "<>|=" or not typestr[2:].isdigit():
        raise ValueError(f"{name} has an unreadable typestr {typestr!r}")
    if typestr[0] == ">" and int(typestr[2:]) > 1:
        raise TypeError(f"{name} is big-endian ({typestr}); alscale reads little-endian device arrays")
    data = cai["data"]
    if not (isinstance(data, tuple) and len(data) == 2):
        raise ValueError(f"{name}.__cuda_array_interface__['data'] must be a (pointer, read_only) tuple")
    ptr, readonly = int(data[0] or 0), bool(data[1])
    itemsize = int(typestr[2:])
    strides = cai.get("strides")
    if strides is None:
        out, step = [], itemsize
        for s in reversed(shape):
            out.append(step)
            step *= max(s, 1)
        strides = tuple(reversed(out))
    else:
        strides = tuple(int(s) for s in strides)
        if len(strides) != len(shape):
            raise ValueError(f"{name} has {len(strides)} strides for {len(shape)} dimensions")
    if ptr == 0 and all(s > 0 for s in shape):
        raise ValueError(f"{name} has a null data pointer")
    return Interface(ptr, shape, strides, typestr, readonly)


def is_device_array(x: Any) -> bool:
    """True for a torch tensor on a CUDA device and for any other object with a
    ``__cuda_array_interface__`` (CuPy, Numba, ...)."""
    if is_torch(x):
        return x.device.type == "cuda"
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # a property that raises
        return False


def wants(x: Any, name: str = "logits") -> bool:
    """Whether a call on ``x`` goes to the GPU kernels. Raises the clear error for a device
    array when this build has no GPU kernels."""
    if not is_device_array(x):
        return False
    if _cuda is None:
        if is_torch(x):
            raise device_error(name, x.device)
        raise ValueError(
            f"{name} is a CUDA device array ({type(x).__name__}), but this alscale build has no GPU "
            "kernels (alscale._cuda); copy it to the host (e.g. cupy.asnumpy) or build alscale with a "
            "CUDA toolkit"
        )
    return True


# ---- frameworks: device, stream, allocation, host copies ----


class _Torch:
    def __init__(self, t):
        import torch

        self.torch, self.device = torch, t.device

    @property
    def index(self) -> int:
        return self.device.index if self.device.index is not None else self.torch.cuda.current_device()

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def empty(self, n, dtype):
        return self.torch.empty(n, dtype=getattr(self.torch, np.dtype(dtype).name), device=self.device)

    def from_numpy(self, a: np.ndarray):
        return self.torch.as_tensor(np.ascontiguousarray(a), device=self.device)

    def ptr(self, t) -> int:
        return int(t.data_ptr())

    def wrap_pair(self, a, b):
        return a, b


class _CuPy:
    def __init__(self, x):
        import cupy

        self.cupy, self.device = cupy, x.device

    @property
    def index(self) -> int:
        return int(self.device.id)

    def stream(self) -> int:
        with self.device:
            return int(self.cupy.cuda.get_current_stream().ptr)

    def empty(self, n, dtype):
        with self.device:
            return self.cupy.empty(n, dtype=dtype)

    def from_numpy(self, a: np.ndarray):
        with self.device:
            return self.cupy.asarray(np.ascontiguousarray(a))

    def ptr(self, a) -> int:
        return int(a.__cuda_array_interface__["data"][0])

    def wrap_pair(self, a, b):
        return a, b


def _framework(x):
    if is_torch(x):
        return _Torch(x)
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return _CuPy(x)
    raise TypeError(
        f"alscale reads CUDA inputs from torch tensors and CuPy arrays, got {type(x).__name__}; "
        "wrap it with torch.as_tensor(..., device='cuda') or cupy.asarray"
    )


def _device_of(x: Any) -> int:
    if is_torch(x):
        return x.device.index if x.device.index is not None else _framework(x).index
    dev = getattr(x, "device", None)
    if dev is not None and hasattr(dev, "id"):
        return int(dev.id)
    return int(_cuda.pointer_device(parse_interface(x.__cuda_array_interface__).ptr))


def check_same_device(name: str, x: Any, device: int, logits_name: str = "logits") -> None:
    """A device array ``x`` must be on CUDA device ``device`` (that of the logits)."""
    if is_device_array(x):
        other = _device_of(x)
        if other != device:
            raise ValueError(
                f"{name} is on cuda:{other} but {logits_name} are on cuda:{device}; put them on the same device"
            )


@dataclass
class _Logits:
    obj: Any  # keeps the viewed memory alive
    fw: Any
    device: int
    cai: Interface
    dtype: int

    @property
    def rows(self) -> int:
        return self.cai.shape[0]

    @property
    def classes(self) -> int:
        return self.cai.shape[1]

    def args(self):
        i = self.cai
        return (i.ptr, i.shape[0], i.shape[1], i.strides[0] // i.itemsize, i.strides[1] // i.itemsize, self.dtype)


def _matrix(x: Any, fw, name: str):
    """A 2-D float device array as (object keeping the memory alive, interface, dtype code)."""
    bf16 = False
    if is_torch(x):
        torch = fw.torch
        t = x.detach()
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError(f"{name} must be a floating-point tensor ({_FLOAT_NAMES}), got {t.dtype}")
        t = t.resolve_conj().resolve_neg()
        if t.dtype == torch.bfloat16:  # no typestr for bfloat16: its bits as int16
            t, bf16 = t.view(torch.int16), True
        obj, cai = t, parse_interface(t.__cuda_array_interface__, name)
    else:
        obj, cai = x, parse_interface(x.__cuda_array_interface__, name)
    if len(cai.shape) != 2:
        return obj, cai, None
    if bf16:
        code = _BF16
    elif cai.kind == "f" and cai.typestr[1:] in _TYPESTR_CODES:
        code = _TYPESTR_CODES[cai.typestr[1:]]
    else:
        raise TypeError(f"{name} must be a floating-point array ({_FLOAT_NAMES}), got typestr {cai.typestr}")
    if any(s % cai.itemsize for s in cai.strides):
        raise ValueError(f"{name} has strides {cai.strides} that are not whole elements")
    return obj, cai, code


def _logits(x: Any, name: str = "logits", allow_empty: bool = False) -> _Logits:
    fw = _framework(x)
    obj, cai, code = _matrix(x, fw, name)
    if code is None:
        raise ValueError(f"{name} must be 2-D (rows, classes), got shape {cai.shape}")
    if cai.shape[1] == 0:
        raise ValueError(f"{name} have no classes: shape {cai.shape}")
    if cai.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} have no rows: the pool is empty")
    return _Logits(obj, fw, _device_of(x), cai, code)


def _host(x: Any, name: str, device: int):
    """A small argument (weight, exclude) as host data, after the same-device check."""
    if not is_device_array(x):
        return x
    check_same_device(name, x, device)
    if is_torch(x):
        return x.detach().cpu()
    return x.get() if hasattr(x, "get") else np.asarray(x)


def _exclude_mask(x: _Logits, exclude: Any):
    """The exclusion as a device uint8 mask (kept alive by the caller) or None."""
    if exclude is None:
        return None
    if is_device_array(exclude):
        check_same_device("exclude", exclude, x.device)
        if is_torch(exclude):
            torch = x.fw.torch
            e = exclude.detach()
            if e.dim() == 1 and e.dtype == torch.bool and e.shape[0] == x.rows:
                return e.contiguous().view(torch.uint8)  # stays on the device
    mask = as_exclude(_host(exclude, "exclude", x.device), x.rows)  # the CPU path's validation
    return None if mask is None else x.fw.from_numpy(mask)


def _ptr(fw, a) -> int:
    return 0 if a is None else fw.ptr(a)


# ---- the kernels ----


def _scaled(fw, scores, shift: int):
    """Device scores times 2**shift (a head beyond float64's range, see HeadNorms)."""
    while shift:
        step = max(-1000, min(1000, shift))
        scores = scores * (2.0**step)
        shift -= step
    return scores


class DevicePool:
    """The device backend: logits on a CUDA device (torch tensor or CuPy array), read in place on
    the caller's stream; results are allocated on that device by the caller's framework."""

    def __init__(self, logits: Any, exclude: Any):
        self.x = _logits(logits)
        self.mask = _exclude_mask(self.x, exclude)  # kept alive for the kernels

    def _weight(self, head: Head | None):
        """The head weight as the kernels read it on the device: (keep-alive object, (ptr, rows,
        cols, row_stride, col_stride, dtype)) or (None, None). A float device weight is read in
        place (any strides and float dtype; its checks run on the device, the errors are the CPU
        path's); any other weight is checked on the host as on the CPU path and copied once."""
        if head is None or head.weight is None:
            return None, None
        x, w = self.x, head.weight
        if is_device_array(w):
            check_same_device("weight", w, x.device)
            floating = (w.dtype.is_floating_point and not w.is_complex()) if is_torch(w) else (
                parse_interface(w.__cuda_array_interface__, "weight").kind == "f")
            if floating:
                obj, cai, code = _matrix(w, _framework(w), "weight")
                if code is None:
                    raise ValueError(f"weight must be 2-D (classes, features), got shape {tuple(cai.shape)}")
                if cai.shape[0] != x.classes:
                    raise ValueError(f"weight has {cai.shape[0]} rows but the logits have {x.classes} classes")
                if cai.shape[1] == 0:
                    raise ValueError(f"weight has no features: shape {tuple(cai.shape)}")
                i = cai
                return obj, (i.ptr, i.shape[0], i.shape[1], i.strides[0] // i.itemsize, i.strides[1] // i.itemsize, code)
        obj = x.fw.from_numpy(check_weight(_host(w, "weight", x.device), x.classes))  # float64, C-contiguous
        rows, cols = obj.shape
        return obj, (x.fw.ptr(obj), rows, cols, cols, 1, _F64)

    def _scores(self, rule: Rule):
        if rule.multilabel:  # pool_of refuses it first; a guard for direct use of this backend
            raise NotImplementedError("multilabel=True on CUDA tensors is not built yet; pass logits.cpu()")
        x = self.x
        out = x.fw.empty(x.rows, np.float64)
        if rule.kind is None:
            keep, weight = self._weight(rule.head)
            shift = _cuda.boundary_scores(*x.args(), weight, x.fw.ptr(out), x.fw.stream(), x.device)
            del keep  # the kernels finished (boundary_scores waits for its stream)
            return out, shift
        _cuda.uncertainty_scores(*x.args(), int(rule.kind), x.fw.ptr(out), x.fw.stream(), x.device)
        return out, 0

    def _top(self, scores, k: int, largest: bool):
        x = self.x
        k = min(k, x.rows)
        out = x.fw.empty(k, np.int64)
        count = _cuda.select_topk(x.fw.ptr(scores), x.rows, k, _ptr(x.fw, self.mask), largest, x.fw.ptr(out),
                                  x.fw.stream(), x.device)
        return out[:count]

    def scores(self, rule: Rule):
        scores, shift = self._scores(rule)
        return _scaled(self.x.fw, scores, shift)

    def top(self, rule: Rule, k: int):
        return self._top(self._scores(rule)[0], k, rule.largest)

    def balanced(self, k: int, head: Head):
        """BASE served on the device: the picks are written into a device int64 array of the
        caller's framework; the one synchronisation per pass happens inside the kernel call."""
        x = self.x
        keep, weight = self._weight(head)
        out = x.fw.empty(min(k, x.rows), np.int64)
        count = _cuda.select_balanced(*x.args(), min(k, x.rows), _ptr(x.fw, self.mask), weight, x.fw.ptr(out),
                                      x.fw.stream(), x.device)
        del keep
        return out[:count]

    def cluster_margin(self, rule: Rule, labels: np.ndarray, k: int, km: int, seed: int):
        """The k_m candidates on the device; their round-robin (O(k_m)) on the host."""
        x = self.x
        if labels.shape[0] != x.rows:
            raise ValueError(f"clusters must have one label per logits row ({x.rows}), got shape {labels.shape}")
        rows = self._top(self._scores(rule)[0], km, False)
        host = rows.cpu().numpy() if is_torch(rows) else rows.get()
        return x.fw.from_numpy(_core.cluster_round_robin(host, labels[host], k, seed))


_KNN_PRECISIONS = {"bf16": 0, "tf32": 1}  # cuda/knn_tc.cuh (csrc/knn_bound.hpp KnnPrecision)
_KNN_TC_MIN_POINTS = 4096  # below this the fp32 kernel's single pass is as fast as two stages


def knn_graph(points: Any, k: int, precision: str = "auto"):
    """Exact cosine kNN graph of device points: normalised on the host exactly as the CPU path
    (so the graph is the CPU's), then a GPU kernel; (indices, similarities) on the device.

    ``precision`` picks the kernel, never the result (every choice gives the CPU's graph bit for
    bit): "fp32" the float32 SIMT kernel (cuda/knn.cu); "tf32" / "bf16" candidates from a
    tensor-core GEMM filtered by a proven error bound, re-ranked in float32 (cuda/knn_tc.cu);
    "auto" is "fp32" below 4096 points and "tf32" from there (its bound is 8 times tighter than
    bf16's, so clustered or duplicate-heavy points leave far fewer rows to the fallback)."""
    if not isinstance(precision, str) or precision not in ("auto", "fp32", *_KNN_PRECISIONS):
        raise ValueError(f"precision must be 'auto', 'fp32', 'tf32' or 'bf16', got {precision!r}")
    fw = _framework(points)
    device = _device_of(points)
    a = as_points(_host(points, "x", device))
    if k >= a.shape[0]:
        raise ValueError(f"k must be less than the number of points ({a.shape[0]}), got {k}")
    if k > _cuda.knn_max_k:
        raise ValueError(
            f"the GPU kNN keeps at most {_cuda.knn_max_k} neighbours per point, got k={k}; pass the points "
            "on the CPU for a larger k"
        )
    unit = fw.from_numpy(unit_rows(a))
    n, d = a.shape
    if precision == "auto":
        precision = "fp32" if n < _KNN_TC_MIN_POINTS or d > _cuda.knn_tc_max_dims else "tf32"
    idx = fw.empty(n * k, np.int64)
    sim = fw.empty(n * k, np.float32)
    if precision == "fp32":
        _cuda.knn_exact(fw.ptr(unit), n, d, k, fw.ptr(idx), fw.ptr(sim), fw.stream(), device)
    else:
        _cuda.knn_tc(fw.ptr(unit), n, d, k, _KNN_PRECISIONS[precision], fw.ptr(idx), fw.ptr(sim), fw.stream(), device)
    return idx.reshape(n, k), sim.reshape(n, k)
