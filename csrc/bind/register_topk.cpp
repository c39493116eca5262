// alscale._core: exact top-k of scores, ranked candidates and their merge.
#include "topk.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

namespace {

// (keys, ids, positions) of ranked candidates, as three arrays.
py::tuple ranked_arrays(const std::vector<Ranked>& best) {
    const auto m = static_cast<py::ssize_t>(best.size());
    py::array_t<double> keys(m);
    py::array_t<int64_t> ids(m), pos(m);
    for (py::ssize_t i = 0; i < m; ++i) {
        keys.mutable_data()[i] = best[static_cast<size_t>(i)].key;
        ids.mutable_data()[i] = best[static_cast<size_t>(i)].id;
        pos.mutable_data()[i] = best[static_cast<size_t>(i)].pos;
    }
    return py::make_tuple(keys, ids, pos);
}

}  // namespace

void register_topk(py::module_& m) {
    m.def(
        "select_topk",
        [](const F64Array& scores, int64_t k, const std::optional<U8Array>& exclude, bool largest, int num_threads) {
            if (scores.ndim() != 1) throw std::invalid_argument("scores must be 1-D");
            const int64_t n = scores.shape(0);
            const uint8_t* ex = mask_of(exclude, n);
            std::vector<int64_t> idx = nogil([&] { return select_topk(scores.data(), n, k, ex, largest, num_threads); });
            return to_numpy(std::move(idx));
        },
        py::arg("scores"), py::arg("k"), py::arg("exclude"), py::arg("largest"), py::arg("num_threads") = 0);

    m.def(
        "topk_ranked",
        [](const F64Array& scores, int64_t k, const std::optional<U8Array>& exclude, bool largest,
           const std::optional<I64Array>& ids, int64_t offset, int num_threads) {
            if (scores.ndim() != 1) throw std::invalid_argument("scores must be 1-D");
            const int64_t n = scores.shape(0);
            const uint8_t* ex = mask_of(exclude, n);
            const int64_t* id = nullptr;
            if (ids) {
                if (ids->ndim() != 1 || ids->shape(0) != n) throw std::invalid_argument("ids must match the scores");
                id = ids->data();
            }
            std::vector<Ranked> best = nogil([&] { return topk_ranked(scores.data(), n, k, ex, largest, id, offset, num_threads); });
            return ranked_arrays(best);
        },
        py::arg("scores"), py::arg("k"), py::arg("exclude"), py::arg("largest"), py::arg("ids"), py::arg("offset"),
        py::arg("num_threads") = 0);

    m.def(
        "merge_ranked",
        [](const F64Array& keys, const I64Array& ids, int64_t k) {
            if (keys.ndim() != 1 || ids.ndim() != 1 || keys.shape(0) != ids.shape(0))
                throw std::invalid_argument("keys and ids must be 1-D of one length");
            std::vector<Ranked> best = nogil([&] { return merge_ranked(keys.data(), ids.data(), keys.shape(0), k); });
            return ranked_arrays(best);
        },
        py::arg("keys"), py::arg("ids"), py::arg("k"));
}

}  // namespace alscale::bind
