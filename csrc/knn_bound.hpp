// The error bound that lets a low-precision tensor-core GEMM choose the candidates of an exact
// kNN graph (cuda/knn_tc.cu; its CPU specification is tests/test_knn_bound.py). One copy for the
// host (alscale._core.knn_candidate_bound) and the device (ALSCALE_HD).
//
// Setting. a, b are rows of the unit-normalised points (float32; alscale normalises in float64
// and rounds each element once, so ||a||, ||b|| <= 1 + 2^-23 < nu = 1 + 2^-20). The CPU kernel
// (csrc/knn.cpp) computes s = fl(...fl(fl(a_1 b_1) + fl(a_2 b_2)) ... + fl(a_D b_D)): D roundings
// of products and D - 1 of sums, float32 round-to-nearest (u32 = 2^-24). The GPU computes
// s^ = sum_k r(a_k) r(b_k) with operands rounded to the tensor cores' format r (bf16: 8 significant
// bits, round-to-nearest, unit roundoff u = 2^-8; TF32: 11 bits, cvt.rna, u = 2^-11) and float32
// accumulation in an order the hardware chooses.
//
// Bound. With gamma_n(v) = n v / (1 - n v) (Higham, Accuracy and Stability, Lemma 3.1 and
// eq. 3.5: a sum of n terms in any order and grouping, each addition rounded with relative
// error <= v, errs by at most gamma_{n-1}(v) sum |terms|) and Cauchy-Schwarz sum |a_k b_k| <=
// ||a|| ||b|| <= nu^2:
//   (1) operand rounding: |r(a).r(b) - a.b| = |sum a_k b_k (alpha_k + beta_k + alpha_k beta_k)|
//       <= (2u + u^2) nu^2, |alpha_k|, |beta_k| <= u;
//   (2) the GPU's accumulation: the products r(a_k) r(b_k) are exact in float32 (8 + 8 and
//       11 + 11 significant bits fit in 24); the sum errs by <= gamma_D(2^-23) (1 + u)^2 nu^2.
//       2^-23, twice float32's round-to-nearest unit, also covers accumulators that truncate
//       (round toward zero), as tensor cores' float32 accumulation is reported to do, in any
//       order or blocking (split-K included); D terms instead of D - 1 leave one rounding of slack.
//       Tensor cores' block FMA (Fasi, Higham, Mikaitis & Pranesh, 2021) aligns a block of b
//       products and the accumulator to the largest exponent and truncates what is shifted out,
//       then truncates once more on normalising: up to D (1 + 1/b) 2^-23 relative to the running
//       sums, more than gamma_D(2^-23) by about (D / b) 2^-23. The term is therefore doubled,
//       2 gamma_D(2^-23), which covers any block size b >= 1 of that model;
//   (3) the CPU's own rounding: |s - a.b| <= gamma_D(2^-24) nu^2;
//   (4) underflow, which the relative model above ignores: every product or rounding that goes
//       below float32's normal range (including flush-to-zero of subnormal operands) changes a
//       term by at most 2^-126 absolutely: 3 D 2^-126 in all.
//   eps = nu^2 ((2u + u^2) + 2 (1 + u)^2 gamma_D(2^-23) + gamma_D(2^-24)) + 3 D 2^-126 >= |s^ - s|.
// The bound is returned rounded up to a float32 (the kernels compare float32s with it).
//
// The filter. Let t^ be a row's k-th largest s^ (with multiplicity). Keep every j with
// s^_j >= t^ - 2 eps. Proof that the exact top-k (largest s, ties to the smaller index) is kept:
// the k points with s^ >= t^ have s >= t^ - eps, so the exact k-th largest s is t >= t^ - eps;
// every exact top-k point j has s_j >= t (ties included: ">=", so the tie rule cannot drop it),
// hence s^_j >= s_j - eps >= t^ - 2 eps. The same holds with t^ replaced by any value <= it,
// e.g. the k-th largest s^ among the points seen so far (a streaming kernel), and when the
// threshold t^ - 2 eps is rounded down (knn_candidate_threshold). The kept candidates are then
// re-ranked with the CPU's exact float32 arithmetic, so the graph is the CPU's bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "rowmath_common.hpp"  // ALSCALE_HD

