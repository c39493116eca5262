#include "isa.hpp"

#include <cstdlib>
#include <cstring>

namespace alscale {

bool use_avx2() {
    static const bool avx2 = [] {
        const char* force = std::getenv("ALSCALE_ISA");
        if (force && std::strcmp(force, "base") == 0) return false;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
#else
        return false;
#endif
    }();
    return avx2;
}

bool use_avx512() {
    static const bool avx512 = [] {
        const char* force = std::getenv("ALSCALE_ISA");
        if (force && (std::strcmp(force, "base") == 0 || std::strcmp(force, "avx2") == 0)) return false;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") != 0;  // libgcc also checks that the OS saves zmm state
#else
        return false;
#endif
    }();
    return avx512;
}

bool has_f16c() {
    static const bool f16c = [] {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("f16c") != 0;
#else
        return false;
#endif
    }();
    return f16c;
}

}  // namespace alscale
