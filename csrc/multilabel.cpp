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

// One row. Classes go in steps of S = max(8, native width) elements: per class the value of
// sigmoid_value from |z| in T, then "mean": the step's values widened to float64 vectors in class
// order, vector j into accumulator j % NA, so that every logical lane c % 8 adds its classes in
// class order whatever B is (16, 32 or 64: bit-identical sums); "min": a running min (max for
// entropy) in T, exact in any order. Returns false for a non-finite row.
template <class T, int B, Uncertainty K, Reduction R>
ALSCALE_INLINE bool multilabel_row(const T* x, int64_t n, double& out) {
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
    constexpr bool kMax = K == Uncertainty::entropy;     // "min" means the most uncertain class
    const T inf = std::numeric_limits<T>::infinity();
    const E sign_off = static_cast<E>(~(static_cast<UInt<T>>(1) << (8 * sizeof(T) - 1)));
    const E inf_bits = bit_cast<E>(inf);
    I probe[P];  // the largest bits of |z|: at least inf's for a non-finite value
    V best[P];
    D sum[NA];
    for (int h = 0; h < P; ++h) {
        probe[h] = splat<I>(E(0));
        best[h] = splat<V>(kMax ? -inf : inf);
    }
    for (int a = 0; a < NA; ++a) sum[a] = splat<D>(0.0);
    auto values = [&](const T* p, V* v) __attribute__((always_inline)) {
        for (int h = 0; h < P; ++h) {
            const I bits = bit_cast<I>(load<T, B>(p + h * VW)) & sign_off;  // |z|, -0 as +0
            probe[h] = bits > probe[h] ? bits : probe[h];
            v[h] = sigmoid_value<K, T, V, I>(bit_cast<V>(bits));
        }
    };
    auto reduce = [&](const V* v) __attribute__((always_inline)) {
        if constexpr (R == Reduction::mean) {
            D d[ND];
            for (int h = 0; h < P; ++h) widen<B>(v[h], d + h * (VW / WD));
            for (int j = 0; j < ND; ++j) sum[j % NA] = add(sum[j % NA], d[j]);
        } else {
            for (int h = 0; h < P; ++h) {
                if constexpr (kMax)
                    best[h] = v[h] > best[h] ? v[h] : best[h];
                else
                    best[h] = v[h] < best[h] ? v[h] : best[h];
            }
        }
    };
    int64_t c = 0;
    for (; c + S <= n; c += S) {
        V v[P];
        values(x + c, v);
        reduce(v);
    }
    if (c < n) {
        // The last classes padded with 0 (a finite logit); their values then replaced by a
        // neutral one: +0 for the sum (exact: the sums are >= 0), -+inf for the min / max.
        const int r = static_cast<int>(n - c);
        T tmp[S];
        for (int j = 0; j < S; ++j) tmp[j] = j < r ? x[c + j] : T(0);
        V v[P];
        values(tmp, v);
        std::memcpy(tmp, v, sizeof tmp);
        const T neutral = R == Reduction::mean ? T(0) : (kMax ? -inf : inf);
        for (int j = r; j < S; ++j) tmp[j] = neutral;
        std::memcpy(v, tmp, sizeof tmp);
        reduce(v);
    }
    bool bad = false;
    for (int h = 0; h < P; ++h) bad |= any_lane(probe[h] >= inf_bits);
    if (bad) return false;
    if constexpr (R == Reduction::mean) {
        double lanes[kLanes];
        for (int j = 0; j < kLanes; ++j) lanes[j] = sum[j / WD][j % WD];
        out = div(sum_lanes(lanes), static_cast<double>(n));
    } else {
        T all[S];
        std::memcpy(all, best, sizeof all);
        T m = all[0];
        for (int j = 1; j < S; ++j) m = kMax ? (all[j] > m ? all[j] : m) : (all[j] < m ? all[j] : m);
        out = static_cast<double>(m);
    }
    return true;
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
