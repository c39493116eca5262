// Per-row arithmetic of the scoring and BASE kernels on the GPU: the arithmetic of
// csrc/rowmath_common.hpp (shared with the CPU's csrc/rowmath.hpp), one thread per lane.
//
// A row is handled by a group of 8 consecutive threads, thread j playing the CPU's logical lane
// j: it visits the elements c = j, j + 8, j + 16, ... in order, exactly as lane j of the CPU's
// 8-lane vectors does, and the 8 lane results are combined by shuffles in the CPU's fixed order.
// So the max, argmax, second largest, softmax sums and boundary distances are bit-identical to
// the CPU kernels'. Only the entropy's final log differs (see scoring.cu).
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

constexpr int kRowThreads = 256;                     // threads of a row block
constexpr int kRowsPerBlock = kRowThreads / kLanes;  // 32 rows, 4 per warp

// Value of lane j of an 8-thread group (all 32 threads of the warp must call it).
template <class V>
__device__ __forceinline__ V from_lane(V v, int j) {
    return __shfl_sync(0xffffffffu, v, j, kLanes);
}

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
        max_step<WantSecond>(v, c, m1, m2, at);
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
    return combine_max<T, WantSecond>(lane_m1, lane_m2, lane_at, x.cols, !any_bad);
}

// The sum of the 8 lanes' v, combined as the CPU does (sum_lanes).
template <class T>
__device__ __forceinline__ T sum_of_lanes(T v) {
    T l[kLanes];
#pragma unroll
    for (int j = 0; j < kLanes; ++j) l[j] = from_lane(v, j);
    return sum_lanes(l);
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

// The row loop of the row kernels: grid-stride over the rows [begin, end), row i on the 8
// threads of its lane group, calling body(i, go, mx, lane) with mx = row_max(row i) and go = the
// row exists, is not masked (mask[i] != 0) and is finite. The smallest non-finite row goes to
// *first_bad. Every thread runs every iteration, also with go false: the shuffles need the warp.
template <class In, bool WantSecond, class Body>
__device__ __forceinline__ void for_each_row(const DMatrix& x, int64_t begin, int64_t end, const uint8_t* mask,
                                             unsigned long long* first_bad, Body body) {
    using T = typename RowType<In>::type;
    const int lane = threadIdx.x % kLanes;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
    for (int64_t r0 = begin + static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < end; r0 += stride) {
        const int64_t i = r0 + threadIdx.x / kLanes;
        const bool valid = i < end && !(mask && mask[i]);
        const RowMax<T> mx = row_max<In, WantSecond>(x, i, valid, lane);
        if (valid && !mx.finite && lane == 0) atomicMin(first_bad, static_cast<unsigned long long>(i));
        body(i, valid && mx.finite, mx, lane);
    }
}

// min_c r_c of row i (every lane gets it); this lane computes r_c for c = lane, lane + 8, ... (as
// the CPU's lane) and calls each(c, r_c) for them. inv: row-major C x C inverse norms, or nullptr
// for the plain gap (1, and +inf at p). With go false the row only takes part in the shuffles.
template <class In, class T, class Each>
__device__ __forceinline__ double boundary_min(const DMatrix& x, int64_t i, bool go, const RowMax<T>& mx,
                                               const double* inv, int lane, Each each) {
    const int64_t n = go ? x.cols : 0, p = mx.arg;
    const double lp = row_max_lanes<double>(static_cast<double>(mx.max));  // -0 -> +0 as on the CPU
    const double* row_inv = inv ? inv + p * x.cols : nullptr;
    const int64_t base = i * x.row_stride;
    double mn = INFINITY;
    for (int64_t c = lane; c < n; c += kLanes) {
        const double w = row_inv ? row_inv[c] : (c == p ? INFINITY : 1.0);
        const double a = boundary_distance(lp, static_cast<double>(Load<In>::get(x.data, base + c * x.col_stride)), w);
        mn = a < mn ? a : mn;
        each(c, a);
    }
    return min_lanes(mn);
}

}  // namespace gpu
}  // namespace alscale
