#include "scoring.hpp"

#include <cmath>

#include "isa.hpp"
#include "rowmath.hpp"

namespace alscale {
namespace {

template <class T, int B>
ALSCALE_INLINE int64_t uncertainty_rows(RowReader<T>& read, const Matrix& m, const Uncertainty& kind,
                                        double* const& out, const int64_t& begin, const int64_t& end) {
    const int64_t n = m.cols;
    for (int64_t i = begin; i < end; ++i) {
        const T* x = read_row<T, B>(read, i, n);
        const RowMax<T> mx = kind == Uncertainty::margin ? row_max_top<T, B, true>(x, n)
                                                         : row_max_top<T, B, false>(x, n);
        if (!mx.finite) return i;
        T s, t;
        if (kind == Uncertainty::entropy)
            softmax_sums<T, B, true>(x, n, mx.max, s, t, fetch_ahead(m, i, end));
        else
            softmax_sums<T, B, false>(x, n, mx.max, s, t, fetch_ahead(m, i, end));
        out[i] = uncertainty_value(kind, mx, s, t, [](T v) { return std::log(v); });
    }
    return end;
}
ALSCALE_MULTIVERSION3(uncertainty_rows)

template <class T>
struct BoundaryContext {
    RowReader<T> read;
    InverseNorms inv;
    std::vector<double> r;
    std::vector<T> spare = {};  // the second buffer of 16-bit rows read ahead (RowsAhead)
};

template <class T, int B>
ALSCALE_INLINE int64_t boundary_rows(BoundaryContext<T>& ctx, const Matrix& logits, double* const& out,
                                     const int64_t& begin, const int64_t& end) {
    const int64_t n = logits.cols;
    InverseNorms& inv = ctx.inv;
    auto rows = rows_ahead<T, B>(ctx.read, ctx.spare, logits, inv.table(), begin, end,
                                 [n](const T* row) __attribute__((always_inline)) {
                                     return row_max_split<T, (B > 32 ? 32 : B), false>(row, n);
                                 });
    for (int64_t i = begin; i < end; ++i) {
        RowMax<T> mx;
        const T* x = rows.row(i, mx);
        if (!mx.finite) return i;
        const double lp = static_cast<double>(mx.max);
        NextRow next, next_inv;
        rows.next(i, x, next, next_inv);
        // r is read back only to make the pairs' lower bounds exact.
        if (inv.pairs()) {
            const double m = boundary_row<T, B, true, false>(x, n, lp, inv.row(mx.arg), ctx.r.data(), nullptr, nullptr, next, next_inv);
            out[i] = exact_min<T, B>(*inv.pairs(), mx.arg, 0.0 + lp, x, ctx.r.data(), n, m);
        } else {
            out[i] = boundary_row<T, B, false, false>(x, n, lp, inv.row(mx.arg), nullptr, nullptr, nullptr, next, next_inv);
        }
    }
    return end;
}
ALSCALE_MULTIVERSION3(boundary_rows)

template <class T>
void uncertainty_impl(const Matrix& logits, Uncertainty kind, double* out, int num_threads) {
    parallel_rows(
        logits.rows, row_threads(num_threads, logits.rows), [&](int) { return RowReader<T>(logits); },
        [&](RowReader<T>& read, int64_t begin, int64_t end) {
            return uncertainty_rows_dispatch3<T>(read, logits, kind, out, begin, end);
        },
        [](RowReader<T>&, int) {});
}

template <class T>
void boundary_impl(const Matrix& logits, const HeadNorms& head, double* out, int num_threads) {
    const int64_t n = logits.cols;
    parallel_rows(
        logits.rows, row_threads(num_threads, logits.rows),
        [&](int) {
            return BoundaryContext<T>{RowReader<T>(logits), InverseNorms(head, n),
                                      std::vector<double>(static_cast<size_t>(n))};
        },
        [&](BoundaryContext<T>& ctx, int64_t begin, int64_t end) {
            return boundary_rows_dispatch3<T>(ctx, logits, out, begin, end);
        },
        [](BoundaryContext<T>&, int) {});
}

}  // namespace

void uncertainty_scores(const Matrix& logits, Uncertainty kind, double* out, int num_threads) {
    if (logits.dtype == DType::f64)
        uncertainty_impl<double>(logits, kind, out, num_threads);
    else
        uncertainty_impl<float>(logits, kind, out, num_threads);
}

void boundary_scores(const Matrix& logits, const HeadNorms& head, double* out, int num_threads) {
    if (logits.dtype == DType::f64)
        boundary_impl<double>(logits, head, out, num_threads);
    else
        boundary_impl<float>(logits, head, out, num_threads);
}

}  // namespace alscale
