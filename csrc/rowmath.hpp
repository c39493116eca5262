// Per-row arithmetic shared by the scoring and BASE kernels, on 8-lane vectors (GCC/Clang vector
// extensions: one AVX2 register per float op, two SSE2 registers without AVX2). Element c of a
// row always goes to lane c % 8 and lanes are combined in a fixed order, and there is no FMA
// contraction (-ffp-contract=off), so every score is bit-identical on every x86-64 / ARM CPU,
// whichever instruction set the dispatcher picks (isa.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common.hpp"

#define ALSCALE_INLINE inline __attribute__((always_inline))

namespace alscale {

template <class T>
struct Lanes;
template <>
struct Lanes<float> {
    typedef float V __attribute__((vector_size(32)));
    typedef int32_t I __attribute__((vector_size(32)));
};
template <>
struct Lanes<double> {
    typedef double V __attribute__((vector_size(64)));
    typedef int64_t I __attribute__((vector_size(64)));
};
template <class T>
using vec = typename Lanes<T>::V;
template <class T>
using ivec = typename Lanes<T>::I;
typedef int64_t i64x8 __attribute__((vector_size(64)));

constexpr int kLanes = 8;

template <class T>
ALSCALE_INLINE vec<T> load8(const T* p) {
    vec<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// The last n % 8 values of a row, the missing lanes set to `fill`.
template <class T>
ALSCALE_INLINE vec<T> load_tail(const T* p, int64_t count, T fill) {
    T tmp[kLanes];
    for (int j = 0; j < kLanes; ++j) tmp[j] = j < count ? p[j] : fill;
    return load8(tmp);
}

template <class T>
ALSCALE_INLINE vec<T> splat(T x) {
    return vec<T>{} + x;
}

template <class M>
ALSCALE_INLINE bool any_lane(M m) {
    bool any = false;
    for (int j = 0; j < kLanes; ++j) any |= m[j] != 0;
    return any;
}

template <class T>
ALSCALE_INLINE T lane_max(vec<T> v) {
    T m = v[0];
    for (int j = 1; j < kLanes; ++j) m = v[j] > m ? v[j] : m;
    return m;
}

// Max and first argmax of a row, and whether every value is finite (x - x is NaN exactly for
// NaN and +-inf). With NaN in the row the max is meaningless; callers check `finite` first.
template <class T>
struct RowMax {
    T max;
    int64_t arg;
    T second;  // largest value after removing one copy of the max (-inf with one class)
    bool finite;
};

template <class T, bool WantSecond>
ALSCALE_INLINE RowMax<T> row_max(const T* x, int64_t n) {
    using V = vec<T>;
    using I = ivec<T>;
    const T ninf = -std::numeric_limits<T>::infinity();
    V m1 = splat<T>(ninf), m2 = m1, probe = splat<T>(T(0));
    I at = I{} - 1;
    I idx;
    for (int j = 0; j < kLanes; ++j) idx[j] = j;
    int64_t c = 0;
    auto step = [&](V v) __attribute__((always_inline)) {
        const I up = v > m1;
        if (WantSecond) m2 = up ? m1 : (v > m2 ? v : m2);
        m1 = up ? v : m1;
        at = up ? idx : at;
        idx += kLanes;
    };
    for (; c + kLanes <= n; c += kLanes) {
        const V v = load8(x + c);
        probe += v - v;
        step(v);
    }
    if (c < n) {
        const V v = load_tail(x + c, n - c, ninf);
        const V z = load_tail(x + c, n - c, T(0));
        probe += z - z;
        step(v);
    }
    RowMax<T> r;
    r.finite = !any_lane(probe != probe);
    r.max = lane_max<T>(m1);
    r.arg = n;
    for (int j = 0; j < kLanes; ++j)
        if (m1[j] == r.max && at[j] >= 0 && at[j] < r.arg) r.arg = at[j];
    if (r.arg >= n) r.arg = 0;  // only for a non-finite row
    r.second = ninf;
    if (WantSecond) {
        // The two largest of the 16 lane candidates, as a multiset.
        bool skipped = false;
        for (int j = 0; j < kLanes; ++j) {
            if (!skipped && m1[j] == r.max) {
                skipped = true;
            } else if (m1[j] > r.second) {
                r.second = m1[j];
            }
            if (m2[j] > r.second) r.second = m2[j];
        }
    }
    return r;
}

// exp(x) for x <= 0 (0 below the underflow point) on 8 lanes: Cody-Waite reduction and a
// polynomial (Cephes), the exponent set through the bits. Within 2 ulp of the exact value.
ALSCALE_INLINE vec<float> exp_nonpos(vec<float> x) {
    using V = vec<float>;
    using I = ivec<float>;
    const V magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    const V t = x * 1.44269504088896341f + magic;
    const V n = t - magic;
    V r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    V y = splat(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    const I e = (((I)t - (I)magic) + 127) << 23;
    const V scale = (V)e;  // vector casts reinterpret the bits
    return x < -87.0f ? splat(0.0f) : y * scale;
}

ALSCALE_INLINE vec<double> exp_nonpos(vec<double> x) {
    using V = vec<double>;
    using I = ivec<double>;
    const V magic = splat(6755399441055744.0);  // 1.5 * 2^52
    const V t = x * 1.4426950408889634 + magic;
    const V n = t - magic;
    V r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    const V rr = r * r;
    V p = splat(1.26177193074810590878e-4);
    p = p * rr + 3.02994407707441961300e-2;
    p = p * rr + 9.99999999999999999910e-1;
    p = p * r;
    V q = splat(3.00198505138664455042e-6);
    q = q * rr + 2.52448340349684104192e-3;
    q = q * rr + 2.27265548208155028766e-1;
    q = q * rr + 2.00000000000000000009e0;
    const V y = 1.0 + 2.0 * (p / (q - p));
    const I e = (((I)t - (I)magic) + 1023) << 52;
    const V scale = (V)e;  // vector casts reinterpret the bits
    return x < -708.0 ? splat(0.0) : y * scale;
}

// exp(x) of one value, through the same lanes (so it equals the vector result bit for bit).
template <class T>
ALSCALE_INLINE T exp_nonpos_scalar(T x) {
    return exp_nonpos(splat<T>(x))[0];
}

// Softmax sums of a row with maximum mx: s = sum exp(x - mx), t = sum exp(x - mx) * (x - mx),
// in 8 lane sums combined in a fixed order. Gaps below -1e30 are clamped (their exp is 0 either
// way; -inf would make 0 * gap NaN).
template <class T>
ALSCALE_INLINE void softmax_sums(const T* x, int64_t n, T mx, T& s_out, T& t_out) {
    using V = vec<T>;
    const V vmx = splat(mx), lo = splat(T(-1e30));
    V s = splat(T(0)), t = s;
    auto step = [&](V v) __attribute__((always_inline)) {
        V d = v - vmx;
        d = d < lo ? lo : d;
        const V e = exp_nonpos(d);
        s += e;
        t += e * d;
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) step(load8(x + c));
    if (c < n) step(load_tail(x + c, n - c, -std::numeric_limits<T>::infinity()));
    s_out = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    t_out = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

// Distances of a row to the p/c decision hyperplanes: r_c = (l_p - l_c) * inv[c] in float64,
// inv = row p of the inverse-norm matrix (1/||w_p - w_c||; +inf at c == p and for equal weight
// rows), 0 * inf taken as +inf. Writes r (n values) and returns min_c r_c. With `bound` given,
// also lists in `hits` the first class of each 8-class block where some r_c <= bound[c].
template <class T>
ALSCALE_INLINE double boundary_row(const T* x, int64_t n, double lp, const double* inv, double* r,
                                   const double* bound, std::vector<int64_t>* hits) {
    using V = vec<double>;
    const V vlp = splat(lp), inf = splat(kInf);
    V mn = inf;
    auto block = [&](V xv, V iv, int64_t c, V bv) __attribute__((always_inline)) {
        const V v = (vlp - xv) * iv;
        const V a = v >= 0.0 ? v : inf;
        mn = a < mn ? a : mn;
        std::memcpy(r + c, &a, sizeof a);
        if (bound && any_lane(a <= bv)) hits->push_back(c);
    };
    const V none = splat(-kInf);
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) {
        const V xv = __builtin_convertvector(load8(x + c), V);
        block(xv, load8(inv + c), c, bound ? load8(bound + c) : none);
    }
    if (c < n) {
        const V xv = __builtin_convertvector(load_tail(x + c, n - c, std::numeric_limits<T>::infinity()), V);
        double tail_r[kLanes];
        const V iv = load_tail(inv + c, n - c, 1.0);
        const V bv = bound ? load_tail(bound + c, n - c, -kInf) : none;
        const V v = (vlp - xv) * iv;
        const V a = v >= 0.0 ? v : inf;
        mn = a < mn ? a : mn;
        std::memcpy(tail_r, &a, sizeof a);
        for (int j = 0; c + j < n; ++j) r[c + j] = tail_r[j];
        if (bound && any_lane(a <= bv)) hits->push_back(c);
    }
    double m = mn[0];
    for (int j = 1; j < kLanes; ++j) m = mn[j] < m ? mn[j] : m;
    return m;
}

// Row p of the inverse-norm matrix; with no head weight (nullptr) every norm is 1, so the row is
// all ones but +inf at p (kept in a per-thread buffer).
class InverseNorms {
public:
    InverseNorms(const double* matrix, int64_t n) : m_(matrix), n_(n) {
        if (!m_) unit_.assign(static_cast<size_t>(n), 1.0);
    }
    const double* row(int64_t p) {
        if (m_) return m_ + p * n_;
        if (last_ >= 0) unit_[static_cast<size_t>(last_)] = 1.0;
        unit_[static_cast<size_t>(p)] = kInf;
        last_ = p;
        return unit_.data();
    }

private:
    const double* m_;
    int64_t n_;
    std::vector<double> unit_;
    int64_t last_ = -1;
};

}  // namespace alscale
