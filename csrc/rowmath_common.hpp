// The row arithmetic that the CPU and the GPU must compute bit for bit alike, in one copy for
// both compilers: the CPU kernels (rowmath.hpp) run it on 8-lane GCC vectors, the GPU kernels
// (cuda/rowmath.cuh) on scalars, one thread per lane. Element c of a row belongs to lane c % 8;
// each lane takes its elements in order and the 8 lanes are combined in a fixed order, so the
// same operations in the same order give the same bits on every CPU, ISA, thread count and GPU.
//
// Every float +, -, *, / goes through add/sub/mul/div: on the GPU the round-to-nearest
// intrinsics (__fadd_rn, __dmul_rn, ...), which are never contracted into an FMA; on the CPU the
// plain operators (built with -ffp-contract=off), on scalars and vectors alike (a vector with a
// scalar: the scalar in every lane). Under nvcc ALSCALE_HD makes a function __host__ __device__.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#ifdef __CUDACC__
#define ALSCALE_HD __host__ __device__ __forceinline__
#else
#define ALSCALE_HD inline __attribute__((always_inline))
#endif
#ifdef __CUDA_ARCH__
#define ALSCALE_UNROLL _Pragma("unroll")
#else
#define ALSCALE_UNROLL
#endif

namespace alscale {

constexpr int kLanes = 8;  // lanes of a row: a CPU vector's logical lanes, a GPU row's threads

// The uncertainty scores (the numbering is the kernels' `kind` argument).
enum class Uncertainty : int { margin = 0, confidence = 1, entropy = 2 };

#ifdef __CUDA_ARCH__
ALSCALE_HD float add(float a, float b) { return __fadd_rn(a, b); }
ALSCALE_HD float sub(float a, float b) { return __fsub_rn(a, b); }
ALSCALE_HD float mul(float a, float b) { return __fmul_rn(a, b); }
ALSCALE_HD float div(float a, float b) { return __fdiv_rn(a, b); }
ALSCALE_HD double add(double a, double b) { return __dadd_rn(a, b); }
ALSCALE_HD double sub(double a, double b) { return __dsub_rn(a, b); }
ALSCALE_HD double mul(double a, double b) { return __dmul_rn(a, b); }
ALSCALE_HD double div(double a, double b) { return __ddiv_rn(a, b); }
#else
template <class A, class B>
ALSCALE_HD auto add(A a, B b) { return a + b; }
template <class A, class B>
ALSCALE_HD auto sub(A a, B b) { return a - b; }
template <class A, class B>
ALSCALE_HD auto mul(A a, B b) { return a * b; }
template <class A, class B>
ALSCALE_HD auto div(A a, B b) { return a / b; }
#endif

// Constant c in every lane of V (V a scalar: c itself).
template <class V, class T>
ALSCALE_HD V splat(T c) {
    if constexpr (std::is_arithmetic<V>::value)
        return c;
    else
        return V{} + c;
}

// A row's maximum as every lane subtracts it: 0 + mx, so a maximum of -0 is +0 on the CPU
// (a vector broadcast) and on the GPU alike; l_p - l_c is then +0, never -0, for l_c = +-0.
template <class V, class T>
ALSCALE_HD V row_max_lanes(T mx) {
    return add(splat<V>(T(0)), mx);
}

// The bits of v as a To of the same size (memcpy: a register move on either side).
template <class To, class From>
ALSCALE_HD To bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast needs two types of one size");
    To out;
    memcpy(&out, &v, sizeof out);
    return out;
}

template <class T>
struct IntOf;  // the signed integer of a float's size
template <>
struct IntOf<float> {
    using type = int32_t;
};
template <>
struct IntOf<double> {
    using type = int64_t;
};
template <class T>
using UInt = std::make_unsigned_t<typename IntOf<T>::type>;

// The shared core of exp_nonpos and expm1_nonpos: x = n ln2 + r (Cody-Waite, n rounded by adding
// `magic`) and e^r - 1 from the polynomial before its + 1 (Cephes). Returns t = x / ln2 + magic,
// whose low bits hold n (plus whatever bias `magic` carries), and e^r - 1.
template <class V>
struct ExpParts {
    V t;
    V em1;
};

