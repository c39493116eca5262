#include "head.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "common.hpp"
#include "isa.hpp"
#include "lanedot.hpp"

namespace alscale {
namespace {

constexpr int64_t kTile = 32;  // rows of a tile: 2 x 32 rows of D doubles stay in L2

// The upper-triangle entries of the tile (rows [p0, p1) x [c0, c1), c > p) and their mirror.
template <class T, int B>
ALSCALE_INLINE int64_t norm_tile(const double* const& w, const int64_t& d, const double* const& diag,
                                 double* const& out, const int64_t& C, const int64_t& p0, const int64_t& p1,
                                 const int64_t& c0, const int64_t& c1) {
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t p = p0; p < p1; ++p) {
        const double* wp = w + p * d;
        for (int64_t c = std::max(c0, p + 1); c < c1; ++c) {
            const double* wc = w + c * d;
            const double total = diag[p] + diag[c];
            double n2 = total - 2.0 * lane_dot(wp, wc, d);
            if (n2 <= 1e-6 * total) n2 = lane_sqdist(wp, wc, d);
            const double v = n2 > 0 ? 1.0 / std::sqrt(n2) : inf;
            out[p * C + c] = v;
            out[c * C + p] = v;
        }
    }
    return 0;
}
ALSCALE_MULTIVERSION(norm_tile)

template <class T, int B>
ALSCALE_INLINE int64_t diag_rows(const double* const& w, const int64_t& d, double* const& diag,
                                 const int64_t& begin, const int64_t& end) {
    for (int64_t p = begin; p < end; ++p) diag[p] = lane_dot(w + p * d, w + p * d, d);
    return 0;
}
ALSCALE_MULTIVERSION(diag_rows)

}  // namespace

void inverse_norms(const double* w, int64_t C, int64_t d, double* out, int num_threads) {
    std::vector<double> diag(static_cast<size_t>(C));
    const int threads = thread_count(num_threads);
    double* g = diag.data();
    const int64_t zero = 0;
    diag_rows_dispatch<double>(w, d, g, zero, C);
    const int64_t tiles = (C + kTile - 1) / kTile;
    const int64_t pairs = tiles * (tiles + 1) / 2;  // tiles (a, b) with a <= b
    ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t t = 0; t < pairs; ++t) {
        errors.run([&] {
            int64_t a = 0, rest = t;  // the t-th pair (a, b), a <= b, in row-major order
            while (rest >= tiles - a) rest -= tiles - a++;
            const int64_t b = a + rest;
            const int64_t p0 = a * kTile, p1 = std::min(C, p0 + kTile);
            const int64_t c0 = b * kTile, c1 = std::min(C, c0 + kTile);
            norm_tile_dispatch<double>(w, d, g, out, C, p0, p1, c0, c1);
        });
    }
    errors.rethrow();
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t p = 0; p < C; ++p) out[p * C + p] = inf;
}

}  // namespace alscale
