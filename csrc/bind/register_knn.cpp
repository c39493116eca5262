// alscale._core: kNN graphs and the tensor-core kNN's error bound.
#include "knn.hpp"
#include "knn_bound.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_knn(py::module_& m) {
    m.def(
        "knn_exact",
        [](const F32Array& x, int64_t k, int num_threads) {
            const float* p = points_of(x);
            const int64_t n = x.shape(0), d = x.shape(1);
            if (k < 1 || k >= n) throw std::invalid_argument("knn needs 1 <= k < n");
            py::array_t<int64_t> idx({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            py::array_t<float> sim({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            int64_t* pi = idx.mutable_data();
            float* ps = sim.mutable_data();
            nogil([&] { knn_exact(p, n, d, k, pi, ps, num_threads); });
            return py::make_tuple(idx, sim);
        },
        py::arg("x"), py::arg("k"), py::arg("num_threads") = 0);

    m.def(
        "knn_cells",
        [](const F32Array& x, int64_t k, const I64Array& cell_start, const I64Array& cell_rows,
           const I64Array& probe_start, const I64Array& probes, int num_threads) {
            const float* p = points_of(x);
            const int64_t n = x.shape(0), d = x.shape(1);
            const int64_t cells = cell_start.ndim() == 1 ? cell_start.shape(0) - 1 : -1;
            if (cells < 1 || cell_rows.ndim() != 1 || cell_rows.shape(0) != n || probe_start.ndim() != 1 ||
                probe_start.shape(0) != cells + 1 || probes.ndim() != 1 || probe_start.data()[0] != 0 ||
                probe_start.data()[cells] != probes.shape(0))
                throw std::invalid_argument("knn_cells needs CSR cells (cells + 1 offsets, n rows) and probes");
            if (k < 1) throw std::invalid_argument("knn needs k >= 1");
            py::array_t<int64_t> idx({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            py::array_t<float> sim({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            int64_t* pi = idx.mutable_data();
            float* ps = sim.mutable_data();
            nogil([&] { knn_cells(p, n, d, k, cell_start.data(), cell_rows.data(), cells, probe_start.data(), probes.data(),
                          pi, ps, num_threads); });
            return py::make_tuple(idx, sim);
        },
        py::arg("x"), py::arg("k"), py::arg("cell_start"), py::arg("cell_rows"), py::arg("probe_start"),
        py::arg("probes"), py::arg("num_threads") = 0);

    m.def(
        "knn_candidate_bound",
        [](int64_t d, const std::string& precision) {
            if (d < 1 || d > kKnnBoundMaxDims)
                throw std::invalid_argument("d must be in [1, " + std::to_string(kKnnBoundMaxDims) + "], got " +
                                            std::to_string(d));
            if (precision != "bf16" && precision != "tf32")
                throw std::invalid_argument("precision must be 'bf16' or 'tf32', got '" + precision + "'");
            return knn_candidate_bound(d, precision == "bf16" ? KnnPrecision::bf16 : KnnPrecision::tf32);
        },
        py::arg("d"), py::arg("precision"),
        "eps (a float32 value) with |s^ - s| <= eps for unit float32 rows of d dimensions: s the CPU kNN "
        "kernel's similarity, s^ the tensor-core GEMM's with operands rounded to precision (csrc/knn_bound.hpp).");

    m.def(
        "knn_row_bound",
        [](double rho, double rho_max, int64_t d, const std::string& precision) {
            if (d < 1 || d > kKnnBoundMaxDims)
                throw std::invalid_argument("d must be in [1, " + std::to_string(kKnnBoundMaxDims) + "], got " +
                                            std::to_string(d));
            if (precision != "bf16" && precision != "tf32")
                throw std::invalid_argument("precision must be 'bf16' or 'tf32', got '" + precision + "'");
            if (!(rho >= 0 && rho_max >= rho && rho_max < 1))
                throw std::invalid_argument("need 0 <= rho <= rho_max < 1 (float32 values)");
            if (static_cast<double>(static_cast<float>(rho)) != rho ||
                static_cast<double>(static_cast<float>(rho_max)) != rho_max)
                throw std::invalid_argument("rho and rho_max must be float32 values");
            return knn_row_bound(static_cast<float>(rho), static_cast<float>(rho_max), d,
                                 precision == "bf16" ? KnnPrecision::bf16 : KnnPrecision::tf32);
        },
        py::arg("rho"), py::arg("rho_max"), py::arg("d"), py::arg("precision"),
        "The per-row bound E (csrc/knn_bound.hpp knn_row_bound) for a row whose rounding error has norm <= rho, "
        "rho_max bounding every row's.");

    m.def(
        "knn_rounding_norm", [](double ss, int64_t d) { return knn_rounding_norm(ss, d); }, py::arg("ss"), py::arg("d"),
        "rho >= ||r(a) - a|| from the float64 sum ss of the d squared rounding differences (rounded up to a float32).");
}

}  // namespace alscale::bind
