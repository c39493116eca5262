// Top-k over a device score vector (the GPU twin of csrc/topk.hpp): the k smallest (or largest)
// scores among the rows not excluded, in order, ties to the smaller row index.
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

// scores: n device float64; exclude: nullptr or n device bytes (non-zero: excluded); out: at
// least min(k, n) device int64. Writes min(k, available) rows and returns how many (waits for
// the stream).
int64_t select_topk(const double* scores, int64_t n, int64_t k, const uint8_t* exclude, bool largest,
                    int64_t* out, cudaStream_t stream);

}  // namespace gpu
}  // namespace alscale
