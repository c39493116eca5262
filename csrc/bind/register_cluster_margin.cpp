// alscale._core: Cluster-Margin's round-robin.
#include "cluster_margin.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_cluster_margin(py::module_& m) {
    m.def(
        "cluster_round_robin",
        [](const I64Array& rows, const I64Array& labels, int64_t budget, uint64_t seed) {
            if (rows.ndim() != 1 || labels.ndim() != 1 || rows.shape(0) != labels.shape(0))
                throw std::invalid_argument("rows and labels must be 1-D of one length");
            std::vector<int64_t> out = nogil([&] { return cluster_round_robin(rows.data(), labels.data(), rows.shape(0), budget, seed); });
            return to_numpy(std::move(out));
        },
        py::arg("rows"), py::arg("labels"), py::arg("budget"), py::arg("seed"));
}

}  // namespace alscale::bind