namespace alscale {

// Operand formats of the candidate GEMM (the numbering is the bindings' `precision` code).
enum class KnnPrecision : int { bf16 = 0, tf32 = 1 };

// Largest number of dimensions the bound is stated for (gamma_D(2^-23) needs D 2^-23 < 1; far
// beyond any embedding).
constexpr int64_t kKnnBoundMaxDims = int64_t{1} << 20;

// Unit roundoff of the operand rounding: bf16 round-to-nearest 2^-8, TF32 (cvt.rna) 2^-11.
ALSCALE_HD double knn_operand_roundoff(KnnPrecision p) {
    return p == KnnPrecision::bf16 ? 1.0 / 256.0 : 1.0 / 2048.0;
}

ALSCALE_HD double knn_gamma(double n, double v) { return n * v / (1.0 - n * v); }

// A float64 value rounded up to a float32, with 2^-40 of relative slack for the float64
// roundings of the few operations that computed it (each at most 2^-53 relatively).
ALSCALE_HD float knn_round_up(double v) {
    const double w = v * (1.0 + 1.0 / 1099511627776.0);
    const float f = static_cast<float>(w);
    return static_cast<double>(f) >= w ? f : nextafterf(f, INFINITY);
}

constexpr double kKnnNu = 1.0 + 1.0 / 1048576.0;  // 1 + 2^-20: the rows' norm bound

// The bound's terms other than operand rounding: (1 + u)^2 nu^2 gamma_D(2^-23) (GPU accumulation)
// + nu^2 gamma_D(2^-24) (CPU rounding) + 3 D 2^-126 (underflow).
ALSCALE_HD double knn_accumulation_terms(int64_t d, KnnPrecision p) {
    const double u = knn_operand_roundoff(p), dd = static_cast<double>(d);
    return kKnnNu * kKnnNu * (2.0 * (1.0 + u) * (1.0 + u) * knn_gamma(dd, 1.0 / 8388608.0) + knn_gamma(dd, 1.0 / 16777216.0)) +
           3.0 * dd * 1.1754943508222875e-38;
}

// eps(d, precision) >= |s^ - s| for float32 rows of norm <= 1 + 2^-20 (see above), rounded up to
// a float32; d in [1, kKnnBoundMaxDims] (the caller checks).
ALSCALE_HD float knn_candidate_bound(int64_t d, KnnPrecision p) {
    const double u = knn_operand_roundoff(p);
    return knn_round_up(kKnnNu * kKnnNu * (2.0 * u + u * u) + knn_accumulation_terms(d, p));
}

// The per-row bound the kernel uses (never larger than eps). With delta_a = r(a) - a and
// rho_a >= ||delta_a|| (the row's actual rounding error, typically ~0.4 u ||a|| instead of the
// worst case u ||a||), Cauchy-Schwarz gives |r(a).r(b) - a.b| = |delta_a.b + a.delta_b +
// delta_a.delta_b| <= nu rho_a + nu rho_b + rho_a rho_b, so with rho_max >= rho_b for every row b,
//   |s^_ab - s_ab| <= E_a = nu rho_a + nu rho_max + rho_a rho_max + knn_accumulation_terms.
// The filter's proof holds with E_a for eps in row a (the k points with s^ >= t^ have s >= t^ -
// E_a, so every exact neighbour has s^ >= t^ - 2 E_a). Since rho <= u nu, E_a <= eps.
ALSCALE_HD float knn_row_bound(float rho, float rho_max, int64_t d, KnnPrecision p) {
    const double r = rho, m = rho_max;
    const float e = knn_round_up(kKnnNu * r + kKnnNu * m + r * m + knn_accumulation_terms(d, p));
    const float g = knn_candidate_bound(d, p);
    return e < g ? e : g;
}

// rho >= ||r(a) - a|| from ss = the float64 sum of the d squared differences in any order (each
// square exact: a difference has <= 24 significant bits): the sum's rounding (gamma_{d-1}(2^-53) <=
// (d + 1) 2^-52), the square root's and the float32's, all rounded up.
ALSCALE_HD float knn_rounding_norm(double ss, int64_t d) {
    return knn_round_up(sqrt(ss * (1.0 + static_cast<double>(d + 1) / 4503599627370496.0)) * (1.0 + 1.0 / 2251799813685248.0));
}

// The candidate threshold t - 2 eps rounded toward -inf (never above the real number): a row
// keeps s^ >= this. two_eps = 2 * knn_candidate_bound(...) (exact: a doubling).
ALSCALE_HD float knn_candidate_threshold(float kth, float two_eps) {
#ifdef __CUDA_ARCH__
    return __fsub_rd(kth, two_eps);
#else
    // TwoSum (Knuth): err = (kth - two_eps) - f exactly, in float32 round-to-nearest (no overflow:
    // |kth| <= 1.01 and two_eps < 1). f above the real difference (err < 0): one float lower.
    const float f = kth - two_eps;
    const float bb = f - kth;
    const float err = (kth - (f - bb)) + (-two_eps - bb);
    return err < 0.0f ? nextafterf(f, -INFINITY) : f;
#endif
}

}  // namespace alscale
