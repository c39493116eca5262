// The head's pairwise inverse norms 1 / ||w_p - w_c|| (BASE's r_c = gap * inv[p][c]) from the
// (C, D) float64 weight, without BLAS (numpy's bundled OpenBLAS crashes on some large products)
// and without any C x C temporary beside the result: as a C x C float64 table, or — for many
// classes, where that table is GBs — exactly on demand with a bfloat16 table of lower bounds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common.hpp"
#include "lanedot.hpp"

namespace alscale {

// 1 / ||w_p - w_c|| of one pair: ||w_p - w_c||² = (G_pp + G_cc) - 2 G_pc from the Gram matrix G
// (lane_dot order), except where that cancels (<= 1e-6 (G_pp + G_cc): nearly or exactly equal
// rows), where it is lane_sqdist(w_p, w_c); +inf where the norm is 0. Symmetric bit for bit.
// `dot` = lane_dot(wp, wc, d), computed by the caller (one at a time, or many in a register block).
ALSCALE_INLINE double inverse_norm_of_dot(double dot, const double* wp, const double* wc, int64_t d, double gp,
                                          double gc) {
    const double total = gp + gc;
    double n2 = total - 2.0 * dot;
    if (n2 <= 1e-6 * total) n2 = lane_sqdist(wp, wc, d);
    return n2 > 0 ? 1.0 / std::sqrt(n2) : std::numeric_limits<double>::infinity();
}
ALSCALE_INLINE double pair_inverse_norm(const double* wp, const double* wc, int64_t d, double gp, double gc) {
    return inverse_norm_of_dot(lane_dot(wp, wc, d), wp, wc, d, gp, gc);
}

// out (C x C, row-major): pair_inverse_norm of every pair, +inf on the diagonal. Bit-identical for
// every thread count and ISA; the caller scales weights beyond 2^+-400 by a power of two first
// (no overflow in G).
void inverse_norms(const double* w, int64_t classes, int64_t dims, double* out, int num_threads);

// The same values without the C x C float64 table: exact(p, c) computes one pair on demand (O(D),
// the same bits as inverse_norms), and lower_row(p) gives row p of a C x C bfloat16 table of
// lower bounds (lower <= exact, within 2^-7 of it in float's normal range), a quarter of the
// table's memory. A kernel filters with the lower bounds and computes exactly only the pairs that
// can matter (tests/test_head_pairs.py: every selection equals the table's).
class PairNorms {
public:
    PairNorms(const double* w, int64_t classes, int64_t dims, int num_threads);
    int64_t classes() const { return C_; }
    int64_t dims() const { return D_; }
    const std::vector<double>& weight() const { return w_; }
    double exact(int64_t p, int64_t c) const {
        if (p == c) return std::numeric_limits<double>::infinity();
        const int64_t a = std::min(p, c), b = std::max(p, c);
        return pair_inverse_norm(w_.data() + a * D_, w_.data() + b * D_, D_, diag_[static_cast<size_t>(a)],
                                 diag_[static_cast<size_t>(b)]);
    }
    void lower_row(int64_t p, double* out) const;

private:
    int64_t C_, D_;
    std::vector<double> w_, diag_;
    std::vector<uint16_t> lower_;
};

// The head as a kernel reads it: a C x C table, the pairs on demand, or neither (no weight: every
// norm is 1).
struct HeadNorms {
    const double* table = nullptr;
    const PairNorms* pairs = nullptr;
};

}  // namespace alscale
