// Exact k-nearest-neighbour graph on the GPU (the GPU twin of csrc/knn.hpp): tiles of dot
// products with a fused per-row top-k, no N x N matrix.
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

constexpr int64_t kKnnMaxK = 128;  // neighbours per row the GPU kernel keeps (shared memory)

// x: n x d row-major float32 on the device. For every row i, the k other rows with the largest
// dot product, largest first, ties to the smaller row: indices[i*k + j], similarities[i*k + j]
// (device). Every dot product is summed over the dimensions in order with separate multiply and
// add roundings, exactly as the CPU kernel, so the graph is identical to knn_exact's.
void knn_exact(const float* x, int64_t n, int64_t d, int64_t k, int64_t* indices, float* similarities,
               cudaStream_t stream);

// The same for the query rows rows[0 .. m) only (device int array; rows == nullptr: rows 0 .. m),
// each row's result written at its own place in indices / similarities; the other rows untouched.
// The tensor-core kernel's fallback (cuda/knn_tc.cu).
void knn_exact_rows(const float* x, int64_t n, int64_t d, int64_t k, const int* rows, int64_t m, int64_t* indices,
                    float* similarities, cudaStream_t stream);

}  // namespace gpu
}  // namespace alscale
