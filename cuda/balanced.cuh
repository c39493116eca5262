// BASE (Balanced Selection) with the pool on the GPU: the GPU twin of csrc/balanced.hpp's
// select_balanced, giving exactly the CPU's indices.
//
// The expensive part, every row's boundary distances and the per-class candidate sets, runs on
// the device: the pool is streamed in chunks; per chunk one kernel computes each row's r_c
// (bit-identical to the CPU) and appends (r_c, row) to class c's device buffer when it passes the
// class's current bound, and a second kernel (one block per class) cuts every buffer back to the
// class's capacity by an exact radix select on (key, row), which sets the next bound. After the
// last chunk each class holds exactly the `capacity` smallest (key, row) candidates that the
// CPU's bounded heap would hold; those (C x capacity, small) go to the host and the CPU's own
// BalancedState serves the classes (advance()), including its multi-pass fallback when heavy
// ties exhaust a class: the next pass runs on the device again with the taken rows masked.
#pragma once

#include <vector>

#include "common.cuh"

namespace alscale {
namespace gpu {

// exclude: nullptr or logits.rows device bytes (non-zero: skip); inv_norm: host C x C inverse
// norms (uploaded here) or nullptr. Throws std::invalid_argument on NaN/inf logits (first row).
std::vector<int64_t> select_balanced(const DMatrix& logits, int64_t budget, const uint8_t* exclude,
                                     const double* inv_norm, cudaStream_t stream);

}  // namespace gpu
}  // namespace alscale
