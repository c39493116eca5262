// alscale._core: Coreset and BADGE.
#include "coreset.hpp"
#include "badge.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_diversity(py::module_& m) {
    m.def(
        "select_coreset",
        [](const py::array& x, const I64Array& centers, const std::optional<U8Array>& exclude, int64_t budget,
           int num_threads) {
            if (x.ndim() != 2) throw std::invalid_argument("embeddings must be 2-D");
            const int64_t n = x.shape(0), d = x.shape(1);
            const bool f64 = embedding_is_f64(x, n);
            if (centers.ndim() != 1) throw std::invalid_argument("centers must be 1-D");
            const int64_t nc = centers.shape(0);
            const int64_t* cs = centers.data();
            for (int64_t k = 0; k < nc; ++k)
                if (cs[k] < 0 || cs[k] >= n) throw std::invalid_argument("center row out of range");
            const uint8_t* ex = mask_of(exclude, n);
            std::vector<int64_t> idx = nogil([&] { return f64 ? select_coreset(static_cast<const double*>(x.data()), n, d, cs, nc, ex, budget, num_threads)
                          : select_coreset(static_cast<const float*>(x.data()), n, d, cs, nc, ex, budget, num_threads); });
            return to_numpy(std::move(idx));
        },
        py::arg("embeddings"), py::arg("centers"), py::arg("exclude"), py::arg("budget"), py::arg("num_threads") = 0);

    m.def(
        "select_badge",
        [](const py::array& logits, bool bf16, const py::array& z, const std::optional<U8Array>& exclude,
           int64_t budget, const F64Array& uniforms, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            const bool f64 = embedding_is_f64(z, x.rows);
            const int64_t d = z.shape(1);
            const uint8_t* ex = mask_of(exclude, x.rows);
            if (uniforms.ndim() != 1 || uniforms.shape(0) < budget)
                throw std::invalid_argument("uniforms must hold one value per pick");
            const double* u = uniforms.data();
            std::vector<int64_t> idx = nogil([&] { return f64 ? select_badge(x, static_cast<const double*>(z.data()), d, ex, budget, u, num_threads)
                          : select_badge(x, static_cast<const float*>(z.data()), d, ex, budget, u, num_threads); });
            return to_numpy(std::move(idx));
        },
        py::arg("logits"), py::arg("bf16"), py::arg("embeddings"), py::arg("exclude"), py::arg("budget"),
        py::arg("uniforms"), py::arg("num_threads") = 0);
}

}  // namespace alscale::bind
