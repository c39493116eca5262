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
__global__ void __launch_bounds__(kRowThreads) uncertainty_kernel(DMatrix x, Uncertainty kind, double* out,
                                                                 unsigned long long* first_bad) {
    using T = typename RowType<In>::type;
    for_each_row<In, true>(x, 0, x.rows, nullptr, first_bad, [&](int64_t i, bool go, const RowMax<T>& mx, int lane) {
        T s = 0, t = 0;  // softmax sums, lane j over c = j, j + 8, ... as on the CPU
        const int64_t n = go ? x.cols : 0;
        const int64_t base = i * x.row_stride;
        const T vmx = row_max_lanes<T>(mx.max);
        for (int64_t c = lane; c < n; c += kLanes) softmax_step<T>(Load<In>::get(x.data, base + c * x.col_stride), vmx, s, t);
        s = sum_of_lanes(s);
        t = sum_of_lanes(t);
        if (go && lane == 0) out[i] = uncertainty_value(kind, mx, s, t, [](T v) { return log_sum(v); });
    });
}

template <class In>
__global__ void __launch_bounds__(kRowThreads) boundary_kernel(DMatrix x, const double* inv, double* out,
                                                              unsigned long long* first_bad) {
    using T = typename RowType<In>::type;
    for_each_row<In, false>(x, 0, x.rows, nullptr, first_bad, [&](int64_t i, bool go, const RowMax<T>& mx, int lane) {
        const double mn = boundary_min<In>(x, i, go, mx, inv, lane, [](int64_t, double) {});
        if (go && lane == 0) out[i] = mn;
    });
}

// Runs launch(In{}, blocks, first_bad) for the logits' input type; returns the first row with
// NaN/inf logits, or -1 (waits for the stream).
template <class Launch>
int64_t launch_rows(const DMatrix& x, cudaStream_t stream, const char* name, Launch launch) {
    if (x.rows == 0) return -1;
    Buffer<unsigned long long> bad(1, stream);
    ALSCALE_CUDA_CHECK(cudaMemsetAsync(bad.get(), 0xff, sizeof(unsigned long long), stream));
    const unsigned blocks = static_cast<unsigned>(blocks_for(x.rows, kRowsPerBlock, 1 << 16));
    with_input_type(x.dtype, [&](auto in) { launch(in, blocks, bad.get()); });
    ALSCALE_CUDA_LAUNCHED(name);
    unsigned long long first = kNoRow;
    to_host(&first, bad.get(), 1, stream);
    sync(stream);
    return first == kNoRow ? -1 : static_cast<int64_t>(first);
}

}  // namespace

int64_t uncertainty_scores(const DMatrix& logits, int kind, double* out, cudaStream_t stream) {
    if (kind < 0 || kind > 2) throw std::invalid_argument("unknown uncertainty kind");
    const Uncertainty k = static_cast<Uncertainty>(kind);
    return launch_rows(logits, stream, "uncertainty_kernel", [&](auto in, unsigned blocks, unsigned long long* bad) {
        uncertainty_kernel<decltype(in)><<<blocks, kRowThreads, 0, stream>>>(logits, k, out, bad);
    });
}

int64_t boundary_scores(const DMatrix& logits, const double* inv_norm, double* out, cudaStream_t stream) {
    return launch_rows(logits, stream, "boundary_kernel", [&](auto in, unsigned blocks, unsigned long long* bad) {
        boundary_kernel<decltype(in)><<<blocks, kRowThreads, 0, stream>>>(logits, inv_norm, out, bad);
    });
}

}  // namespace gpu
}  // namespace alscale
