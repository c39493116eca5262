// Exact k-nearest-neighbour graph by blocked brute force: GEMM-shaped tiles of dot products,
// a bounded top-k per row, rows split over OpenMP threads (results independent of the split).
#pragma once

#include <cstdint>

namespace alscale {

// For every row i of x (n x d row-major float32; L2-normalised rows give cosine similarity),
// the k other rows with the largest dot product, largest first, ties to the smaller row index:
// indices[i*k + j] and similarities[i*k + j]. Needs 1 <= k < n.
void knn_exact(const float* x, int64_t n, int64_t d, int64_t k, int64_t* indices, float* similarities,
               int num_threads);

}  // namespace alscale
