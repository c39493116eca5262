// Exact k-nearest-neighbour graph from tensor cores (issue 12): candidates from a bf16 or TF32
// tensor-core GEMM filtered by the proven error bound of csrc/knn_bound.hpp, then an exact
// float32 re-rank in the CPU kernel's arithmetic, so the graph is csrc/knn.cpp's bit for bit.
// The CPU specification of the whole algorithm is tests/test_knn_bound.py (two_stage_knn).
#pragma once

#include "common.cuh"
#include "knn_bound.hpp"

namespace alscale {
namespace gpu {

// x: n x d row-major float32 unit rows on the device (alscale's normalisation: the bound assumes
// norms <= 1 + 2^-20). Writes, for every row, the k other rows with the largest float32 dot
// product (largest first, ties to the smaller row) and those dot products, exactly as knn_exact
// and the CPU kernel. Needs 1 <= k < n, k <= kKnnMaxK, n <= 2^31 - 129, d <= kKnnBoundMaxDims and a
// device of compute capability >= 8.0 (the caller falls back to knn_exact below that).
// Device memory: the points rounded to the GEMM's format (n x d, 2 or 4 bytes each, padded) and
// 8 bytes per row for the fallback list; no n x n matrix.
// Rows whose candidate window overflows the kernel's per-row list (very many points within
// 2 eps of the row's k-th similarity: duplicates, dense clusters at bf16) are recomputed with
// knn_exact's kernel; returns how many rows were (for benchmarks and tests).
int64_t knn_tc(const float* x, int64_t n, int64_t d, int64_t k, KnnPrecision precision, int64_t* indices,
               float* similarities, cudaStream_t stream);

// The candidate-list length per row the tensor-core kernel uses for k neighbours (exposed so
// that tests can build inputs that overflow it).
int64_t knn_tc_capacity(int64_t k);

}  // namespace gpu
}  // namespace alscale
