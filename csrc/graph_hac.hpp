// Graph average-linkage HAC (Dhulipala et al., ICML 2021): exact average linkage on a sparse
// similarity graph, a missing edge counting as similarity 0: w(A, B) = Σ_{a∈A, b∈B} s(a, b) / (|A| |B|).
// Always merges the globally best pair (largest w; ties: the pair of smallest representatives,
// a cluster's representative being its smallest point index), found through a heap holding each
// cluster's best neighbour with lazy invalidation. Clusters the graph leaves unjoined are merged
// last at distance 1 in order of their representatives. Heights are max(0, 1 - w) (cosine
// distance; a similarity above 1, e.g. float rounding between duplicate points, merges at 0).
//
// Memory is O(N·k) with small constants: the adjacency is one arena of packed (id, weight)
// entries (12 bytes with the 32-bit ids used below 2^31 points, 16 above), one entry per
// neighbour of each cluster, plus about 60 bytes a point; the kNN form reads the caller's (N, k)
// arrays as they are (no edge-list copy).
#pragma once

#include <cstdint>
#include <vector>

namespace alscale {

// Edges (u[e], v[e], s[e]) of an undirected graph on n points, any order, duplicates and both
// directions allowed: an edge's similarity is the largest given for it; self-loops and
// similarities <= 0 are dropped (they count as 0, like a missing edge). Returns scipy's Z.
// wide_ids runs the 64-bit-id kernel (used above 2^31 points) at any n, for tests.
std::vector<double> hac_average_graph(int64_t n, const int64_t* u, const int64_t* v, const float* s, int64_t edges,
                                      int num_threads, bool wide_ids = false);

// The same on a kNN graph: point i's neighbours idx[i*k + j] (-1 = none) with similarities
// sim[i*k + j], row-major (n, k); each (i, idx[i*k+j]) is an undirected edge as above.
std::vector<double> hac_average_knn_graph(int64_t n, int64_t k, const int64_t* idx, const float* sim,
                                          int num_threads, bool wide_ids = false);
std::vector<double> hac_average_knn_graph(int64_t n, int64_t k, const int32_t* idx, const float* sim,
                                          int num_threads, bool wide_ids = false);

}  // namespace alscale