template <class T, class V = T>
ALSCALE_HD ExpParts<V> exp_parts(V x, V magic) {
    if constexpr (std::is_same<T, float>::value) {
        const V t = add(mul(x, 1.44269504088896341f), magic);
        const V n = sub(t, magic);
        V r = sub(x, mul(n, 0.693359375f));
        r = add(r, mul(n, 2.12194440e-4f));
        V y = splat<V>(1.9875691500e-4f);
        y = add(mul(y, r), 1.3981999507e-3f);
        y = add(mul(y, r), 8.3334519073e-3f);
        y = add(mul(y, r), 4.1665795894e-2f);
        y = add(mul(y, r), 1.6666665459e-1f);
        y = add(mul(y, r), 5.0000001201e-1f);
        return {t, add(mul(y, mul(r, r)), r)};
    } else {
        const V t = add(mul(x, 1.4426950408889634), magic);
        const V n = sub(t, magic);
        V r = sub(x, mul(n, 6.93145751953125e-1));
        r = sub(r, mul(n, 1.42860682030941723212e-6));
        const V rr = mul(r, r);
        V p = splat<V>(1.26177193074810590878e-4);
        p = add(mul(p, rr), 3.02994407707441961300e-2);
        p = add(mul(p, rr), 9.99999999999999999910e-1);
        p = mul(p, r);
        V q = splat<V>(3.00198505138664455042e-6);
        q = add(mul(q, rr), 2.52448340349684104192e-3);
        q = add(mul(q, rr), 2.27265548208155028766e-1);
        q = add(mul(q, rr), 2.00000000000000000009e0);
        return {t, mul(2.0, div(p, sub(q, p)))};
    }
}

// exp(x) for x <= 0 (0 below the underflow point): Cody-Waite reduction and a polynomial
// (Cephes), the exponent set through the bits. Within 2 ulp of the exact value. T: float or
// double; V: T or a vector of T, and I the integers of V's size.
// Where exp_nonpos gives 0: x below -87 (float) or -708 (double).
template <class T>
ALSCALE_HD constexpr T exp_zero_below() {
    return std::is_same<T, float>::value ? T(-87.0) : T(-708.0);
}

template <class T, class V = T, class I = UInt<T>>
ALSCALE_HD V exp_nonpos(V x) {
    if constexpr (std::is_same<T, float>::value) {
        const V magic = splat<V>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
        const ExpParts<V> e1 = exp_parts<T>(x, magic);
        const V y = add(e1.em1, 1.0f);
        const I e = ((bit_cast<I>(e1.t) - bit_cast<I>(magic)) + 127) << 23;
        return x < exp_zero_below<T>() ? splat<V>(0.0f) : mul(y, bit_cast<V>(e));
    } else {
        const V magic = splat<V>(6755399441055744.0);  // 1.5 * 2^52
        const ExpParts<V> e1 = exp_parts<T>(x, magic);
        const V y = add(1.0, e1.em1);
        const I e = ((bit_cast<I>(e1.t) - bit_cast<I>(magic)) + 1023) << 52;
        return x < exp_zero_below<T>() ? splat<V>(0.0) : mul(y, bit_cast<V>(e));
    }
}

// Max, first argmax and second largest of a row, and whether every value is finite. With a
// non-finite value in the row the rest is meaningless; callers check `finite` first.
template <class T>
struct RowMax {
    T max;
    int64_t arg;
    T second;  // largest value after removing one copy of the max (-inf with one class)
    bool finite;
};

// Element v (at position idx) into a lane's running max: m1 the largest so far, at its first
// position, m2 (WantSecond) the largest after removing one copy of m1.
template <bool WantSecond, class V, class I>
ALSCALE_HD void max_step(V v, I idx, V& m1, V& m2, I& at) {
    const auto up = v > m1;
    if (WantSecond) m2 = up ? m1 : (v > m2 ? v : m2);
    m1 = up ? v : m1;
    at = up ? idx : at;
}

