// Run-time choice of the instruction set for the hot row loops. The wheels are built for baseline
// x86-64 (no -march=native); each row kernel is compiled twice from one always-inline template,
// once for the baseline and once with AVX2, and ALSCALE_MULTIVERSION picks the AVX2 one when the
// CPU has it. The two give bit-identical results (rowmath.hpp), so the choice changes only speed.
// ALSCALE_ISA=base in the environment forces the baseline (tests compare the two).
// A few kernels (multilabel.cpp) also have an AVX-512 version (ALSCALE_MULTIVERSION3), picked when
// the CPU and the OS support AVX-512F; ALSCALE_ISA=avx2 caps them at AVX2 (tests compare all three).
#pragma once

namespace alscale {
bool use_avx2();
bool use_avx512();
bool has_f16c();  // the CPU converts halves (vcvtph2ps); every AVX2 CPU made so far does
}

#if defined(__x86_64__) || defined(__i386__)
#define ALSCALE_AVX2 __attribute__((target("avx2")))
#define ALSCALE_AVX512 __attribute__((target("avx512f")))
#else
#define ALSCALE_AVX2
#define ALSCALE_AVX512
#endif

// From `template <class T, int B> ALSCALE_INLINE int64_t NAME(Args&...)` (B: vector bytes)
// defines NAME_dispatch<T>(...): B = 32 with AVX2, else 16 (SSE2 / NEON).
#define ALSCALE_MULTIVERSION(NAME)                                                   \
    template <class T, class... A>                                                   \
    int64_t NAME##_base(A&... a) {                                                   \
        return NAME<T, 16>(a...);                                                    \
    }                                                                                \
    template <class T, class... A>                                                   \
    ALSCALE_AVX2 int64_t NAME##_avx2(A&... a) {                                      \
        return NAME<T, 32>(a...);                                                        \
    }                                                                                \
    template <class T, class... A>                                                   \
    int64_t NAME##_dispatch(A&... a) {                                               \
        return ::alscale::use_avx2() ? NAME##_avx2<T>(a...) : NAME##_base<T>(a...);  \
    }

// ALSCALE_MULTIVERSION plus B = 64 with AVX-512F (NAME must handle native vectors of 16 floats).
#define ALSCALE_MULTIVERSION3(NAME)                                                  \
    ALSCALE_MULTIVERSION(NAME)                                                       \
    template <class T, class... A>                                                   \
    ALSCALE_AVX512 int64_t NAME##_avx512(A&... a) {                                  \
        return NAME<T, 64>(a...);                                                    \
    }                                                                                \
    template <class T, class... A>                                                   \
    int64_t NAME##_dispatch3(A&... a) {                                              \
        return ::alscale::use_avx512() ? NAME##_avx512<T>(a...) : NAME##_dispatch<T>(a...); \
    }
