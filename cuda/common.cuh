// Shared plumbing for the CUDA kernels: error checks, stream-ordered buffers, strided logits
// views, the dtype dispatch and the (key, row) order keys. The float arithmetic that must match
// the CPU's bit for bit is csrc/rowmath_common.hpp, compiled here and in the CPU kernels alike.
// Nothing here knows Python; cuda/bindings.cu is the only binding file.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "dtype.hpp"
#include "rowmath_common.hpp"

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

// A page-locked (cudaHostAlloc) staging area of at least `bytes`, reused by the calls of one host
// thread (grown on demand, never shrunk; portable: any device may copy through it). The copies
// of a call go through it, never through pageable memory (which the driver stages
// synchronously); and no call pays cudaHostAlloc's cost or cudaFreeHost's implicit device
// synchronisation. A call must have waited for its copies before it returns (every caller ends
// with a stream synchronisation), so the next call of the thread may reuse or regrow the area.
inline void* pinned_scratch(size_t bytes) {
    struct Area {
        void* ptr = nullptr;
        size_t size = 0;
        ~Area() {
            if (ptr) cudaFreeHost(ptr);  // at thread exit; an error (context gone) is ignored
        }
    };
    static thread_local Area area;
    if (bytes > area.size) {
        if (area.ptr) cudaFreeHost(area.ptr);
        area.ptr = nullptr;
        area.size = 0;
        ALSCALE_CUDA_CHECK(cudaHostAlloc(&area.ptr, bytes, cudaHostAllocPortable));
        area.size = bytes;
    }
    return area.ptr;
}

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

// The CPU kernels' DType (csrc/dtype.hpp), one enum for both: the bindings pass it through.
using ::alscale::DType;

// A strided 2-D logits matrix in device memory; strides in elements (may be negative).
struct DMatrix {
    const void* data = nullptr;
    int64_t rows = 0, cols = 0;
    int64_t row_stride = 0, col_stride = 0;
    DType dtype = DType::f32;
};

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

// Keys of the (key, row) strict order as unsigned integers: the order of the doubles, with -0
// and +0 equal (both map to the key of +0), as the CPU's double comparison has it. No NaN here.
ALSCALE_HD unsigned long long order_key(double v) {
    const unsigned long long b = bit_cast<unsigned long long>(v + 0.0);  // -0 -> +0
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}
ALSCALE_HD double from_order_key(unsigned long long k) {
    return bit_cast<double>((k >> 63) ? (k & 0x7fffffffffffffffull) : ~k);
}

// Calls f(In{}) with the input type of a logits dtype (Load<In> reads it): a kernel template
// instantiated for each dtype, launched from one place.
template <class F>
void with_input_type(DType dtype, F f) {
    switch (dtype) {
        case DType::f16: f(uint16_t{}); break;
        case DType::bf16: f(BF16Tag{}); break;
        case DType::f32: f(float{}); break;
        case DType::f64: f(double{}); break;
    }
}

}  // namespace gpu
}  // namespace alscale
