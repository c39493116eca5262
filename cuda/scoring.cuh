// Fused per-row scores on the GPU: margin, confidence, entropy and the BASE boundary distance
// min_c r_c (the GPU twin of csrc/scoring.hpp). One kernel launch on the caller's stream.
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

// out[i] (device, N float64) = the score of row i; kind: an Uncertainty (0 margin, 1 confidence,
// 2 entropy; csrc/rowmath_common.hpp).
// Returns the first row with NaN/inf logits, or -1 (waits for the stream).
int64_t uncertainty_scores(const DMatrix& logits, int kind, double* out, cudaStream_t stream);

// out[i] = min_c r_c of row i. inv_norm: device C x C inverse norms, or nullptr (plain gap).
int64_t boundary_scores(const DMatrix& logits, const double* inv_norm, double* out, cudaStream_t stream);

}  // namespace gpu
}  // namespace alscale
