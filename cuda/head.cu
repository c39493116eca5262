#include "head.cuh"

#include <cfloat>

namespace alscale {
namespace gpu {
namespace {

constexpr int kTile = 32;    // a block computes a kTile x kTile tile of pairs, a thread per pair
constexpr int kDepth = 64;   // dimensions staged in shared memory per step (a multiple of kLanes)
constexpr int kLanesD = 8;   // csrc/lanedot.hpp: element m goes to lane m % 8

// W's checks and max |w| (the inputs of norms_of's shift), a thread per element.
template <class In>
__global__ void weight_stats(DMatrix w, HeadStatus* status) {
    const int64_t total = w.rows * w.cols;  // <= 2^31 * 2^31: fits int64
    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t p = k / w.cols, d = k % w.cols;
        const double v = static_cast<double>(Load<In>::get(w.data, p * w.row_stride + d * w.col_stride));
        if (!isfinite(v)) {
            atomicMin(&status->first_bad, static_cast<unsigned long long>(p));
        } else if (v != 0.0) {
            status->nonzero = 1;  // a benign race: every writer writes 1
            atomicMax(&status->top, static_cast<unsigned long long>(__double_as_longlong(fabs(v))));
        }
    }
}

// The exponent e of norms_of: frexp(top)[1] when top leaves [2^-400, 2^400], else 0.
__device__ __forceinline__ int shift_exponent(const HeadStatus* status) {
    const double top = __longlong_as_double(static_cast<long long>(status->top));
    if (!(top > 0x1p400) && !(top > 0.0 && top < 0x1p-400)) return 0;
    int e = 0;
    frexp(top, &e);
    return e;
}

// w64 (C x D, dense float64) = w scaled by 2^-e (ldexp: exact, or rounded once as numpy's ldexp
// rounds a result below float64's normal range: correctly, to nearest even).
template <class In>
__global__ void weight_f64(DMatrix w, const HeadStatus* status, double* w64) {
    const int e = shift_exponent(status);
    const int64_t total = w.rows * w.cols;
    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t p = k / w.cols, d = k % w.cols;
        const double v = static_cast<double>(Load<In>::get(w.data, p * w.row_stride + d * w.col_stride));
        w64[k] = e ? ldexp(v, -e) : v;
    }
}

// lane_dot / lane_sqdist of csrc/lanedot.hpp: element m into lane m % 8 in order, the lanes
// combined ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). No FMA: the library is compiled --fmad=false.
__device__ __forceinline__ double combine(const double* a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
// acc[l] += f(m) for the elements m of lane l, in order; the lane index is a compile-time
// constant in every access (unrolled), so acc stays in registers (no local memory).
template <class F>
__device__ __forceinline__ void lanes(double* acc, int64_t n, F f) {
    int64_t m = 0;
    for (; m + kLanesD <= n; m += kLanesD) {
#pragma unroll
        for (int l = 0; l < kLanesD; ++l) acc[l] += f(m + l);
    }
#pragma unroll
    for (int l = 0; l < kLanesD; ++l)
        if (m + l < n) acc[l] += f(m + l);
}

__device__ double lane_sqdist(const double* x, const double* y, int64_t n) {
    double acc[kLanesD] = {0, 0, 0, 0, 0, 0, 0, 0};
    lanes(acc, n, [&](int64_t m) {
        const double t = x[m] - y[m];
        return t * t;
    });
    return combine(acc);
}

__global__ void diagonal(const double* w, int64_t C, int64_t D, double* diag) {
    for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < C;
         p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const double* x = w + p * D;
        double acc[kLanesD] = {0, 0, 0, 0, 0, 0, 0, 0};
        lanes(acc, D, [&](int64_t m) { return x[m] * x[m]; });
        diag[p] = combine(acc);
    }
}

// A kTile x kTile tile of pairs (p, c) with p < c (and their mirrors), a thread per pair: the
// Gram entry in lane order from rows staged in shared memory kDepth dimensions at a time (in
// increasing order, so each lane accumulates its elements in the CPU's order), then
// pair_inverse_norm: (G_pp + G_cc) - 2 G_pc, the direct squared distance where that cancels.
// Tiles below the diagonal exit at once (uniformly per block, before any barrier).
__global__ void __launch_bounds__(kTile * kTile) pair_tiles(const double* w, int64_t C, int64_t D, const double* diag,
                                                          double* inv) {
    const int64_t p0 = static_cast<int64_t>(blockIdx.y) * kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
    if (c0 + kTile <= p0) return;  // every pair of the tile has c < p: the mirror tile writes it
    __shared__ double sp[kTile][kDepth + 1], sc[kTile][kDepth + 1];  // +1: no bank conflicts on columns
    const int tp = threadIdx.x / kTile, tc = threadIdx.x % kTile;
    const int64_t p = p0 + tp, c = c0 + tc;
    double acc[kLanesD] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t d0 = 0; d0 < D; d0 += kDepth) {
        for (int k = threadIdx.x; k < kTile * kDepth; k += blockDim.x) {
            const int r = k / kDepth, m = k % kDepth;
            const int64_t d = d0 + m;
            sp[r][m] = (p0 + r < C && d < D) ? w[(p0 + r) * D + d] : 0.0;
            sc[r][m] = (c0 + r < C && d < D) ? w[(c0 + r) * D + d] : 0.0;
        }
        __syncthreads();
        const int depth = static_cast<int>(D - d0 < kDepth ? D - d0 : kDepth);
        // d0 is a multiple of kDepth, a multiple of 8: dimension d0 + m goes to lane m % 8, as
        // on the CPU, and each lane takes its dimensions in increasing order across the steps.
        lanes(acc, depth, [&](int64_t m) { return sp[tp][m] * sc[tc][m]; });
        __syncthreads();
    }
    if (p >= C || c >= C || c <= p) return;
    const double gp = diag[p], gc = diag[c];
    const double total = gp + gc;
    double n2 = total - 2.0 * combine(acc);
    if (n2 <= 1e-6 * total) n2 = lane_sqdist(w + p * D, w + c * D, D);  // nearly equal rows: rare
    const double v = n2 > 0 ? 1.0 / sqrt(n2) : INFINITY;  // -prec-div/-prec-sqrt: IEEE, as the CPU
    inv[p * C + c] = v;
    inv[c * C + p] = v;
}