// A row's RowMax from its 8 lanes' m1, m2 and at (-1: the lane saw nothing above -inf); n is the
// row's length. The first position wins ties; the second largest is taken from the 16 lane
// candidates as a multiset.
template <class T, bool WantSecond>
ALSCALE_HD RowMax<T> combine_max(const T* m1, const T* m2, const int64_t* at, int64_t n, bool finite) {
    RowMax<T> r;
    r.finite = finite;
    r.max = m1[0];
    ALSCALE_UNROLL
    for (int j = 1; j < kLanes; ++j) r.max = m1[j] > r.max ? m1[j] : r.max;
    r.arg = n;
    ALSCALE_UNROLL
    for (int j = 0; j < kLanes; ++j)
        if (m1[j] == r.max && at[j] >= 0 && at[j] < r.arg) r.arg = at[j];
    if (r.arg >= n) r.arg = 0;  // only for a non-finite row
    r.second = -static_cast<T>(INFINITY);
    if (WantSecond) {
        bool skipped = false;
        ALSCALE_UNROLL
        for (int j = 0; j < kLanes; ++j) {
            if (!skipped && m1[j] == r.max)
                skipped = true;
            else if (m1[j] > r.second)
                r.second = m1[j];
            if (m2[j] > r.second) r.second = m2[j];
        }
    }
    return r;
}

// e * d for softmax's t: +0 where exp_nonpos is 0 (d below exp_zero_below: e = 0, and d may be -inf).
template <class T, class V>
ALSCALE_HD V softmax_product(V e, V d) {
    return d < exp_zero_below<T>() ? splat<V>(T(0)) : mul(e, d);
}

// Element x into a lane's softmax sums for a row with maximum mx: s += exp(x - mx) and
// (WantT) t += exp(x - mx) * (x - mx). exp_nonpos is 0 below -87 (-inf included), where the
// product is taken as +0 (not 0 * gap: -0, or NaN for -inf): t starts at +0 and only adds values
// <= 0, so adding +0 or -0 leaves the same bits.
template <class T, class V = T, class I = UInt<T>, bool WantT = true>
ALSCALE_HD void softmax_step(V x, V mx, V& s, V& t) {
    const V d = sub(x, mx);
    const V e = exp_nonpos<T, V, I>(d);
    s = add(s, e);
    if constexpr (WantT) t = add(t, softmax_product<T>(e, d));
}

// The 8 lane sums combined: ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
template <class T>
ALSCALE_HD T sum_lanes(const T* l) {
    return add(add(add(l[0], l[4]), add(l[1], l[5])), add(add(l[2], l[6]), add(l[3], l[7])));
}

// A row's score from its RowMax and softmax sums s and t: margin (1 - exp(second - max)) / s,
// confidence 1 / s, entropy log(s) - t / s with log(s) = log_of(s) (the CPU's and the GPU's logs
// differ in the last bit: cuda/scoring.cu).
template <class T, class Log>
ALSCALE_HD double uncertainty_value(Uncertainty kind, const RowMax<T>& mx, T s, T t, Log log_of) {
    if (kind == Uncertainty::margin) {
        const T lo = T(-1e30);
        const T gap = sub(mx.second, mx.max);  // -inf with one class: p2 = 0
        const T p2 = exp_nonpos<T>(gap < lo ? lo : gap);
        return static_cast<double>(div(sub(T(1), p2), s));
    }
    if (kind == Uncertainty::confidence) return static_cast<double>(div(T(1), s));
    return static_cast<double>(sub(log_of(s), div(t, s)));
}

// ---- Multi-label (one sigmoid per class) ----
// Per class, from t = |z| (z finite; the sign bit cleared, so -0 gives +0): p = sigmoid(z), binary margin |2p - 1| = tanh(t/2), confidence
// max(p, 1 - p) = 1 / (1 + e) and binary entropy H(p) = log1p(e) + t * e / (1 + e), e = exp(-t)
// <= 1, so nothing overflows and nothing cancels for large |z|. Every step is a +, -, *, / or a
// compare of T (float for 16/32-bit logits, double for float64), so tests/reference.py repeats
// them bit for bit in numpy. Per row the classes are reduced by Reduction: "mean" (a float64 sum
// in lane order, sum_lanes, divided by C) or "min" (the most uncertain class: the smallest margin
// or confidence, the largest entropy).
enum class Reduction : int { mean = 0, min = 1 };

