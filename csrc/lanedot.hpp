// Exact, vectorizable float64 reductions over embedding rows: element j goes to lane j % 8, each
// lane accumulates in row order, and the lanes are combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
// No FMA contraction (-ffp-contract=off) and no reassociation, so the compiler may vectorize the
// lanes (8 independent accumulators) but the result is bit-identical on every CPU and ISA, and a
// numpy reference (tests/reference.py: lane_sum) reproduces it exactly.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace alscale {

ALSCALE_INLINE double combine_lanes(const double* a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// sum_j x_j * y_j (x, y converted to double first).
template <class T, class U>
ALSCALE_INLINE double lane_dot(const T* x, const U* y, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(x[j + l]) * static_cast<double>(y[j + l]);
    for (int l = 0; j + l < n; ++l) acc[l] += static_cast<double>(x[j + l]) * static_cast<double>(y[j + l]);
    return combine_lanes(acc);
}

// sum_j (x_j - y_j)^2 (x, y converted to double first).
template <class T>
ALSCALE_INLINE double lane_sqdist(const T* x, const T* y, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; ++l) {
            const double t = static_cast<double>(x[j + l]) - static_cast<double>(y[j + l]);
            acc[l] += t * t;
        }
    for (int l = 0; j + l < n; ++l) {
        const double t = static_cast<double>(x[j + l]) - static_cast<double>(y[j + l]);
        acc[l] += t * t;
    }
    return combine_lanes(acc);
}

// Best (largest value, then smallest row) of a parallel reduction: associative, so the winner
// never depends on how the rows were split between threads.
struct Best {
    double value;
    int64_t row;  // -1: none
};
ALSCALE_INLINE bool better(const Best& a, const Best& b) {
    if (a.row < 0) return false;
    if (b.row < 0) return true;
    return a.value > b.value || (a.value == b.value && a.row < b.row);
}

}  // namespace alscale
