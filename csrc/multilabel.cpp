#include "multilabel.hpp"

#include <cstring>
#include <limits>

#include "isa.hpp"
#include "rowmath.hpp"

namespace alscale {
namespace {

// A block as float64 vectors in logical lane order: each float vector converted whole to a double
// vector of twice its bytes, then split (with AVX2: two vcvtps2pd and one extract per 8 floats).
template <int B>
ALSCALE_INLINE void widen(const Block<float, B>& b, vec<double, B>* out) {
    for (int h = 0; h < kParts<float, B>; ++h) {
        const vec<double, 2 * B> d = __builtin_convertvector(b.part[h], vec<double, 2 * B>);
        std::memcpy(out + 2 * h, &d, sizeof d);
    }
}
template <int B>
ALSCALE_INLINE void widen(const Block<double, B>& b, vec<double, B>* out) {
    for (int h = 0; h < kParts<double, B>; ++h) out[h] = b.part[h];
}

// One row: the per-class values of a block of 8 classes in T (lane c % 8), reduced in float64
// (mean) or in T (min / max: exact in any order). Returns false for a non-finite row.
template <class T, int B, Uncertainty K, Reduction R>
ALSCALE_INLINE bool multilabel_row(const T* x, int64_t n, double& out) {
    using V = vec<T, B>;
    using I = ivec<T, B>;
    using D = vec<double, B>;
    constexpr int P = kParts<T, B>, PD = kParts<double, B>, W = kWidth<T, B>, WD = kWidth<double, B>;
    constexpr bool kMax = K == Uncertainty::entropy;  // "min" means the most uncertain class
    const T inf = std::numeric_limits<T>::infinity();
    using E = typename IntOf<T>::type;
    const E sign_off = static_cast<E>(~(static_cast<UInt<T>>(1) << (8 * sizeof(T) - 1)));
    const E inf_bits = bit_cast<E>(inf);
    I probe[P];  // the largest bits of |z|: at least inf's for a non-finite value
    V best[P];
    D sum[PD];
    for (int h = 0; h < P; ++h) {
        probe[h] = splat<I>(E(0));
        best[h] = splat<V>(kMax ? -inf : inf);
    }
    for (int h = 0; h < PD; ++h) sum[h] = splat<D>(0.0);
    auto step = [&](Block<T, B> v) __attribute__((always_inline)) {
        if constexpr (R == Reduction::mean) {
            D d[PD];
            widen<B>(v, d);
            for (int h = 0; h < PD; ++h) sum[h] = add(sum[h], d[h]);
        } else {
            for (int h = 0; h < P; ++h) {
                if constexpr (kMax)
                    best[h] = v.part[h] > best[h] ? v.part[h] : best[h];
                else
                    best[h] = v.part[h] < best[h] ? v.part[h] : best[h];
            }
        }
    };
    auto values = [&](const Block<T, B>& z) __attribute__((always_inline)) {
        Block<T, B> v;
        for (int h = 0; h < P; ++h) {
            const I bits = bit_cast<I>(z.part[h]) & sign_off;  // |z|, -0 as +0
            probe[h] = bits > probe[h] ? bits : probe[h];
            v.part[h] = sigmoid_value<K, T, V, I>(bit_cast<V>(bits));
        }
        return v;
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) step(values(load_block<T, B>(x + c)));
    if (c < n) {
        // The missing lanes hold a neutral value: 0 for the sum, -+inf for the min / max.
        const Block<T, B> v = values(load_tail<T, B>(x + c, n - c, T(0)));
        T tmp[kLanes];
        for (int j = 0; j < kLanes; ++j) tmp[j] = v.part[j / W][j % W];
        const T neutral = R == Reduction::mean ? T(0) : (kMax ? -inf : inf);
        for (int j = static_cast<int>(n - c); j < kLanes; ++j) tmp[j] = neutral;
        step(load_block<T, B>(tmp));
    }
    bool bad = false;
    for (int h = 0; h < P; ++h) bad |= any_lane(probe[h] >= inf_bits);
    if (bad) return false;
    if constexpr (R == Reduction::mean) {
        double lanes[kLanes];
        for (int j = 0; j < kLanes; ++j) lanes[j] = sum[j / WD][j % WD];
        out = div(sum_lanes(lanes), static_cast<double>(n));
    } else {
        T m = best[0][0];
        for (int j = 1; j < kLanes; ++j) {
            const T b = best[j / W][j % W];
            m = kMax ? (b > m ? b : m) : (b < m ? b : m);
        }
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
ALSCALE_MULTIVERSION(multilabel_rows)

template <class T>
void multilabel_impl(const Matrix& logits, Uncertainty kind, Reduction reduction, double* out, int num_threads) {
    const int64_t n = logits.cols;
    parallel_rows(
        logits.rows, row_threads(num_threads, logits.rows), [&](int) { return RowReader<T>(logits); },
        [&](RowReader<T>& read, int64_t begin, int64_t end) {
            return multilabel_rows_dispatch<T>(read, n, kind, reduction, out, begin, end);
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
