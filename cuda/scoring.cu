#include "scoring.cuh"

#include "rowmath.cuh"

namespace alscale {
namespace gpu {
namespace {

constexpr unsigned long long kNoRow = ~0ull;

// log of the softmax sum s >= 1 for the entropy. The CPU calls the C library's logf/log, which
// is not the same function on every machine (glibc's logf is within 0.82 ulp, not correctly
// rounded, and has FMA and non-FMA variants); here float inputs take the correctly rounded
// float of a float64 log, so an entropy can differ from the CPU's in the last bit of log(s)
// (about 0.1% of rows against glibc 2.36). Float64 inputs use CUDA's log (within 1 ulp).
__device__ __forceinline__ float log_sum(float s) { return __double2float_rn(log(static_cast<double>(s))); }
__device__ __forceinline__ double log_sum(double s) { return log(s); }

template <class In>
__global__ void __launch_bounds__(kRowThreads) uncertainty_kernel(DMatrix x, int kind, double* out,
                                                                 unsigned long long* first_bad) {
    using T = typename RowType<In>::type;
    const int lane = threadIdx.x % kLanes;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
    for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < x.rows; r0 += stride) {
        const int64_t i = r0 + threadIdx.x / kLanes;
        const bool valid = i < x.rows;
        const RowMax<T> mx = row_max<In, true>(x, i, valid, lane);
        if (valid && !mx.finite && lane == 0) atomicMin(first_bad, static_cast<unsigned long long>(i));
        const bool go = valid && mx.finite;
        // Softmax sums, lane j over c = j, j + 8, ... (gaps below -1e30 clamped, as on the CPU).
        T s = 0, t = 0;
        const int64_t n = go ? x.cols : 0;
        const int64_t base = i * x.row_stride;
        const T lo = static_cast<T>(-1e30);
        for (int64_t c = lane; c < n; c += kLanes) {
            T d = sub(Load<In>::get(x.data, base + c * x.col_stride), mx.max);
            d = d < lo ? lo : d;
            const T e = exp_nonpos(d);
            s = add(s, e);
            t = add(t, mul(e, d));
        }
        s = combine_sums(s);
        t = combine_sums(t);
        if (!go || lane != 0) continue;
        double v;
        if (kind == 0) {
            const T gap = sub(mx.second, mx.max);
            const T p2 = exp_nonpos(gap < lo ? lo : gap);
            v = static_cast<double>(div(sub(T(1), p2), s));
        } else if (kind == 1) {
            v = static_cast<double>(div(T(1), s));
        } else {
            v = static_cast<double>(sub(log_sum(s), div(t, s)));
        }
        out[i] = v;
    }
}

template <class In>
__global__ void __launch_bounds__(kRowThreads) boundary_kernel(DMatrix x, const double* inv, double* out,
                                                              unsigned long long* first_bad) {
    using T = typename RowType<In>::type;
    const int lane = threadIdx.x % kLanes;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
    for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < x.rows; r0 += stride) {
        const int64_t i = r0 + threadIdx.x / kLanes;
        const bool valid = i < x.rows;
        const RowMax<T> mx = row_max<In, false>(x, i, valid, lane);
        if (valid && !mx.finite && lane == 0) atomicMin(first_bad, static_cast<unsigned long long>(i));
        const bool go = valid && mx.finite;
        const int64_t n = go ? x.cols : 0, p = mx.arg;
        const double lp = static_cast<double>(mx.max);
        const double* row_inv = inv ? inv + p * x.cols : nullptr;
        const int64_t base = i * x.row_stride;
        double mn = INFINITY;
        for (int64_t c = lane; c < n; c += kLanes) {
            const double a = boundary_distance(lp, static_cast<double>(Load<In>::get(x.data, base + c * x.col_stride)), row_inv, c, p);
            mn = a < mn ? a : mn;
        }
        mn = min_lanes(mn);
        if (go && lane == 0) out[i] = mn;
    }
}

template <template <class> class Kernel, class... A>
int64_t launch_rows(const DMatrix& x, cudaStream_t stream, const char* name, A... args) {
    if (x.rows == 0) return -1;
    Buffer<unsigned long long> bad(1, stream);
    ALSCALE_CUDA_CHECK(cudaMemsetAsync(bad.get(), 0xff, sizeof(unsigned long long), stream));
    const unsigned blocks = static_cast<unsigned>(blocks_for(x.rows, kRowsPerBlock, 1 << 16));
    switch (x.dtype) {
        case DType::f16: Kernel<uint16_t>::launch(blocks, stream, x, args..., bad.get()); break;
        case DType::bf16: Kernel<BF16Tag>::launch(blocks, stream, x, args..., bad.get()); break;
        case DType::f32: Kernel<float>::launch(blocks, stream, x, args..., bad.get()); break;
        case DType::f64: Kernel<double>::launch(blocks, stream, x, args..., bad.get()); break;
    }
    ALSCALE_CUDA_LAUNCHED(name);
    unsigned long long first = kNoRow;
    to_host(&first, bad.get(), 1, stream);
    sync(stream);
    return first == kNoRow ? -1 : static_cast<int64_t>(first);
}

template <class In>
struct Uncertainty {
    static void launch(unsigned blocks, cudaStream_t s, const DMatrix& x, int kind, double* out, unsigned long long* bad) {
        uncertainty_kernel<In><<<blocks, kRowThreads, 0, s>>>(x, kind, out, bad);
    }
};
template <class In>
struct Boundary {
    static void launch(unsigned blocks, cudaStream_t s, const DMatrix& x, const double* inv, double* out,
                       unsigned long long* bad) {
        boundary_kernel<In><<<blocks, kRowThreads, 0, s>>>(x, inv, out, bad);
    }
};

}  // namespace

int64_t uncertainty_scores(const DMatrix& logits, int kind, double* out, cudaStream_t stream) {
    if (kind < 0 || kind > 2) throw std::invalid_argument("unknown uncertainty kind");
    return launch_rows<Uncertainty>(logits, stream, "uncertainty_kernel", kind, out);
}

int64_t boundary_scores(const DMatrix& logits, const double* inv_norm, double* out, cudaStream_t stream) {
    return launch_rows<Boundary>(logits, stream, "boundary_kernel", inv_norm, out);
}

}  // namespace gpu
}  // namespace alscale
