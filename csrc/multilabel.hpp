// Multi-label uncertainty: (N, C) logits of C independent sigmoids, per class the binary margin,
// confidence or entropy (rowmath_common.hpp sigmoid_*), per row a reduction over the classes.
// One fused pass over the logits; no N x C array of probabilities is ever made.
#pragma once

#include "common.hpp"
#include "rowmath_common.hpp"  // Uncertainty, Reduction

namespace alscale {

// out[i] = the score of row i: the mean over the classes (a float64 sum in lane order: class c
// into lane c % 8, each lane in class order, the lanes combined by sum_lanes, then / C) or the
// most uncertain class, "min" (min margin / confidence, max entropy: all three are monotone in
// |z|, so it is the value of the class with the smallest |z|, computed once per row).
// Bit-identical for every thread count, ISA and chunking. Throws std::invalid_argument naming
// the first non-finite row.
void multilabel_scores(const Matrix& logits, Uncertainty kind, Reduction reduction, double* out, int num_threads);

}  // namespace alscale
