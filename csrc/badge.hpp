// BADGE (Ash et al. 2020): k-means++ seeding on last-layer gradient embeddings
// g_i = (softmax(l_i) - onehot(argmax l_i)) ⊗ z_i, with the factorized distance
//   ||g_i - g_j||² = ||a_i||²||z_i||² + ||a_j||²||z_j||² - 2 (a_i·a_j)(z_i·z_j)
// (a = softmax - onehot), so the C·D-wide gradient matrix is never formed.
//
// Exact definition (tests/reference.py: select_badge reproduces it bit for bit):
// * per row: m = max l, e_c = exp(l_c - m) (libm exp in float64), s = sum of e_c in column order,
//   p_c = e_c / s, a_c = float32(p_c - [c == first argmax]); na = lane_dot(a, a) and
//   nz = lane_dot(z, z) in float64 (lanedot.hpp); g2 = na * nz.
// * d(i, j) = max(0, (g2_i + g2_j) - 2 * (lane_dot(a_i, a_j) * lane_dot(z_i, z_j))).
// * first pick: the eligible row with the largest g2 (ties to the smaller row).
// * pick k >= 1: w_i = min over picks of d(i, pick) for eligible rows not yet picked, else 0;
//   cum = running float64 sum of w in row order, total = cum[n-1]; target = u[k] * total; the pick
//   is the first row with cum_i > target (if none, rounding: the last row with w_i > 0); if
//   total == 0 the first eligible row not yet picked.
// O(N·(C + D)) time per pick, O(N·C) memory (a in float32).
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace alscale {

// logits: n x C; z: n x d row-major (float or double); uniforms: `budget` values in [0, 1)
// (u[0] unused). exclude: nullptr or n bytes. Throws std::invalid_argument on a non-finite logit.
template <class T>
std::vector<int64_t> select_badge(const Matrix& logits, const T* z, int64_t d, const uint8_t* exclude,
                                  int64_t budget, const double* uniforms, int num_threads);

}  // namespace alscale
