// Coreset (Sener & Savarese 2018): greedy k-center selection over embeddings.
//
// Every eligible row keeps its squared distance to the nearest center (the labeled rows, then
// each row picked); each step picks the eligible row farthest from its nearest center (ties to the
// smaller row index) and updates the distances with it. O(N·(L + B)·D) time, O(N) memory: never
// an N x N matrix. Distances are float64 lane sums (lanedot.hpp), so the picks are exact and
// independent of the thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace alscale {

// x: n x d row-major (float or double). centers: rows that start as centers (the labeled set).
// exclude: nullptr or n bytes (non-zero: may not be picked). Rows that are centers are never
// picked. With no centers, the first pick is the first eligible row (every distance is +inf).
template <class T>
std::vector<int64_t> select_coreset(const T* x, int64_t n, int64_t d, const int64_t* centers, int64_t n_centers,
                                    const uint8_t* exclude, int64_t budget, int num_threads);

}  // namespace alscale