// expm1(x) = exp(x) - 1 for x <= 0, with exp_nonpos's reduction x = n ln2 + r and polynomial:
// e^r - 1 taken from the polynomial before its + 1 (so nothing cancels near 0), then
// 2^n (e^r - 1) + (2^n - 1). x is first raised to -88 (-709 for double), where 2^n is 0 and the
// result -1; the rounding constant carries the exponent bias, so 2^n is t's low bits shifted into
// the exponent. Within 2 ulp of the exact value.
template <class T, class V = T, class I = UInt<T>>
ALSCALE_HD V expm1_nonpos(V x) {
    if constexpr (std::is_same<T, float>::value) {
        x = x < -88.0f ? splat<V>(-88.0f) : x;
        // 1.5 * 2^23 + 127: adding it rounds to an integer
        const ExpParts<V> e1 = exp_parts<T>(x, splat<V>(12583039.0f));
        const V p2 = bit_cast<V>(bit_cast<I>(e1.t) << 23);  // 2^n: n + 127 in t's low bits
        return add(mul(e1.em1, p2), sub(p2, 1.0f));
    } else {
        x = x < -709.0 ? splat<V>(-709.0) : x;
        // 1.5 * 2^52 + 1023
        const ExpParts<V> e1 = exp_parts<T>(x, splat<V>(6755399441056767.0));
        const V p2 = bit_cast<V>(bit_cast<I>(e1.t) << 52);  // 2^n: n + 1023 in t's low bits
        return add(mul(e1.em1, p2), sub(p2, 1.0));
    }
}

// tanh(t/2) for t >= 0 as (0 - expm1(-t)) / (2 + expm1(-t)): accurate near 0 (no 1 - e cancels),
// 1 for large t, one exponential and one division; 0 - (+0) makes t = 0 give +0, not -0.
template <class T, class V, class I>
ALSCALE_HD V sigmoid_margin(V t) {
    const V em = expm1_nonpos<T, V, I>(-t);
    return div(sub(T(0), em), add(T(2), em));
}

// max(p, 1 - p) = sigmoid(t) = 1 / (1 + exp(-t)).
template <class T, class V, class I>
ALSCALE_HD V sigmoid_confidence(V t) {
    return div(T(1), add(T(1), exp_nonpos<T, V, I>(-t)));
}

// H(p) in nats = log1p(e) + t * (e / (1 + e)), e = exp(-t); log1p(e) = 2 atanh(s) with
// s = e / (2 + e) <= 1/3, as the series 2s (1 + s^2/3 + s^4/5 + ...) cut where the next term is
// below half an ulp (s^2 <= 1/9): terms to s^16/17 for float, s^36/37 for double.
template <class T, class V, class I>
ALSCALE_HD V sigmoid_entropy(V t) {
    constexpr int K = std::is_same<T, float>::value ? 8 : 18;
    const V e = exp_nonpos<T, V, I>(-t);
    const V u = add(T(1), e);
    const V s = div(e, add(u, T(1)));
    const V s2 = mul(s, s);
    V q = splat<V>(static_cast<T>(1.0 / (2 * K + 1)));
    ALSCALE_UNROLL
    for (int k = K - 1; k >= 0; --k) q = add(mul(q, s2), static_cast<T>(1.0 / (2 * k + 1)));
    return add(mul(add(s, s), q), mul(t, div(e, u)));
}

// The per-class score of kind K from t = |z|.
template <Uncertainty K, class T, class V, class I>
ALSCALE_HD V sigmoid_value(V t) {
    if constexpr (K == Uncertainty::margin)
        return sigmoid_margin<T, V, I>(t);
    else if constexpr (K == Uncertainty::confidence)
        return sigmoid_confidence<T, V, I>(t);
    else
        return sigmoid_entropy<T, V, I>(t);
}

// The distance r_c = (l_p - l_c) * inv in float64 from a row to the p/c decision hyperplane,
// inv = 1/||w_p - w_c|| (+inf for c == p and for equal weight rows); NaN (0 * inf) is +inf.
template <class V>
ALSCALE_HD V boundary_distance(V lp, V lc, V inv) {
    const V v = mul(sub(lp, lc), inv);
    return v >= 0.0 ? v : splat<V>(static_cast<double>(INFINITY));
}

}  // namespace alscale
