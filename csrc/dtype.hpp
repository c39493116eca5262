// The element types of a logits matrix: one enum for the CPU kernels (csrc/common.hpp) and the
// CUDA kernels (cuda/common.cuh). The bindings pass its value through (alscale._core.DType).
// No other include: nvcc and the host compiler both read this file.
#pragma once

namespace alscale {

enum class DType : int { f16 = 0, bf16 = 1, f32 = 2, f64 = 3 };

}  // namespace alscale
