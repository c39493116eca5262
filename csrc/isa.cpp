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

}  // namespace alscale
