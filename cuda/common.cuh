// Shared plumbing for the CUDA kernels: error checks, stream-ordered buffers, strided logits
// views, and the CPU kernels' float arithmetic (csrc/rowmath.hpp) reproduced operation by
// operation. Every add and multiply is an explicit round-to-nearest intrinsic (__fadd_rn,
// __dmul_rn, ...): the compiler can never contract them into FMAs, so a score computed here is
// bit-identical to the CPU's. Nothing here knows Python; cuda/bindings.cu is the only binding file.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace alscale {
namespace gpu {

// Throws std::runtime_error (a RuntimeError in Python) naming the call and CUDA's message.
inline void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}
#define ALSCALE_CUDA_CHECK(call) ::alscale::gpu::check((call), #call)
// After a kernel launch: launch errors (bad configuration, no device) surface here.
#define ALSCALE_CUDA_LAUNCHED(name) ::alscale::gpu::check(cudaGetLastError(), name)

// Device memory allocated and freed in the order of one stream (cudaMallocAsync).
template <class T>
class Buffer {
public:
    Buffer() = default;
    Buffer(int64_t count, cudaStream_t stream) : stream_(stream), count_(count) {
        if (count > 0)
            ALSCALE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), sizeof(T) * static_cast<size_t>(count), stream));
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept { swap(o); }
    Buffer& operator=(Buffer&& o) noexcept {
        Buffer tmp(std::move(o));
        swap(tmp);
        return *this;
    }
    ~Buffer() {
        if (ptr_) cudaFreeAsync(ptr_, stream_);  // no throw from a destructor
    }
    T* get() const { return ptr_; }
    int64_t size() const { return count_; }
    void zero() {
        if (ptr_) ALSCALE_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, sizeof(T) * static_cast<size_t>(count_), stream_));
    }

private:
    void swap(Buffer& o) noexcept {
        std::swap(ptr_, o.ptr_);
        std::swap(stream_, o.stream_);
        std::swap(count_, o.count_);
    }
    T* ptr_ = nullptr;
    cudaStream_t stream_ = nullptr;
    int64_t count_ = 0;
};

template <class T>
void to_device(T* dst, const T* src, int64_t count, cudaStream_t stream) {
    if (count > 0)
        ALSCALE_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * static_cast<size_t>(count), cudaMemcpyHostToDevice, stream));
}
template <class T>
void to_host(T* dst, const T* src, int64_t count, cudaStream_t stream) {
    if (count > 0)
        ALSCALE_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * static_cast<size_t>(count), cudaMemcpyDeviceToHost, stream));
}
inline void sync(cudaStream_t stream) { ALSCALE_CUDA_CHECK(cudaStreamSynchronize(stream)); }

inline int64_t blocks_for(int64_t work, int64_t per_block, int64_t cap = int64_t{1} << 20) {
    const int64_t b = (work + per_block - 1) / per_block;
    return b < 1 ? 1 : (b > cap ? cap : b);
}

// The dtypes of csrc/common.hpp (same numbering: the bindings pass it through).
enum class DType : int { f16 = 0, bf16 = 1, f32 = 2, f64 = 3 };

// A strided 2-D logits matrix in device memory; strides in elements (may be negative).
struct DMatrix {
    const void* data = nullptr;
    int64_t rows = 0, cols = 0;
    int64_t row_stride = 0, col_stride = 0;
    DType dtype = DType::f32;
};

// ---- exact float arithmetic (round to nearest, never contracted) ----
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double div(double a, double b) { return __ddiv_rn(a, b); }

// One logit as the row type T (float for 16/32-bit input, double for float64): conversions are
// exact, as on the CPU (csrc/common.hpp half_to_float, bf16_to_float).
template <class In>
struct Load;
template <>
struct Load<uint16_t> {  // half
    __device__ __forceinline__ static float get(const void* p, int64_t at) {
        return __half2float(__ushort_as_half(static_cast<const unsigned short*>(p)[at]));
    }
};
struct BF16Tag {};
template <>
struct Load<BF16Tag> {
    __device__ __forceinline__ static float get(const void* p, int64_t at) {
        return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[at]) << 16);
    }
};
template <>
struct Load<float> {
    __device__ __forceinline__ static float get(const void* p, int64_t at) { return static_cast<const float*>(p)[at]; }
};
template <>
struct Load<double> {
    __device__ __forceinline__ static double get(const void* p, int64_t at) { return static_cast<const double*>(p)[at]; }
};

template <class In>
struct RowType {
    using type = float;
};
template <>
struct RowType<double> {
    using type = double;
};

// exp(x) for x <= 0, exactly csrc/rowmath.hpp exp_nonpos (Cody-Waite reduction, Cephes
// polynomial, exponent through the bits), one value at a time.
__device__ __forceinline__ float exp_nonpos(float x) {
    const float magic = 12582912.0f;
    const float t = add(mul(x, 1.44269504088896341f), magic);
    const float n = sub(t, magic);
    float r = sub(x, mul(n, 0.693359375f));
    r = add(r, mul(n, 2.12194440e-4f));
    float y = 1.9875691500e-4f;
    y = add(mul(y, r), 1.3981999507e-3f);
    y = add(mul(y, r), 8.3334519073e-3f);
    y = add(mul(y, r), 4.1665795894e-2f);
    y = add(mul(y, r), 1.6666665459e-1f);
    y = add(mul(y, r), 5.0000001201e-1f);
    y = add(add(mul(y, mul(r, r)), r), 1.0f);
    const uint32_t e = (static_cast<uint32_t>(__float_as_int(t) - __float_as_int(magic)) + 127u) << 23;
    return x < -87.0f ? 0.0f : mul(y, __uint_as_float(e));
}

__device__ __forceinline__ double exp_nonpos(double x) {
    const double magic = 6755399441055744.0;
    const double t = add(mul(x, 1.4426950408889634), magic);
    const double n = sub(t, magic);
    double r = sub(x, mul(n, 6.93145751953125e-1));
    r = sub(r, mul(n, 1.42860682030941723212e-6));
    const double rr = mul(r, r);
    double p = 1.26177193074810590878e-4;
    p = add(mul(p, rr), 3.02994407707441961300e-2);
    p = add(mul(p, rr), 9.99999999999999999910e-1);
    p = mul(p, r);
    double q = 3.00198505138664455042e-6;
    q = add(mul(q, rr), 2.52448340349684104192e-3);
    q = add(mul(q, rr), 2.27265548208155028766e-1);
    q = add(mul(q, rr), 2.00000000000000000009e0);
    const double y = add(1.0, mul(2.0, div(p, sub(q, p))));
    const unsigned long long e =
        (static_cast<unsigned long long>(__double_as_longlong(t) - __double_as_longlong(magic)) + 1023ull) << 52;
    return x < -708.0 ? 0.0 : mul(y, __longlong_as_double(static_cast<long long>(e)));
}

// Keys of the (key, row) strict order as unsigned integers: the order of the doubles, with -0
// and +0 equal (both map to the key of +0), as the CPU's double comparison has it. No NaN here.
__device__ __forceinline__ unsigned long long order_key(double v) {
    const unsigned long long b = static_cast<unsigned long long>(__double_as_longlong(v + 0.0));  // -0 -> +0
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}
__device__ __forceinline__ double from_order_key(unsigned long long k) {
    const unsigned long long b = (k >> 63) ? (k & 0x7fffffffffffffffull) : ~k;
    return __longlong_as_double(static_cast<long long>(b));
}

constexpr int kLanes = 8;  // the CPU's logical lanes: element c of a row belongs to lane c % 8

}  // namespace gpu
}  // namespace alscale