__global__ void init_status(HeadStatus* status, unsigned int* fits) {
    *status = HeadStatus{~0ull, 0ull, 0ull, 0ll};
    *fits = 1;
}

__global__ void fill_diagonal(double* inv, int64_t C) {
    for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < C;
         p += static_cast<int64_t>(gridDim.x) * blockDim.x)
        inv[p * C + p] = INFINITY;
}

// norms_of's last step, decided on the device: with e != 0 the table holds g (norms of the
// scaled weight); the true values ldexp(g, -e) replace it when every finite one stays finite and
// normal (then the scaling is exact), else the scores carry shift = -e. `fits` starts at 1.
__global__ void shift_fits(const double* inv, int64_t count, const HeadStatus* status, unsigned int* fits) {
    const int e = shift_exponent(status);
    if (!e) return;
    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < count;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const double g = inv[k];
        if (isinf(g)) continue;
        const double t = ldexp(g, -e);
        if (!(isfinite(t) && t >= DBL_MIN)) *fits = 0;  // a benign race: every writer writes 0
    }
}
__global__ void apply_shift(double* inv, int64_t count, HeadStatus* status, const unsigned int* fits) {
    const int e = shift_exponent(status);
    if (blockIdx.x == 0 && threadIdx.x == 0) status->shift = (e && !*fits) ? -e : 0;
    if (!e || !*fits) return;
    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < count;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x)
        inv[k] = ldexp(inv[k], -e);  // inf stays inf; finite values stay normal: exact
}

}  // namespace

void head_inverse_norms(const DMatrix& w, double* inv, HeadStatus* status, cudaStream_t stream) {
    const int64_t C = w.rows, D = w.cols;
    if (C < 1 || D < 1) throw std::invalid_argument("weight must have at least one class and one feature");
    // Grid sizes: the tile grid's y dimension is at most 65535 (checked), blocks_for caps the
    // grid-stride kernels; C * C and C * D fit int64 (the caller allocated them).
    if (C > int64_t{65535} * kTile) throw std::invalid_argument("the GPU head norms handle at most 2,097,120 classes");
    Buffer<double> w64(C * D, stream), diag(C, stream);
    Buffer<unsigned int> fits(1, stream);
    init_status<<<1, 1, 0, stream>>>(status, fits.get());
    ALSCALE_CUDA_LAUNCHED("init_status");
    const unsigned grid = static_cast<unsigned>(blocks_for(C * D, 256, 4096));
    with_input_type(w.dtype, [&](auto in) {
        weight_stats<decltype(in)><<<grid, 256, 0, stream>>>(w, status);
        ALSCALE_CUDA_LAUNCHED("weight_stats");
        weight_f64<decltype(in)><<<grid, 256, 0, stream>>>(w, status, w64.get());
        ALSCALE_CUDA_LAUNCHED("weight_f64");
    });
    diagonal<<<static_cast<unsigned>(blocks_for(C, 128, 4096)), 128, 0, stream>>>(w64.get(), C, D, diag.get());
    ALSCALE_CUDA_LAUNCHED("diagonal");
    const dim3 tiles(static_cast<unsigned>((C + kTile - 1) / kTile), static_cast<unsigned>((C + kTile - 1) / kTile));
    pair_tiles<<<tiles, kTile * kTile, 0, stream>>>(w64.get(), C, D, diag.get(), inv);
    ALSCALE_CUDA_LAUNCHED("pair_tiles");
    fill_diagonal<<<static_cast<unsigned>(blocks_for(C, 256, 4096)), 256, 0, stream>>>(inv, C);
    ALSCALE_CUDA_LAUNCHED("fill_diagonal");
    const unsigned grid2 = static_cast<unsigned>(blocks_for(C * C, 256, 4096));
    shift_fits<<<grid2, 256, 0, stream>>>(inv, C * C, status, fits.get());
    ALSCALE_CUDA_LAUNCHED("shift_fits");
    apply_shift<<<grid2, 256, 0, stream>>>(inv, C * C, status, fits.get());
    ALSCALE_CUDA_LAUNCHED("apply_shift");
}

void check_head_status(const HeadStatus& s) {
    if (s.first_bad != ~0ull)
        throw std::invalid_argument("weight contains NaN or inf at row " + std::to_string(s.first_bad));
    if (!s.nonzero)
        throw std::invalid_argument(
            "weight is all zeros (an untrained or zeroed head?): no decision boundary is defined between any two "
            "classes; pass the trained head's weight, or weight=None for the plain logit gap");
}

}  // namespace gpu
}  // namespace alscale
