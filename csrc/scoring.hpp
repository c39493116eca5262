// Fused per-row scores over a logits matrix: margin, confidence, entropy (softmax) and the BASE
// boundary distance min_c r_c. One pass over the logits; the row stays in L1 between sub-passes.
#pragma once

#include "common.hpp"
#include "head.hpp"
#include "rowmath_common.hpp"  // Uncertainty

namespace alscale {

// out[i] = the score of row i. Throws std::invalid_argument naming the first non-finite row.
void uncertainty_scores(const Matrix& logits, Uncertainty kind, double* out, int num_threads);

// out[i] = min_c r_c of row i (+inf with one class). head: the inverse norms 1/||w_p - w_c||
// (+inf on the diagonal and for equal weight rows) as a table or pairs on demand (head.hpp).
void boundary_scores(const Matrix& logits, const HeadNorms& head, double* out, int num_threads);

}  // namespace alscale
