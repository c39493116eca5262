// Graph average-linkage HAC (Dhulipala et al., ICML 2021): exact average linkage on a sparse
// similarity graph, a missing edge counting as similarity 0: w(A, B) = Σ_{a∈A, b∈B} s(a, b) / (|A| |B|).
// Always merges the globally best pair (largest w; ties: the pair of smallest representatives,
// a cluster's representative being its smallest point index), found through a heap holding each
// cluster's best neighbour with lazy invalidation. Clusters the graph leaves unjoined are merged
// last at distance 1 in order of their representatives. Heights are max(0, 1 - w) (cosine
// distance; a similarity above 1, e.g. float rounding between duplicate points, merges at 0).
#pragma once

#include <cstdint>
#include <vector>

namespace alscale {

// Edges (u[e], v[e], s[e]) of an undirected graph on n points, any order, duplicates and both
// directions allowed: an edge's similarity is the largest given for it; self-loops and
// similarities <= 0 are dropped (they count as 0, like a missing edge). Returns scipy's Z.
std::vector<double> hac_average_graph(int64_t n, const int64_t* u, const int64_t* v, const float* s, int64_t edges,
                                      int num_threads);

}  // namespace alscale
