// The only pybind11 file of alscale._cuda: raw device pointers (read by alscale/_backend/device.py
// from __cuda_array_interface__) and the caller's stream in, kernels launched on that stream
// with the GIL released. No libtorch, no CuPy: outputs are allocated by the caller's framework
// and passed in as pointers. CUDA errors raise RuntimeError, bad input ValueError; never abort.
#include <cstdint>
#include <optional>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "balanced.cuh"
#include "common.hpp"
#include "knn.cuh"
#include "knn_tc.cuh"
#include "scoring.cuh"
#include "topk.cuh"

namespace py = pybind11;
using namespace alscale;

namespace {

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

cudaStream_t stream_of(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Makes `device` current for the call and restores the caller's device afterwards.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        ALSCALE_CUDA_CHECK(cudaGetDevice(&previous_));
        if (device != previous_) ALSCALE_CUDA_CHECK(cudaSetDevice(device));
    }
    ~DeviceGuard() { cudaSetDevice(previous_); }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = 0;
};

gpu::DMatrix matrix(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, int dtype) {
    if (dtype < 0 || dtype > 3) throw std::invalid_argument("unknown logits dtype code");
    if (rows < 0 || cols < 1) throw std::invalid_argument("logits must have at least one class");
    if (!ptr && rows > 0) throw std::invalid_argument("null device pointer");
    gpu::DMatrix m;
    m.data = reinterpret_cast<const void*>(ptr);
    m.rows = rows;
    m.cols = cols;
    m.row_stride = row_stride;
    m.col_stride = col_stride;
    m.dtype = static_cast<gpu::DType>(dtype);
    return m;
}

