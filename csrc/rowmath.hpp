// Per-row arithmetic shared by the scoring and BASE kernels. Every function works on one row of
// C contiguous values and is written so that the compiler vectorizes it; results are identical
// whatever the vector width (fixed 8-lane partial sums, no FMA contraction: -ffp-contract=off).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.hpp"

namespace alscale {

// Max of the row and whether every value is finite (x - x is NaN exactly for NaN and +-inf).
template <class T>
inline bool row_max(const T* x, int64_t n, T& max_out) {
    T mx = x[0];
    T probe = 0;
#pragma omp simd reduction(max : mx) reduction(+ : probe)
    for (int64_t c = 0; c < n; ++c) {
        mx = x[c] > mx ? x[c] : mx;
        probe += x[c] - x[c];
    }
    max_out = mx;
    return probe == 0;
}

// First index holding `value` (the first maximum, like numpy.argmax).
template <class T>
inline int64_t first_index(const T* x, int64_t n, T value) {
    for (int64_t c = 0; c < n; ++c)
        if (x[c] == value) return c;
    return 0;
}

// Largest value after the first maximum at p (equal to the max when it is repeated).
template <class T>
inline T second_max(const T* x, int64_t n, int64_t p) {
    T s = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : s)
    for (int64_t c = 0; c < n; ++c) {
        const T v = (c == p) ? -std::numeric_limits<T>::infinity() : x[c];
        s = v > s ? v : s;
    }
    return s;
}

// exp(x) for x <= 0 (0 below the underflow point), vectorizable: Cody-Waite reduction and a
// polynomial, exponent set through the bits. Within 2 ulp of the correctly rounded value.
inline float exp_nonpos(float x) {
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float t = x * 1.44269504088896341f + magic;
    const float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    int32_t tb;
    std::memcpy(&tb, &t, 4);
    int32_t mb;
    std::memcpy(&mb, &magic, 4);
    const int32_t e = ((tb - mb) + 127) << 23;
    float scale;
    std::memcpy(&scale, &e, 4);
    return x < -87.0f ? 0.0f : y * scale;
}

inline double exp_nonpos(double x) {
    const double magic = 6755399441055744.0;  // 1.5 * 2^52
    const double t = x * 1.4426950408889634 + magic;
    const double n = t - magic;
    double r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    const double rr = r * r;
    double p = 1.26177193074810590878e-4;
    p = p * rr + 3.02994407707441961300e-2;
    p = p * rr + 9.99999999999999999910e-1;
    p = p * r;
    double q = 3.00198505138664455042e-6;
    q = q * rr + 2.52448340349684104192e-3;
    q = q * rr + 2.27265548208155028766e-1;
    q = q * rr + 2.00000000000000000009e0;
    const double y = 1.0 + 2.0 * (p / (q - p));
    int64_t tb;
    std::memcpy(&tb, &t, 8);
    int64_t mb;
    std::memcpy(&mb, &magic, 8);
    const int64_t e = ((tb - mb) + 1023) << 52;
    double scale;
    std::memcpy(&scale, &e, 8);
    return x < -708.0 ? 0.0 : y * scale;
}

// x - max, kept finite (a gap below -1e30 has exp 0 either way; -inf would make 0 * gap NaN).
template <class T>
inline T clamp_gap(T d) {
    return d < T(-1e30) ? T(-1e30) : d;
}

// Softmax sums of a row with maximum mx: s = sum exp(x - mx), t = sum exp(x - mx) * (x - mx),
// accumulated in 8 interleaved partial sums combined in a fixed order.
template <class T>
inline void softmax_sums(const T* x, int64_t n, T mx, T& s_out, T& t_out) {
    constexpr int L = 8;
    T s[L] = {}, t[L] = {};
    int64_t c = 0;
    for (; c + L <= n; c += L) {
#pragma omp simd
        for (int j = 0; j < L; ++j) {
            const T d = clamp_gap(x[c + j] - mx);
            const T e = exp_nonpos(d);
            s[j] += e;
            t[j] += e * d;
        }
    }
    for (int j = 0; c + j < n; ++j) {
        const T d = clamp_gap(x[c + j] - mx);
        const T e = exp_nonpos(d);
        s[j] += e;
        t[j] += e * d;
    }
    s_out = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    t_out = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

// Distance of a row to the p/c decision hyperplanes: r_c = (l_p - l_c) * inv[c] in float64, with
// inv = 1/||w_p - w_c|| (row p of the inverse-norm matrix, +inf at c == p and for equal weight
// rows); 0 * inf is taken as +inf. Writes r (n values) and returns min_c r_c.
template <class T>
inline double boundary_row(const T* x, int64_t n, double lp, const double* inv, double* r) {
    double mn = kInf;
#pragma omp simd reduction(min : mn)
    for (int64_t c = 0; c < n; ++c) {
        const double v = (lp - static_cast<double>(x[c])) * inv[c];
        const double a = v >= 0.0 ? v : kInf;
        r[c] = a;
        mn = a < mn ? a : mn;
    }
    return mn;
}

}  // namespace alscale

namespace alscale {

// Row p of the inverse-norm matrix; with no head weight (nullptr) every norm is 1, so the row is
// all ones but +inf at p (kept in a per-thread buffer).
class InverseNorms {
public:
    InverseNorms(const double* matrix, int64_t n) : m_(matrix), n_(n) {
        if (!m_) unit_.assign(static_cast<size_t>(n), 1.0);
    }
    const double* row(int64_t p) {
        if (m_) return m_ + p * n_;
        if (last_ >= 0) unit_[last_] = 1.0;
        unit_[p] = kInf;
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
