// alscale._core: exact and graph average-linkage HAC.
#include "hac.hpp"
#include "graph_hac.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

namespace {

// Z (as an (n-1, 4) array) and the flat labels at the cut.
py::tuple linkage_and_labels(std::vector<double>&& z, int64_t n, double threshold, int64_t n_clusters) {
    const std::vector<int64_t> labels = nogil([&] { return labels_from_linkage(z.data(), n, threshold, n_clusters); });
    py::array_t<double> za({static_cast<py::ssize_t>(n - 1), static_cast<py::ssize_t>(4)});
    std::copy(z.begin(), z.end(), za.mutable_data());
    return py::make_tuple(za, to_numpy_copy(labels));
}

}  // namespace

void register_hac(py::module_& m) {
    m.def(
        "hac_average_exact",
        [](const F32Array& x, int metric, double threshold, int64_t n_clusters, int num_threads) {
            const float* p = points_of(x);
            if (metric < 0 || metric > 2) throw std::invalid_argument("unknown metric");
            const int64_t n = x.shape(0), d = x.shape(1);
            std::vector<double> z = nogil([&] { return hac_average_exact(p, n, d, static_cast<HacMetric>(metric), num_threads); });
            return linkage_and_labels(std::move(z), n, threshold, n_clusters);
        },
        py::arg("x"), py::arg("metric"), py::arg("threshold"), py::arg("n_clusters"), py::arg("num_threads") = 0);

    m.def(
        "hac_average_graph",
        [](int64_t n, const I64Array& u, const I64Array& v, const F32Array& s, double threshold, int64_t n_clusters,
           int num_threads, bool wide_ids) {
            if (u.ndim() != 1 || v.ndim() != 1 || s.ndim() != 1 || u.shape(0) != v.shape(0) ||
                u.shape(0) != s.shape(0))
                throw std::invalid_argument("edge arrays must be 1-D of one length");
            std::vector<double> z = nogil([&] { return hac_average_graph(n, u.data(), v.data(), s.data(), u.shape(0), num_threads, wide_ids); });
            return linkage_and_labels(std::move(z), n, threshold, n_clusters);
        },
        py::arg("n"), py::arg("u"), py::arg("v"), py::arg("s"), py::arg("threshold"), py::arg("n_clusters"),
        py::arg("num_threads") = 0, py::arg("wide_ids") = false);

    // The (N, k) kNN form read in place: int64 or int32 neighbours (no copy), float32 similarities.
    auto knn_graph_hac = [](const auto& idx, const F32Array& sim, double threshold, int64_t n_clusters,
                            int num_threads, bool wide_ids) {
        if (idx.ndim() != 2 || sim.ndim() != 2 || idx.shape(0) != sim.shape(0) || idx.shape(1) != sim.shape(1))
            throw std::invalid_argument("indices and similarities must both be (N, k)");
        const int64_t n = idx.shape(0), k = idx.shape(1);
        std::vector<double> z = nogil([&] { return hac_average_knn_graph(n, k, idx.data(), sim.data(), num_threads, wide_ids); });
        return linkage_and_labels(std::move(z), n, threshold, n_clusters);
    };

    // int64 registered first: another integer dtype converts to it; int32 is read as it is.
    m.def(
        "hac_average_knn_graph",
        [=](const I64Array& idx, const F32Array& sim, double threshold, int64_t n_clusters, int num_threads,
            bool wide_ids) { return knn_graph_hac(idx, sim, threshold, n_clusters, num_threads, wide_ids); },
        py::arg("idx"), py::arg("sim"), py::arg("threshold"), py::arg("n_clusters"), py::arg("num_threads") = 0,
        py::arg("wide_ids") = false);

    m.def(
        "hac_average_knn_graph",
        [=](const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& idx, const F32Array& sim,
            double threshold, int64_t n_clusters, int num_threads, bool wide_ids) {
            return knn_graph_hac(idx, sim, threshold, n_clusters, num_threads, wide_ids);
        },
        py::arg("idx"), py::arg("sim"), py::arg("threshold"), py::arg("n_clusters"), py::arg("num_threads") = 0,
        py::arg("wide_ids") = false);
}

}  // namespace alscale::bind