const double* host_inv(const std::optional<F64Array>& inv, int64_t classes) {
    if (!inv) return nullptr;
    if (inv->ndim() != 2 || inv->shape(0) != classes || inv->shape(1) != classes)
        throw std::invalid_argument("inverse norms must be C x C");
    return inv->data();
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "alscale CUDA kernels (private; use the alscale package, which dispatches CUDA tensors here)";
#ifdef ALSCALE_VERSION
    m.attr("__version__") = ALSCALE_VERSION;
#endif
    m.attr("knn_max_k") = gpu::kKnnMaxK;

    m.def("device_count", [] {
        int n = 0;
        return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;  // no driver or no GPU: 0
    });
    m.def(
        "pointer_device",
        [](std::uintptr_t ptr) {
            cudaPointerAttributes a{};
            if (cudaPointerGetAttributes(&a, reinterpret_cast<const void*>(ptr)) != cudaSuccess) {
                cudaGetLastError();
                return -1;
            }
            return (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) ? a.device : -1;
        },
        py::arg("ptr"), "The CUDA device holding a pointer, or -1 for host memory.");

    m.def(
        "uncertainty_scores",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int dtype, int kind, std::uintptr_t out,
           std::uintptr_t stream, int device) {
            const gpu::DMatrix x = matrix(ptr, rows, cols, rs, cs, dtype);
            int64_t bad;
            {
                py::gil_scoped_release nogil;
                DeviceGuard guard(device);
                bad = gpu::uncertainty_scores(x, kind, reinterpret_cast<double*>(out), stream_of(stream));
            }
            if (bad >= 0) throw_non_finite(bad);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("col_stride"), py::arg("dtype"),
        py::arg("kind"), py::arg("out"), py::arg("stream"), py::arg("device"));

    m.def(
        "boundary_scores",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int dtype,
           const std::optional<F64Array>& inv, std::uintptr_t out, std::uintptr_t stream, int device) {
            const gpu::DMatrix x = matrix(ptr, rows, cols, rs, cs, dtype);
            const double* in = host_inv(inv, cols);
            int64_t bad;
            {
                py::gil_scoped_release nogil;
                DeviceGuard guard(device);
                const cudaStream_t s = stream_of(stream);
                gpu::Buffer<double> dinv;
                if (in) {
                    dinv = gpu::Buffer<double>(cols * cols, s);
                    gpu::to_device(dinv.get(), in, cols * cols, s);
                }
                bad = gpu::boundary_scores(x, dinv.get(), reinterpret_cast<double*>(out), s);
            }
            if (bad >= 0) throw_non_finite(bad);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("col_stride"), py::arg("dtype"),
        py::arg("inv_norm"), py::arg("out"), py::arg("stream"), py::arg("device"));

    m.def(
        "select_topk",
        [](std::uintptr_t scores, int64_t n, int64_t k, std::uintptr_t exclude, bool largest, std::uintptr_t out,
           std::uintptr_t stream, int device) {
            py::gil_scoped_release nogil;
            DeviceGuard guard(device);
            return gpu::select_topk(reinterpret_cast<const double*>(scores), n, k, reinterpret_cast<const uint8_t*>(exclude),
                                    largest, reinterpret_cast<int64_t*>(out), stream_of(stream));
        },
        py::arg("scores"), py::arg("n"), py::arg("k"), py::arg("exclude"), py::arg("largest"), py::arg("out"),
        py::arg("stream"), py::arg("device"), "Writes min(k, available) rows to out; returns how many.");

    m.def(
        "select_balanced",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int dtype, int64_t budget,
           std::uintptr_t exclude, const std::optional<F64Array>& inv, std::uintptr_t stream, int device) {
            const gpu::DMatrix x = matrix(ptr, rows, cols, rs, cs, dtype);
            if (budget < 0) throw std::invalid_argument("budget must be non-negative");
            const double* in = host_inv(inv, cols);
            std::vector<int64_t> picks;
            {
                py::gil_scoped_release nogil;
                DeviceGuard guard(device);
                picks = gpu::select_balanced(x, budget, reinterpret_cast<const uint8_t*>(exclude), in, stream_of(stream));
            }
            py::array_t<int64_t> result(static_cast<py::ssize_t>(picks.size()));
            std::copy(picks.begin(), picks.end(), result.mutable_data());
            return result;
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("col_stride"), py::arg("dtype"),
        py::arg("budget"), py::arg("exclude"), py::arg("inv_norm"), py::arg("stream"), py::arg("device"),
        "BASE on device logits; returns the selected rows (host int64), exactly the CPU kernel's.");

    m.def(
        "knn_exact",
        [](std::uintptr_t x, int64_t n, int64_t d, int64_t k, std::uintptr_t indices, std::uintptr_t similarities,
           std::uintptr_t stream, int device) {
            py::gil_scoped_release nogil;
            DeviceGuard guard(device);
            gpu::knn_exact(reinterpret_cast<const float*>(x), n, d, k, reinterpret_cast<int64_t*>(indices),
                           reinterpret_cast<float*>(similarities), stream_of(stream));
        },
        py::arg("x"), py::arg("n"), py::arg("d"), py::arg("k"), py::arg("indices"), py::arg("similarities"),
        py::arg("stream"), py::arg("device"));
    m.def(
        "knn_tc",
        [](std::uintptr_t x, int64_t n, int64_t d, int64_t k, int precision, std::uintptr_t indices,
           std::uintptr_t similarities, std::uintptr_t stream, int device) {
            if (precision != static_cast<int>(KnnPrecision::bf16) && precision != static_cast<int>(KnnPrecision::tf32))
                throw std::invalid_argument("precision must be 0 (bf16) or 1 (tf32)");
            if (!x || !indices || !similarities) throw std::invalid_argument("null device pointer");
            py::gil_scoped_release nogil;
            DeviceGuard guard(device);
            return gpu::knn_tc(reinterpret_cast<const float*>(x), n, d, k, static_cast<KnnPrecision>(precision),
                               reinterpret_cast<int64_t*>(indices), reinterpret_cast<float*>(similarities),
                               stream_of(stream));
        },
        py::arg("x"), py::arg("n"), py::arg("d"), py::arg("k"), py::arg("precision"), py::arg("indices"),
        py::arg("similarities"), py::arg("stream"), py::arg("device"),
        "The exact kNN graph from a bf16 (0) / TF32 (1) tensor-core GEMM, re-ranked in float32 (cuda/knn_tc.cuh); "
        "returns how many rows fell back to the exact kernel.");
    m.def("knn_tc_capacity", &gpu::knn_tc_capacity, py::arg("k"),
          "Candidates per row the tensor-core kNN keeps for k neighbours (tests build inputs that overflow it).");
}
