// alscale._core: the kNN graph over an inverted file, searched GEMM-shaped (csrc/knn_lists.hpp).
#include "knn_lists.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {
namespace {

// (group centroids, groups, group_start) of the optional two-level ranking; nullptr when none.
struct GroupView {
    const float* centroids = nullptr;
    int64_t groups = 0;
    const int64_t* start = nullptr;
};

GroupView group_view(const std::optional<F32Array>& gc, const std::optional<I64Array>& gs, int64_t d) {
    GroupView v;
    if (!gc && !gs) return v;
    if (!gc || !gs) throw std::invalid_argument("group_centroids and group_start go together");
    v.centroids = points_of(*gc);
    v.groups = gc->shape(0);
    if (gc->shape(1) != d) throw std::invalid_argument("group centroids must have the points' dimension");
    if (gs->ndim() != 1 || gs->shape(0) != v.groups + 1)
        throw std::invalid_argument("group_start needs groups + 1 offsets");
    v.start = gs->data();
    return v;
}

}  // namespace

void register_knn_lists(py::module_& m) {
    m.def(
        "knn_rank_lists",
        [](const F32Array& x, const F32Array& centroids, int64_t probes, const std::optional<F32Array>& group_centroids,
           const std::optional<I64Array>& group_start, int64_t beam, int num_threads) {
            const float* p = points_of(x);
            const float* c = points_of(centroids);
            const int64_t n = x.shape(0), d = x.shape(1), lists = centroids.shape(0);
            if (centroids.shape(1) != d) throw std::invalid_argument("centroids must have the points' dimension");
            if (probes < 1 || probes > lists) throw std::invalid_argument("probes must be in [1, lists]");
            const GroupView g = group_view(group_centroids, group_start, d);
            py::array_t<int32_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(probes)});
            int32_t* po = out.mutable_data();
            nogil([&] { knn_rank_lists(p, n, d, c, lists, probes, g.centroids, g.groups, g.start, beam, po, num_threads); });
            return out;
        },
        py::arg("x"), py::arg("centroids"), py::arg("probes"), py::arg("group_centroids") = py::none(),
        py::arg("group_start") = py::none(), py::arg("beam") = 0, py::arg("num_threads") = 0);

    m.def(
        "knn_lists",
        [](const F32Array& x, int64_t k, const F32Array& centroids, const I64Array& list_start,
           const I64Array& list_rows, int64_t probes, const std::optional<F32Array>& group_centroids,
           const std::optional<I64Array>& group_start, int64_t beam, int num_threads) {
            const float* p = points_of(x);
            const float* c = points_of(centroids);
            const int64_t n = x.shape(0), d = x.shape(1), lists = centroids.shape(0);
            if (centroids.shape(1) != d) throw std::invalid_argument("centroids must have the points' dimension");
            if (list_start.ndim() != 1 || list_start.shape(0) != lists + 1 || list_rows.ndim() != 1 ||
                list_rows.shape(0) != n)
                throw std::invalid_argument("knn_lists needs CSR lists (lists + 1 offsets, n rows)");
            if (k < 1) throw std::invalid_argument("knn needs k >= 1");
            const GroupView g = group_view(group_centroids, group_start, d);
            py::array_t<int64_t> idx({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            py::array_t<float> sim({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            int64_t* pi = idx.mutable_data();
            float* ps = sim.mutable_data();
            nogil([&] {
                knn_lists(p, n, d, k, c, lists, list_start.data(), list_rows.data(), probes, g.centroids, g.groups,
                          g.start, beam, pi, ps, num_threads);
            });
            return py::make_tuple(idx, sim);
        },
        py::arg("x"), py::arg("k"), py::arg("centroids"), py::arg("list_start"), py::arg("list_rows"), py::arg("probes"),
        py::arg("group_centroids") = py::none(), py::arg("group_start") = py::none(), py::arg("beam") = 0,
        py::arg("num_threads") = 0);
}

}  // namespace alscale::bind
