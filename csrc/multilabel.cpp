#include "multilabel.hpp"

#include <cstring>
#include <limits>

#include "isa.hpp"
#include "rowmath.hpp"

namespace alscale {
namespace {

// A native vector of T as float64 vectors of B bytes, in element order (float: converted whole to a
// double vector of twice its bytes, then split; with AVX2 two vcvtps2pd and one extract per 8 floats).
template <int B>
ALSCALE_INLINE void widen(const vec<float, B>& v, vec<double, B>* out) {
    const vec<double, 2 * B> d = __builtin_convertvector(v, vec<double, 2 * B>);
    std::memcpy(out, &d, sizeof d);
}
template <int B>
ALSCALE_INLINE void widen(const vec<double, B>& v, vec<double, B>* out) {
    out[0] = v;
}

// "mean" of one row. Classes go in steps of S = max(8, native width) elements: per class the
// value of sigmoid_value from |z| in T, the step's values widened to float64 vectors in class
// order, vector j into accumulator j % NA, so that every logical lane c % 8 adds its classes in
// class order whatever B is (16, 32 or 64: bit-identical sums). Returns false for a non-finite row.
template <class T, int B, Uncertainty K>
ALSCALE_INLINE bool mean_row(const T* x, int64_t n, double& out) {
    using V = vec<T, B>;
    using I = ivec<T, B>;
    using D = vec<double, B>;
    using E = typename IntOf<T>::type;
    constexpr int VW = static_cast<int>(B / sizeof(T));  // elements per native vector
    constexpr int S = VW > kLanes ? VW : kLanes;         // elements per step
    constexpr int P = S / VW;                            // native vectors per step
    constexpr int WD = B / 8;                            // doubles per float64 vector
    constexpr int NA = kLanes / WD;                      // float64 accumulators (8 lanes)
    constexpr int ND = S / WD;                           // float64 vectors per step
    const E sign_off = static_cast<E>(~(static_cast<UInt<T>>(1) << (8 * sizeof(T) - 1)));
    const E inf_bits = bit_cast<E>(std::numeric_limits<T>::infinity());
    I probe[P];  // the largest bits of |z|: at least inf's for a non-finite value
    D sum[NA];
    for (int h = 0; h < P; ++h) probe[h] = splat<I>(E(0));
    for (int a = 0; a < NA; ++a) sum[a] = splat<D>(0.0);
    auto values = [&](const T* p, V* v) __attribute__((always_inline)) {
        for (int h = 0; h < P; ++h) {
            const I bits = bit_cast<I>(load<T, B>(p + h * VW)) & sign_off;  // |z|, -0 as +0
            probe[h] = bits > probe[h] ? bits : probe[h];
            v[h] = sigmoid_value<K, T, V, I>(bit_cast<V>(bits));
        }
    };
    auto accumulate = [&](const V* v) __attribute__((always_inline)) {
        D d[ND];
        for (int h = 0; h < P; ++h) widen<B>(v[h], d + h * (VW / WD));
        for (int j = 0; j < ND; ++j) sum[j % NA] = add(sum[j % NA], d[j]);
    };
    int64_t c = 0;
    for (; c + S <= n; c += S) {
        V v[P];
        values(x + c, v);
        accumulate(v);
    }
    if (c < n) {
        // The last classes padded with 0 (a finite logit), their values then replaced by +0
        // (exact: the lane sums are >= 0).
        const int r = static_cast<int>(n - c);
        T tmp[S];
        for (int j = 0; j < S; ++j) tmp[j] = j < r ? x[c + j] : T(0);
        V v[P];
        values(tmp, v);
        std::memcpy(tmp, v, sizeof tmp);
        for (int j = r; j < S; ++j) tmp[j] = T(0);
        std::memcpy(v, tmp, sizeof tmp);
        accumulate(v);
    }
    bool bad = false;
    for (int h = 0; h < P; ++h) bad |= any_lane(probe[h] >= inf_bits);
    if (bad) return false;
    double lanes[kLanes];
    for (int j = 0; j < kLanes; ++j) lanes[j] = sum[j / WD][j % WD];
    out = div(sum_lanes(lanes), static_cast<double>(n));
    return true;
}

// "min" of one row: the most uncertain class is the one with the smallest |z| for all three
// scores (the margin and the confidence increase with |z|, the entropy decreases), so the row's
// score is sigmoid_value(min_c |z_c|): one integer min over |z|'s bits (they order as the
// non-negative floats do) and one value per row. Returns false for a non-finite row.
template <class T, int B, Uncertainty K>
ALSCALE_INLINE bool min_row(const T* x, int64_t n, double& out) {
    using I = ivec<T, B>;
    using E = typename IntOf<T>::type;
    constexpr int VW = static_cast<int>(B / sizeof(T));
    constexpr int U = 4;  // independent vectors per step
    const E sign_off = static_cast<E>(~(static_cast<UInt<T>>(1) << (8 * sizeof(T) - 1)));
    const E inf_bits = bit_cast<E>(std::numeric_limits<T>::infinity());
    I probe[U], low[U];
    for (int u = 0; u < U; ++u) {
        probe[u] = splat<I>(E(0));
        low[u] = splat<I>(inf_bits);
    }
    int64_t c = 0;
    for (; c + U * VW <= n; c += U * VW) {
        for (int u = 0; u < U; ++u) {
            I bits;
            std::memcpy(&bits, x + c + u * VW, sizeof bits);
            bits &= sign_off;
            probe[u] = bits > probe[u] ? bits : probe[u];
            low[u] = bits < low[u] ? bits : low[u];
        }
    }
    E hi = 0, lo = inf_bits;
    for (int u = 0; u < U; ++u)
        for (int j = 0; j < VW; ++j) {
            hi = probe[u][j] > hi ? probe[u][j] : hi;
            lo = low[u][j] < lo ? low[u][j] : lo;
        }
    for (; c < n; ++c) {
        const E bits = bit_cast<E>(x[c]) & sign_off;
        hi = bits > hi ? bits : hi;
        lo = bits < lo ? bits : lo;
    }
    if (hi >= inf_bits) return false;
    out = static_cast<double>(sigmoid_value<K, T, T, UInt<T>>(bit_cast<T>(lo)));
    return true;
}

template <class T, int B, Uncertainty K, Reduction R>
ALSCALE_INLINE bool multilabel_row(const T* x, int64_t n, double& out) {
    if constexpr (R == Reduction::mean)
        return mean_row<T, B, K>(x, n, out);
    else
        return min_row<T, B, K>(x, n, out);
}

template <class T, int B, Uncertainty K, Reduction R>
ALSCALE_INLINE int64_t rows_of(RowReader<T>& read, int64_t n, double* out, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
        if (!multilabel_row<T, B, K, R>(read(i), n, out[i])) return i;
    return end;
}

template <class T, int B>
ALSCALE_INLINE int64_t multilabel_rows(RowReader<T>& read, const int64_t& n, const Uncertainty& kind,
                                       const Reduction& reduction, double* const& out, const int64_t& begin,
                                       const int64_t& end) {
    const bool mean = reduction == Reduction::mean;
    switch (kind) {
        case Uncertainty::margin:
            return mean ? rows_of<T, B, Uncertainty::margin, Reduction::mean>(read, n, out, begin, end)
                        : rows_of<T, B, Uncertainty::margin, Reduction::min>(read, n, out, begin, end);
        case Uncertainty::confidence:
            return mean ? rows_of<T, B, Uncertainty::confidence, Reduction::mean>(read, n, out, begin, end)
                        : rows_of<T, B, Uncertainty::confidence, Reduction::min>(read, n, out, begin, end);
        default:
            return mean ? rows_of<T, B, Uncertainty::entropy, Reduction::mean>(read, n, out, begin, end)
                        : rows_of<T, B, Uncertainty::entropy, Reduction::min>(read, n, out, begin, end);
    }
}
ALSCALE_MULTIVERSION3(multilabel_rows)

template <class T>
void multilabel_impl(const Matrix& logits, Uncertainty kind, Reduction reduction, double* out, int num_threads) {
    const int64_t n = logits.cols;
    parallel_rows(
        logits.rows, row_threads(num_threads, logits.rows), [&](int) { return RowReader<T>(logits); },
        [&](RowReader<T>& read, int64_t begin, int64_t end) {
            return multilabel_rows_dispatch3<T>(read, n, kind, reduction, out, begin, end);
        },
        [](RowReader<T>&, int) {});
}

}  // namespace

void multilabel_scores(const Matrix& logits, Uncertainty kind, Reduction reduction, double* out, int num_threads) {
    if (logits.cols <= 0 && logits.rows > 0) throw std::invalid_argument("logits have no classes");
    if (logits.dtype == DType::f64)
        multilabel_impl<double>(logits, kind, reduction, out, num_threads);
    else
        multilabel_impl<float>(logits, kind, reduction, out, num_threads);
}

}  // namespace alscale
