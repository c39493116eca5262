// What every register_*.cpp shares: the array types, the views of numpy buffers the kernels read,
// the results handed back as numpy arrays, and nogil(), around every kernel call. Validation with
// friendly messages lives in the Python layer (alscale/_backend/arrays.py); the checks here only
// keep bad calls from crashing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.hpp"
#include "head.hpp"

namespace alscale::bind {

namespace py = pybind11;

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

inline const float* points_of(const F32Array& x) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D");
    return x.data();
}

// A 2-D float16/float32/float64 array (or int16/uint16 holding bfloat16 bits when bf16 is set).
inline Matrix matrix_view(const py::array& a, bool bf16) {
    if (a.ndim() != 2) throw std::invalid_argument("logits must be 2-D");
    Matrix m;
    m.data = static_cast<const char*>(a.data());
    m.rows = a.shape(0);
    m.cols = a.shape(1);
    m.row_stride = a.strides(0);
    m.col_stride = a.strides(1);
    const char kind = a.dtype().kind();
    const auto size = a.itemsize();
    if (bf16 && (kind == 'i' || kind == 'u') && size == 2)
        m.dtype = DType::bf16;
    else if (!bf16 && kind == 'f' && size == 2)
        m.dtype = DType::f16;
    else if (!bf16 && kind == 'f' && size == 4)
        m.dtype = DType::f32;
    else if (!bf16 && kind == 'f' && size == 8)
        m.dtype = DType::f64;
    else
        throw py::type_error("logits must be float16, bfloat16, float32 or float64");
    return m;
}

// The head argument of a kernel: None (no weight), a C x C float64 table, or a PairNorms. `hold`
// keeps a converted table alive for the call.
inline HeadNorms head_of(const py::object& inv, int64_t classes, F64Array& hold) {
    if (inv.is_none()) return {};
    if (py::isinstance<PairNorms>(inv)) {
        const PairNorms& pairs = inv.cast<const PairNorms&>();
        if (pairs.classes() != classes)
            throw std::invalid_argument("the head has " + std::to_string(pairs.classes()) + " classes but the logits have " +
                                        std::to_string(classes));
        return {nullptr, &pairs};
    }
    hold = inv.cast<F64Array>();
    if (hold.ndim() != 2 || hold.shape(0) != classes || hold.shape(1) != classes)
        throw std::invalid_argument("inverse norms must be C x C");
    return {hold.data(), nullptr};
}

inline const uint8_t* mask_of(const std::optional<U8Array>& mask, int64_t rows) {
    if (!mask) return nullptr;
    if (mask->ndim() != 1 || mask->shape(0) != rows) throw std::invalid_argument("exclude mask has the wrong length");
    return mask->data();
}

// A C-contiguous 2-D float32/float64 embedding matrix: true for float64.
inline bool embedding_is_f64(const py::array& z, int64_t rows) {
    if (z.ndim() != 2) throw std::invalid_argument("embeddings must be 2-D");
    if (z.shape(0) != rows) throw std::invalid_argument("embeddings must have one row per pool row");
    if (!(z.flags() & py::array::c_style)) throw std::invalid_argument("embeddings must be C-contiguous");
    const char kind = z.dtype().kind();
    if (kind == 'f' && z.itemsize() == 4) return false;
    if (kind == 'f' && z.itemsize() == 8) return true;
    throw py::type_error("embeddings must be float32 or float64");
}

inline py::array_t<int64_t> to_numpy(std::vector<int64_t>&& v) {
    auto* heap = new std::vector<int64_t>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
    return py::array_t<int64_t>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

template <class T>
py::array_t<T> to_numpy_copy(const std::vector<T>& v) {
    py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

// Runs f with the GIL released: every kernel call goes through here.
template <class F>
decltype(auto) nogil(F&& f) {
    py::gil_scoped_release release;
    return f();
}

}  // namespace alscale::bind
