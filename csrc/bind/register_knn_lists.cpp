// alscale._core: the kNN graph over an inverted file, searched GEMM-shaped (csrc/knn_lists.hpp).
#include "knn_lists.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {
void register_knn_lists(py::module_& m) {
    m.def(
        "knn_rank_lists",
        [](const F32Array& x, const F32Array& centroids, int64_t probes, int num_threads) {
            const float* p = points_of(x);
            const float* c = points_of(centroids);
            const int64_t n = x.shape(0), d = x.shape(1), lists = centroids.shape(0);
            if (centroids.shape(1) != d) throw std::invalid_argument("centroids must have the points' dimension");
            if (probes < 1 || probes > lists) throw std::invalid_argument("probes must be in [1, lists]");
            py::array_t<int32_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(probes)});
            int32_t* po = out.mutable_data();
            nogil([&] { knn_rank_lists(p, n, d, c, lists, probes, po, num_threads); });
            return out;
        },
        py::arg("x"), py::arg("centroids"), py::arg("probes"), py::arg("num_threads") = 0);

    m.def(
        "knn_lists",
        [](const F32Array& x, int64_t k, const F32Array& centroids, const I64Array& list_start,
           const I64Array& list_rows, int64_t probes,
           const std::optional<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>& ranks,
           const std::optional<I64Array>& queries, int num_threads) {
            const float* p = points_of(x);
            const float* c = points_of(centroids);
            const int64_t n = x.shape(0), d = x.shape(1), lists = centroids.shape(0);
            if (centroids.shape(1) != d) throw std::invalid_argument("centroids must have the points' dimension");
            if (queries && queries->ndim() != 1) throw std::invalid_argument("queries must be 1-D rows");
            const int64_t m = queries ? queries->shape(0) : n;  // the rows searched
            if (ranks && (ranks->ndim() != 2 || ranks->shape(0) != m || ranks->shape(1) != probes))
                throw std::invalid_argument("ranks must be (queries, probes)");
            const int32_t* pr = ranks ? ranks->data() : nullptr;
            if (list_start.ndim() != 1 || list_start.shape(0) != lists + 1 || list_rows.ndim() != 1 ||
                list_rows.shape(0) != n)
                throw std::invalid_argument("knn_lists needs CSR lists (lists + 1 offsets, n rows)");
            if (k < 1) throw std::invalid_argument("knn needs k >= 1");
            py::array_t<int64_t> idx({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(k)});
            py::array_t<float> sim({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(k)});
            int64_t* pi = idx.mutable_data();
            float* ps = sim.mutable_data();
            const int64_t* pq = queries ? queries->data() : nullptr;
            nogil([&] {
                knn_lists(p, n, d, k, c, lists, list_start.data(), list_rows.data(), probes, pr, pq, m, pi, ps,
                          num_threads);
            });
            return py::make_tuple(idx, sim);
        },
        py::arg("x"), py::arg("k"), py::arg("centroids"), py::arg("list_start"), py::arg("list_rows"), py::arg("probes"),
        py::arg("ranks") = py::none(), py::arg("queries") = py::none(), py::arg("num_threads") = 0);
}

}  // namespace alscale::bind
