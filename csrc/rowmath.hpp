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

namespace alscale {

// Native vectors of B bytes: 32 (an AVX2 register: 8 floats or 4 doubles) or 16 (SSE2, NEON).
// A row is processed in blocks of 8 elements, element c in logical lane c % 8, that is part
// (c % 8) / W of the block, slot (c % 8) % W, whatever B is.
template <class T>
struct IntOf;
template <>
struct IntOf<float> {
    using type = int32_t;
};
template <>
struct IntOf<double> {
    using type = int64_t;
};
template <class T, int B>
struct Lanes {
    typedef T V __attribute__((vector_size(B)));
    typedef typename IntOf<T>::type I __attribute__((vector_size(B)));
};
template <class T, int B>
using vec = typename Lanes<T, B>::V;
template <class T, int B>
using ivec = typename Lanes<T, B>::I;

constexpr int kLanes = 8;  // logical lanes of a block
template <class T, int B>
constexpr int kWidth = static_cast<int>(B / sizeof(T));  // elements per native vector
template <class T, int B>
constexpr int kParts = kLanes / kWidth<T, B>;  // native vectors per block

template <class T, int B>
ALSCALE_INLINE vec<T, B> load(const T* p) {
    vec<T, B> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class T, int B>
ALSCALE_INLINE vec<T, B> splat(T x) {
    return vec<T, B>{} + x;
}

// A block of 8 values starting at p, or the last `count` < 8 with the missing lanes set to fill.
template <class T, int B>
struct Block {
    vec<T, B> part[kParts<T, B>];
};

template <class T, int B>
ALSCALE_INLINE Block<T, B> load_block(const T* p) {
    Block<T, B> b;
    for (int h = 0; h < kParts<T, B>; ++h) b.part[h] = load<T, B>(p + h * kWidth<T, B>);
    return b;
}

template <class T, int B>
ALSCALE_INLINE Block<T, B> load_tail(const T* p, int64_t count, T fill) {
    T tmp[kLanes];
    for (int j = 0; j < kLanes; ++j) tmp[j] = j < count ? p[j] : fill;
    return load_block<T, B>(tmp);
}

template <class M>
ALSCALE_INLINE bool any_lane(M m) {
    using Q = typename Lanes<double, static_cast<int>(sizeof(M))>::I;
    const Q q = (Q)m;
    int64_t any = 0;
    for (int j = 0; j < static_cast<int>(sizeof(M) / 8); ++j) any |= q[j];
    return any != 0;
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

template <class T, int B, bool WantSecond>
ALSCALE_INLINE RowMax<T> row_max(const T* x, int64_t n) {
    using V = vec<T, B>;
    using I = ivec<T, B>;
    constexpr int P = kParts<T, B>, W = kWidth<T, B>;
    const T ninf = -std::numeric_limits<T>::infinity();
    V m1[P], m2[P], probe[P];
    I at[P], idx[P];
    for (int h = 0; h < P; ++h) {
        m1[h] = m2[h] = splat<T, B>(ninf);
        probe[h] = splat<T, B>(T(0));
        at[h] = I{} - 1;
        T first[W];
        for (int j = 0; j < W; ++j) first[j] = static_cast<T>(h * W + j);
        idx[h] = __builtin_convertvector((load<T, B>(first)), I);
    }
    auto step = [&](const Block<T, B>& b) __attribute__((always_inline)) {
        for (int h = 0; h < P; ++h) {
            const V v = b.part[h];
            const I up = v > m1[h];
            if (WantSecond) m2[h] = up ? m1[h] : (v > m2[h] ? v : m2[h]);
            m1[h] = up ? v : m1[h];
            at[h] = up ? idx[h] : at[h];
            idx[h] += kLanes;
        }
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) {
        const Block<T, B> b = load_block<T, B>(x + c);
        for (int h = 0; h < P; ++h) probe[h] += b.part[h] - b.part[h];
        step(b);
    }
    if (c < n) {
        const Block<T, B> z = load_tail<T, B>(x + c, n - c, T(0));
        for (int h = 0; h < P; ++h) probe[h] += z.part[h] - z.part[h];
        step(load_tail<T, B>(x + c, n - c, ninf));
    }
    RowMax<T> r;
    bool bad = false;
    for (int h = 0; h < P; ++h) bad |= any_lane(probe[h] != probe[h]);
    r.finite = !bad;
    T lane_m1[kLanes], lane_m2[kLanes];
    int64_t lane_at[kLanes];
    for (int j = 0; j < kLanes; ++j) {
        lane_m1[j] = m1[j / W][j % W];
        lane_m2[j] = m2[j / W][j % W];
        lane_at[j] = at[j / W][j % W];
    }
    r.max = lane_m1[0];
    for (int j = 1; j < kLanes; ++j) r.max = lane_m1[j] > r.max ? lane_m1[j] : r.max;
    r.arg = n;
    for (int j = 0; j < kLanes; ++j)
        if (lane_m1[j] == r.max && lane_at[j] >= 0 && lane_at[j] < r.arg) r.arg = lane_at[j];
    if (r.arg >= n) r.arg = 0;  // only for a non-finite row
    r.second = ninf;
    if (WantSecond) {
        // The two largest of the 16 lane candidates, as a multiset.
        bool skipped = false;
        for (int j = 0; j < kLanes; ++j) {
            if (!skipped && lane_m1[j] == r.max)
                skipped = true;
            else if (lane_m1[j] > r.second)
                r.second = lane_m1[j];
            if (lane_m2[j] > r.second) r.second = lane_m2[j];
        }
    }
    return r;
}

// exp(x) for x <= 0 (0 below the underflow point), elementwise: Cody-Waite reduction and a
// polynomial (Cephes), the exponent set through the bits. Within 2 ulp of the exact value.
template <int B>
ALSCALE_INLINE vec<float, B> exp_nonpos(vec<float, B> x) {
    using V = vec<float, B>;
    using I = ivec<float, B>;
    const V magic = splat<float, B>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    const V t = x * 1.44269504088896341f + magic;
    const V n = t - magic;
    V r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    V y = splat<float, B>(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    const I e = (((I)t - (I)magic) + 127) << 23;
    const V scale = (V)e;  // vector casts reinterpret the bits
    return x < -87.0f ? splat<float, B>(0.0f) : y * scale;
}

template <int B>
ALSCALE_INLINE vec<double, B> exp_nonpos(vec<double, B> x) {
    using V = vec<double, B>;
    using I = ivec<double, B>;
    const V magic = splat<double, B>(6755399441055744.0);  // 1.5 * 2^52
    const V t = x * 1.4426950408889634 + magic;
    const V n = t - magic;
    V r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    const V rr = r * r;
    V p = splat<double, B>(1.26177193074810590878e-4);
    p = p * rr + 3.02994407707441961300e-2;
    p = p * rr + 9.99999999999999999910e-1;
    p = p * r;
    V q = splat<double, B>(3.00198505138664455042e-6);
    q = q * rr + 2.52448340349684104192e-3;
    q = q * rr + 2.27265548208155028766e-1;
    q = q * rr + 2.00000000000000000009e0;
    const V y = 1.0 + 2.0 * (p / (q - p));
    const I e = (((I)t - (I)magic) + 1023) << 52;
    const V scale = (V)e;
    return x < -708.0 ? splat<double, B>(0.0) : y * scale;
}

// exp(x) of one value, through the same lanes (so it equals the vector result bit for bit).
template <class T, int B>
ALSCALE_INLINE T exp_nonpos_scalar(T x) {
    return exp_nonpos<B>(splat<T, B>(x))[0];
}

// Softmax sums of a row with maximum mx: s = sum exp(x - mx), t = sum exp(x - mx) * (x - mx),
// in 8 lane sums combined in a fixed order. Gaps below -1e30 are clamped (their exp is 0 either
// way; -inf would make 0 * gap NaN).
template <class T, int B>
ALSCALE_INLINE void softmax_sums(const T* x, int64_t n, T mx, T& s_out, T& t_out) {
    using V = vec<T, B>;
    constexpr int P = kParts<T, B>, W = kWidth<T, B>;
    const V vmx = splat<T, B>(mx), lo = splat<T, B>(T(-1e30));
    V s[P], t[P];
    for (int h = 0; h < P; ++h) s[h] = t[h] = splat<T, B>(T(0));
    auto step = [&](const Block<T, B>& b) __attribute__((always_inline)) {
        for (int h = 0; h < P; ++h) {
            V d = b.part[h] - vmx;
            d = d < lo ? lo : d;
            const V e = exp_nonpos<B>(d);
            s[h] += e;
            t[h] += e * d;
        }
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) step(load_block<T, B>(x + c));
    if (c < n) step(load_tail<T, B>(x + c, n - c, -std::numeric_limits<T>::infinity()));
    T ls[kLanes], lt[kLanes];
    for (int j = 0; j < kLanes; ++j) {
        ls[j] = s[j / W][j % W];
        lt[j] = t[j / W][j % W];
    }
    s_out = ((ls[0] + ls[4]) + (ls[1] + ls[5])) + ((ls[2] + ls[6]) + (ls[3] + ls[7]));
    t_out = ((lt[0] + lt[4]) + (lt[1] + lt[5])) + ((lt[2] + lt[6]) + (lt[3] + lt[7]));
}

// A block of 8 logits as float64 vectors (kParts<double, B> of them).
template <int B>
ALSCALE_INLINE void to_double(const Block<float, B>& b, vec<double, B>* out) {
    constexpr int W = kWidth<float, B>;
    using Half = vec<float, B / 2>;
    for (int h = 0; h < kParts<float, B>; ++h) {
        Half lo, hi;
        for (int j = 0; j < W / 2; ++j) {
            lo[j] = b.part[h][j];
            hi[j] = b.part[h][j + W / 2];
        }
        out[2 * h] = __builtin_convertvector(lo, vec<double, B>);
        out[2 * h + 1] = __builtin_convertvector(hi, vec<double, B>);
    }
}
template <int B>
ALSCALE_INLINE void to_double(const Block<double, B>& b, vec<double, B>* out) {
    for (int h = 0; h < kParts<double, B>; ++h) out[h] = b.part[h];
}

// Distances of a row to the p/c decision hyperplanes: r_c = (l_p - l_c) * inv[c] in float64,
// inv = row p of the inverse-norm matrix (1/||w_p - w_c||; +inf at c == p and for equal weight
// rows), 0 * inf taken as +inf. Writes r (n values) and returns min_c r_c. With `bound` given,
// also lists in `hits` the first class of each 32-class group where some r_c <= bound[c].
template <class T, int B>
ALSCALE_INLINE double boundary_row(const T* x, int64_t n, double lp, const double* inv, double* r,
                                   const double* bound, std::vector<int64_t>* hits) {
    using V = vec<double, B>;
    using I = ivec<double, B>;
    constexpr int P = kParts<double, B>, W = kWidth<double, B>;
    constexpr int64_t kGroup = 32;
    const V vlp = splat<double, B>(lp), inf = splat<double, B>(kInf);
    V mn = inf;
    I hit = I{};
    auto block = [&](const Block<T, B>& xb, const double* iv, const double* bv, double* out)
                     __attribute__((always_inline)) {
        V xd[P];
        to_double<B>(xb, xd);
        for (int h = 0; h < P; ++h) {
            const V v = (vlp - xd[h]) * load<double, B>(iv + W * h);
            const V a = v >= 0.0 ? v : inf;  // NaN (0 * inf) -> +inf
            mn = a < mn ? a : mn;
            std::memcpy(out + W * h, &a, sizeof a);
            if (bv) hit |= a <= load<double, B>(bv + W * h);
        }
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) {
        block(load_block<T, B>(x + c), inv + c, bound ? bound + c : nullptr, r + c);
        if (bound && (c + kLanes) % kGroup == 0) {
            if (any_lane(hit)) hits->push_back(c + kLanes - kGroup);
            hit = I{};
        }
    }
    int64_t last = c - kLanes;  // start of the last block
    if (c < n) {
        double iv[kLanes], bv[kLanes], out[kLanes];
        for (int j = 0; j < kLanes; ++j) {
            iv[j] = c + j < n ? inv[c + j] : 1.0;
            bv[j] = bound && c + j < n ? bound[c + j] : -kInf;
        }
        block(load_tail<T, B>(x + c, n - c, std::numeric_limits<T>::infinity()), iv, bound ? bv : nullptr, out);
        for (int j = 0; c + j < n; ++j) r[c + j] = out[j];
        last = c;
    }
    if (bound && any_lane(hit)) hits->push_back((last / kGroup) * kGroup);  // the unfinished group
    double m = mn[0];
    for (int j = 1; j < W; ++j) m = mn[j] < m ? mn[j] : m;
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
