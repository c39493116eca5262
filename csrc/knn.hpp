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

// The same, restricted to candidate cells (an inverted file scanned cell by cell): the points are
// grouped into `cells` cells, cell c holding rows cell_rows[cell_start[c] .. cell_start[c+1]); the
// points of cell c are compared with the points of the cells probes[probe_start[c] ..
// probe_start[c+1]) (which should include c). Same order and ties as knn_exact; where fewer than
// k candidates exist, the row is padded with index -1 and similarity 0. Every point must lie in
// exactly one cell; the result does not depend on the thread count.
void knn_cells(const float* x, int64_t n, int64_t d, int64_t k, const int64_t* cell_start, const int64_t* cell_rows,
               int64_t cells, const int64_t* probe_start, const int64_t* probes, int64_t* indices,
               float* similarities, int num_threads);

}  // namespace alscale
