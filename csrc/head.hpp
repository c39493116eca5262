// The head's pairwise inverse norms 1 / ||w_p - w_c|| (BASE's r_c = gap * inv[p][c]) from the
// (C, D) float64 weight, without BLAS (numpy's bundled OpenBLAS crashes on some large products)
// and without any C x C temporary beside the result.
#pragma once

#include <cstdint>

namespace alscale {

// out (C x C, row-major): 1 / ||w_p - w_c||, +inf on the diagonal and where the norm is 0.
// ||w_p - w_c||² = (G_pp + G_cc) - 2 G_pc from the Gram matrix G (lane_dot order), except where
// that cancels (<= 1e-6 (G_pp + G_cc): nearly or exactly equal rows), where it is
// lane_sqdist(w_p, w_c). Symmetric and bit-identical for every thread count and ISA; the caller
// scales weights beyond 2^+-400 by a power of two first (no overflow in G).
void inverse_norms(const double* w, int64_t classes, int64_t dims, double* out, int num_threads);

}  // namespace alscale
