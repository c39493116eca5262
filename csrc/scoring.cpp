#include "scoring.hpp"

#include <cmath>

#include "rowmath.hpp"

namespace alscale {
namespace {

template <class T>
void uncertainty_impl(const Matrix& logits, Uncertainty kind, double* out, int num_threads) {
    const int64_t n = logits.cols;
    for_each_row(logits, num_threads, [&](int) { return RowReader<T>(logits); },
                 [&](RowReader<T>& read, int64_t i) {
                     const T* x = read(i);
                     T mx;
                     if (!row_max(x, n, mx)) return false;
                     T s, t;
                     softmax_sums(x, n, mx, s, t);
                     switch (kind) {
                         case Uncertainty::margin: {
                             const int64_t p = first_index(x, n, mx);
                             const T p2 = n > 1 ? exp_nonpos(clamp_gap(second_max(x, n, p) - mx)) : T(0);
                             out[i] = static_cast<double>((T(1) - p2) / s);
                             break;
                         }
                         case Uncertainty::confidence:
                             out[i] = static_cast<double>(T(1) / s);
                             break;
                         case Uncertainty::entropy:
                             out[i] = static_cast<double>(std::log(s) - t / s);
                             break;
                     }
                     return true;
                 });
}

template <class T>
struct BoundaryContext {
    RowReader<T> read;
    InverseNorms inv;
    std::vector<double> r;
};

template <class T>
void boundary_impl(const Matrix& logits, const double* inv_norm, double* out, int num_threads) {
    const int64_t n = logits.cols;
    for_each_row(
        logits, num_threads,
        [&](int) {
            return BoundaryContext<T>{RowReader<T>(logits), InverseNorms(inv_norm, n),
                                      std::vector<double>(static_cast<size_t>(n))};
        },
        [&](BoundaryContext<T>& ctx, int64_t i) {
            const T* x = ctx.read(i);
            T mx;
            if (!row_max(x, n, mx)) return false;
            const int64_t p = first_index(x, n, mx);
            out[i] = boundary_row(x, n, static_cast<double>(mx), ctx.inv.row(p), ctx.r.data());
            return true;
        });
}

}  // namespace

void uncertainty_scores(const Matrix& logits, Uncertainty kind, double* out, int num_threads) {
    if (logits.dtype == DType::f64)
        uncertainty_impl<double>(logits, kind, out, num_threads);
    else
        uncertainty_impl<float>(logits, kind, out, num_threads);
}

void boundary_scores(const Matrix& logits, const double* inv_norm, double* out, int num_threads) {
    if (logits.dtype == DType::f64)
        boundary_impl<double>(logits, inv_norm, out, num_threads);
    else
        boundary_impl<float>(logits, inv_norm, out, num_threads);
}

}  // namespace alscale
