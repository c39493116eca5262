// The only pybind11 file of alscale._cuda: raw device pointers (read by alscale/_backend/device.py
// from __cuda_array_interface__) and the caller's stream in, kernels launched on that stream
// with the GIL released. No libtorch, no CuPy: outputs are allocated by the caller's framework
// and passed in as pointers. CUDA errors raise RuntimeError, bad input ValueError; never abort.
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "balanced.cuh"
#include "common.hpp"
#include "head.cuh"
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

// A device head weight as the Python layer passes it: (ptr, rows, cols, row_stride, col_stride,
// dtype), rows == the logits' classes (checked there, and here again).
using WeightArgs = std::tuple<std::uintptr_t, int64_t, int64_t, int64_t, int64_t, int>;

std::optional<gpu::DMatrix> weight_of(const std::optional<WeightArgs>& w, int64_t classes) {
    if (!w) return std::nullopt;
    const auto& [ptr, rows, cols, rs, cs, dtype] = *w;
    if (rows != classes) throw std::invalid_argument("weight must have one row per class");
    if (cols < 1) throw std::invalid_argument("weight has no features");
    return matrix(ptr, rows, cols, rs, cs, dtype);
}

// The head's inverse norms on the device (cuda/head.cu), enqueued on the stream: the C x C
// table and the status that says whether the weight was valid.
struct DeviceHead {
    gpu::Buffer<double> inv;
    gpu::Buffer<gpu::HeadStatus> status;
    DeviceHead(const std::optional<gpu::DMatrix>& w, cudaStream_t stream) {
        if (!w) return;
        inv = gpu::Buffer<double>(w->rows * w->rows, stream);
        status = gpu::Buffer<gpu::HeadStatus>(1, stream);
        gpu::head_inverse_norms(*w, inv.get(), status.get(), stream);
    }
    // After the stream was synchronised: raises on a bad weight, else returns the score shift.
    int64_t check(cudaStream_t stream) const {
        if (!status.get()) return 0;
        auto* s = static_cast<gpu::HeadStatus*>(gpu::pinned_scratch(sizeof(gpu::HeadStatus)));
        gpu::to_host(s, status.get(), 1, stream);
        gpu::sync(stream);
        gpu::check_head_status(*s);
        return s->shift;
    }
};

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "alscale CUDA kernels (private; use the alscale package, which dispatches CUDA tensors here)";
#ifdef ALSCALE_VERSION
    m.attr("__version__") = ALSCALE_VERSION;
#endif
    m.attr("knn_max_k") = gpu::kKnnMaxK;
    m.attr("knn_tc_max_dims") = kKnnBoundMaxDims;  // wider points: the float32 kernel

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
           const std::optional<WeightArgs>& weight, std::uintptr_t out, std::uintptr_t stream, int device) {
            const gpu::DMatrix x = matrix(ptr, rows, cols, rs, cs, dtype);
            const std::optional<gpu::DMatrix> w = weight_of(weight, cols);
            int64_t bad, shift;
            {
                py::gil_scoped_release nogil;
                DeviceGuard guard(device);
                const cudaStream_t s = stream_of(stream);
                DeviceHead head(w, s);
                bad = gpu::boundary_scores(x, head.inv.get(), reinterpret_cast<double*>(out), s);
                shift = head.check(s);  // a bad weight is reported before bad logits, as on the CPU
            }
            if (bad >= 0) throw_non_finite(bad);
            return shift;
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("col_stride"), py::arg("dtype"),
        py::arg("weight"), py::arg("out"), py::arg("stream"), py::arg("device"),
        "Writes min_c r_c of every row to out; the weight (a device matrix, or None) is read on the device. "
        "Returns the shift s: the true scores are out * 2**s (0 unless the head leaves float64's range).");

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
           std::uintptr_t exclude, const std::optional<WeightArgs>& weight, std::uintptr_t out, std::uintptr_t stream,
           int device) {
            const gpu::DMatrix x = matrix(ptr, rows, cols, rs, cs, dtype);
            if (budget < 0) throw std::invalid_argument("budget must be non-negative");
            if (budget > 0 && !out) throw std::invalid_argument("null output pointer");
            const std::optional<gpu::DMatrix> w = weight_of(weight, cols);
            py::gil_scoped_release nogil;
            DeviceGuard guard(device);
            const cudaStream_t s = stream_of(stream);
            DeviceHead head(w, s);
            return gpu::select_balanced(x, budget, reinterpret_cast<const uint8_t*>(exclude), head.inv.get(),
                                        head.status.get(), reinterpret_cast<int64_t*>(out), s);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("col_stride"), py::arg("dtype"),
        py::arg("budget"), py::arg("exclude"), py::arg("weight"), py::arg("out"), py::arg("stream"), py::arg("device"),
        "BASE on device logits, served on the device: writes the selected rows (exactly the CPU kernel's) to out "
        "(device int64, at least min(budget, rows)) and returns how many.");

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
