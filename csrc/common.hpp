// Shared plumbing for the alscale kernels: strided logits views, dtype conversion, threads.
// Nothing here knows Python; bindings.cpp builds these views from numpy buffers.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <exception>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dtype.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#define ALSCALE_INLINE inline __attribute__((always_inline))

namespace alscale {

// A read-only 2-D view of a logits matrix: any strides (in bytes, may be negative), four dtypes.
struct Matrix {
    const char* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t row_stride = 0;  // bytes
    int64_t col_stride = 0;  // bytes
    DType dtype = DType::f32;
};

// Row ids of a chunk: either offset + i or ids[i].
struct RowIds {
    int64_t offset = 0;
    const int64_t* ids = nullptr;
    int64_t operator[](int64_t i) const { return ids ? ids[i] : offset + i; }
};

constexpr double kInf = std::numeric_limits<double>::infinity();

// IEEE half -> float, exact for every value, branch-free so that row conversions vectorize
// (integer work only: no float denormals, so it is right even with flush-to-zero set). Always
// inlined: GCC left it an out-of-line call per value in the BASE loop (3.5x the bfloat16 time).
ALSCALE_INLINE float half_to_float(uint16_t h) {
    const uint32_t em = h & 0x7fffu;
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t normal = (em << 13) + (112u << 23);          // rebias 15 -> 127
    const uint32_t special = (em << 13) | 0x7f800000u;          // inf / nan
    float sub = static_cast<float>(static_cast<int32_t>(em)) * 5.9604644775390625e-8f;  // m * 2^-24
    uint32_t sub_bits;
    std::memcpy(&sub_bits, &sub, 4);
    const uint32_t is_sub = 0u - static_cast<uint32_t>(em < 0x400u);  // all ones or zero
    const uint32_t is_special = 0u - static_cast<uint32_t>(em >= 0x7c00u);
    const uint32_t bits = (sub_bits & is_sub) | (special & is_special) | (normal & ~(is_sub | is_special));
    const uint32_t out = bits | sign;
    float f;
    std::memcpy(&f, &out, sizeof f);
    return f;
}

ALSCALE_INLINE float bf16_to_float(uint16_t h) {
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// Gives each row as `cols` contiguous values of T (float for 16/32-bit input, double for
// float64): a pointer into the matrix when it already is that, else a per-thread copy of one row.
template <class T>
class RowReader {
public:
    explicit RowReader(const Matrix& m) : m_(m) {
        direct_ = (m.col_stride == static_cast<int64_t>(sizeof(T))) &&
                  ((std::is_same<T, float>::value && m.dtype == DType::f32) ||
                   (std::is_same<T, double>::value && m.dtype == DType::f64));
        // Column-major (rows are the fast axis, e.g. a transposed view): read a block of rows at
        // once, column by column, so every cache line of a column serves many rows.
        columnar_ = !direct_ && m.rows > 1 && m.cols > 1 && std::abs(m.row_stride) < std::abs(m.col_stride);
        block_ = columnar_ ? (m.cols > 4096 ? 16 : 64) : 1;
        buf_.resize(static_cast<size_t>(block_ * m.cols));
    }
    ALSCALE_INLINE const T* operator()(int64_t i) {
        const char* row = m_.data + i * m_.row_stride;
        if (direct_) return reinterpret_cast<const T*>(row);
        if (columnar_) {
            if (i < first_ || i >= first_ + block_) fill_block(i);
            return buf_.data() + (i - first_) * m_.cols;
        }
        T* out = buf_.data();
        switch (m_.dtype) {
            case DType::f16:
                convert<uint16_t>(row, out, [](uint16_t h) { return half_to_float(h); });
                break;
            case DType::bf16:
                convert<uint16_t>(row, out, [](uint16_t h) { return bf16_to_float(h); });
                break;
            case DType::f32:
                convert<float>(row, out, [](float v) { return v; });
                break;
            case DType::f64:
                convert<double>(row, out, [](double v) { return v; });
                break;
        }
        return out;
    }

    // Row i's stored 16-bit values where the row is float16 / bfloat16 with unit stride and read
    // row by row (for a caller that converts them itself into buffer(): rowmath.hpp's
    // read_row), else nullptr.
    ALSCALE_INLINE const uint16_t* half_row(int64_t i) const {
        if (direct_ || columnar_ || m_.col_stride != 2) return nullptr;
        return reinterpret_cast<const uint16_t*>(m_.data + i * m_.row_stride);
    }
    T* buffer() { return buf_.data(); }
    DType dtype() const { return m_.dtype; }

private:
    // Rows i .. i + block_ - 1 (fewer at the end) into buf_, row-major, reading column by column.
    void fill_block(int64_t i) {
        first_ = i;
        switch (m_.dtype) {
            case DType::f16:
                fill_columns<uint16_t>([](uint16_t h) { return half_to_float(h); });
                break;
            case DType::bf16:
                fill_columns<uint16_t>([](uint16_t h) { return bf16_to_float(h); });
                break;
            case DType::f32:
                fill_columns<float>([](float v) { return v; });
                break;
            case DType::f64:
                fill_columns<double>([](double v) { return v; });
                break;
        }
    }
    template <class Src, class F>
    void fill_columns(F f) {
        const int64_t count = std::min(block_, m_.rows - first_), n = m_.cols;
        const char* base = m_.data + first_ * m_.row_stride;
        T* out = buf_.data();
        for (int64_t c = 0; c < n; ++c) {
            const char* col = base + c * m_.col_stride;
            for (int64_t r = 0; r < count; ++r) {
                Src v;
                std::memcpy(&v, col + r * m_.row_stride, sizeof v);
                out[r * n + c] = static_cast<T>(f(v));
            }
        }
    }

    // One row of Src values (contiguous: a plain loop the compiler vectorizes; else strided).
    template <class Src, class F>
    ALSCALE_INLINE void convert(const char* row, T* out, F f) const {
        typedef Src __attribute__((__may_alias__)) Alias;
        const int64_t n = m_.cols, cs = m_.col_stride;
        if (cs == static_cast<int64_t>(sizeof(Src))) {
            const Alias* src = reinterpret_cast<const Alias*>(row);
            for (int64_t c = 0; c < n; ++c) out[c] = static_cast<T>(f(src[c]));
        } else {
            for (int64_t c = 0; c < n; ++c) {
                Src v;
                std::memcpy(&v, row + c * cs, sizeof v);
                out[c] = static_cast<T>(f(v));
            }
        }
    }

    const Matrix& m_;
    std::vector<T> buf_;
    bool direct_ = false;
    bool columnar_ = false;
    int64_t block_ = 1;
    int64_t first_ = INT64_MIN / 2;  // first row held in buf_ (columnar reads; none yet)
};

// Threads for a kernel: `requested`, or OpenMP's default when 0 (all cores unless OMP_NUM_THREADS
// says otherwise), never more than the cores this process may run on: thousands of OpenMP threads
// only cost memory (each has its own stack) and can kill the process with no Python exception.
// Every kernel splits its work so that the result never depends on this number.
inline int thread_count(int requested) {
#ifdef _OPENMP
    const int cores = std::max(1, omp_get_num_procs());
    return std::max(1, std::min(requested > 0 ? requested : omp_get_max_threads(), cores));
#else
    (void)requested;
    return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Rows [begin, end) of part t of n equal parts: a fixed split, so results never depend on timing.
inline std::pair<int64_t, int64_t> split_range(int64_t n, int parts, int t) {
    const int64_t base = n / parts, extra = n % parts;
    const int64_t begin = t * base + std::min<int64_t>(t, extra);
    return {begin, begin + base + (t < extra ? 1 : 0)};
}

// Raised (as ValueError) when a kernel meets a NaN or infinite logit.
inline void throw_non_finite(int64_t row) {
    throw std::invalid_argument("logits contain NaN or inf at row " + std::to_string(row));
}

}  // namespace alscale

namespace alscale {

// An exception must not leave an OpenMP region (that terminates the process): each thread's work
// runs in run(), the first exception is kept and rethrown by rethrow() after the region.
class ParallelErrors {
public:
    template <class F>
    void run(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            bool expected = false;
            if (taken_.compare_exchange_strong(expected, true)) first_ = std::current_exception();
        }
    }
    void rethrow() const {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::exception_ptr first_;
    std::atomic<bool> taken_{false};
};

// Runs range(ctx, begin, end) over rows [0, rows) split into fixed contiguous parts, one per
// thread, with a per-thread context from make(thread), handed to finish(ctx, thread) at the end.
// range returns the first non-finite row of its part (or the part's end); the first over all threads is
// reported as a ValueError, so the error never depends on the thread count.
template <class Make, class Range, class Finish>
void parallel_rows(int64_t rows, int threads, Make make, Range range, Finish finish) {
    int64_t first_bad = rows;
    ParallelErrors errors;
#pragma omp parallel num_threads(threads) reduction(min : first_bad)
    errors.run([&] {
        auto ctx = make(thread_id());
        const auto part = split_range(rows, threads, thread_id());
        const int64_t bad = range(ctx, part.first, part.second);
        if (bad < part.second) first_bad = std::min(first_bad, bad);
        finish(ctx, thread_id());
    });
    errors.rethrow();
    if (first_bad < rows) throw_non_finite(first_bad);
}

// Threads worth using for a pass over `rows` rows (0 requested: all cores).
inline int row_threads(int requested, int64_t rows) {
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(thread_count(requested), rows / 64)));
}

}  // namespace alscale
