// Per-row arithmetic of the scoring and BASE kernels, the GPU twin of csrc/rowmath.hpp.
//
// A row is handled by a group of 8 consecutive threads, thread j playing the CPU's logical lane
// j: it visits the elements c = j, j + 8, j + 16, ... in order, exactly as lane j of the CPU's
// 8-lane vectors does, and the 8 lane results are combined by shuffles in the CPU's fixed order.
// With every operation an explicit round-to-nearest intrinsic (common.cuh), the max, argmax,
// second largest, softmax sums and boundary distances are bit-identical to the CPU kernels'.
// Only the entropy's final log differs (see scoring.cu).
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

constexpr int kRowThreads = 256;                       // threads of a row block
constexpr int kRowsPerBlock = kRowThreads / kLanes;    // 32 rows, 4 per warp

// Value of lane j of an 8-thread group (all 32 threads of the warp must call it).
template <class V>
__device__ __forceinline__ V from_lane(V v, int j) {
    return __shfl_sync(0xffffffffu, v, j, kLanes);
}

template <class T>
struct RowMax {
    T max;
    T second;  // largest after removing one copy of the max (-inf with one class)
    int64_t arg;
    bool finite;
};

// Max, first argmax and (WantSecond) second largest of row `row` (valid: the row exists; an
// invalid row still takes part in the shuffles). Lane j scans c = j, j + 8, ... as on the CPU.
template <class In, bool WantSecond>
__device__ __forceinline__ RowMax<typename RowType<In>::type> row_max(const DMatrix& x, int64_t row, bool valid, int lane) {
    using T = typename RowType<In>::type;
    const T ninf = -INFINITY;
    T m1 = ninf, m2 = ninf;
    int64_t at = -1;
    bool bad = false;
    const int64_t n = valid ? x.cols : 0;
    const int64_t base = row * x.row_stride;
    for (int64_t c = lane; c < n; c += kLanes) {
        const T v = Load<In>::get(x.data, base + c * x.col_stride);
        bad |= !isfinite(v);
        const bool up = v > m1;
        if (WantSecond) m2 = up ? m1 : (v > m2 ? v : m2);
        m1 = up ? v : m1;
        at = up ? c : at;
    }
    T lane_m1[kLanes], lane_m2[kLanes];
    int64_t lane_at[kLanes];
    bool any_bad = false;
#pragma unroll
    for (int j = 0; j < kLanes; ++j) {
        lane_m1[j] = from_lane(m1, j);
        lane_m2[j] = WantSecond ? from_lane(m2, j) : ninf;
        lane_at[j] = from_lane(static_cast<long long>(at), j);
        any_bad |= from_lane(static_cast<int>(bad), j) != 0;
    }
    RowMax<T> r;
    r.finite = !any_bad;
    r.max = lane_m1[0];
#pragma unroll
    for (int j = 1; j < kLanes; ++j) r.max = lane_m1[j] > r.max ? lane_m1[j] : r.max;
    const int64_t cols = x.cols;
    r.arg = cols;
#pragma unroll
    for (int j = 0; j < kLanes; ++j)
        if (lane_m1[j] == r.max && lane_at[j] >= 0 && lane_at[j] < r.arg) r.arg = lane_at[j];
    if (r.arg >= cols) r.arg = 0;
    r.second = ninf;
    if (WantSecond) {
        bool skipped = false;
#pragma unroll
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

// Combines 8 lane sums as the CPU does: ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
template <class T>
__device__ __forceinline__ T combine_sums(T v) {
    T l[kLanes];
#pragma unroll
    for (int j = 0; j < kLanes; ++j) l[j] = from_lane(v, j);
    return add(add(add(l[0], l[4]), add(l[1], l[5])), add(add(l[2], l[6]), add(l[3], l[7])));
}

// r_c = (l_p - l_c) * inv[c] in float64; NaN (0 * inf) and negatives are +inf, as on the CPU.
// inv: row p of the C x C inverse norms, or nullptr for the plain gap (1, and +inf at p).
__device__ __forceinline__ double boundary_distance(double lp, double xc, const double* inv, int64_t c, int64_t p) {
    const double w = inv ? inv[c] : (c == p ? INFINITY : 1.0);
    const double v = mul(sub(lp, xc), w);
    return v >= 0.0 ? v : INFINITY;
}

// Smallest of the 8 lanes' values (exact; the order only matters for the sign of a zero).
__device__ __forceinline__ double min_lanes(double v) {
    double m = from_lane(v, 0);
#pragma unroll
    for (int j = 1; j < kLanes; ++j) {
        const double o = from_lane(v, j);
        m = o < m ? o : m;
    }
    return m;
}

}  // namespace gpu
}  // namespace alscale
