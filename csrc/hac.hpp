// Exact average-linkage (UPGMA) HAC: a float32 condensed distance matrix computed in blocked,
// GEMM-shaped tiles, then the nearest-neighbour chain with the Lance-Williams average update.
// Also the two helpers every HAC in alscale shares: merges -> scipy's Z, and Z -> flat labels.
#pragma once

#include <cstdint>
#include <vector>

namespace alscale {

enum class HacMetric : int { euclidean = 0, sqeuclidean = 1, cosine = 2 };

// One merge as an algorithm performs it: the clusters held in slots a and b (a point index that
// stands for the cluster) join at `height`; the union is held in slot `into` (a or b) afterwards.
struct Merge {
    int64_t a;
    int64_t b;
    int64_t into;
    double height;
};

// Merges in execution order -> scipy's Z ((n-1) x 4, row-major): heights made non-decreasing along
// every path to the root (a no-op unless float rounding broke monotonicity by an ulp), rows
// stable-sorted by height, cluster ids as scipy numbers them (points 0..n-1, row i makes n+i;
// the smaller id first), size in column 3.
std::vector<double> linkage_from_merges(int64_t n, std::vector<Merge> merges);

// Flat clusters of a sorted Z: the merges with height <= threshold (n_clusters < 0), or, with
// n_clusters = K >= 1, those with height <= the height of row n-K-1 (scipy fcluster "distance" and
// "maxclust"). Labels 0..K-1 numbered in order of each cluster's smallest point index.
std::vector<int64_t> labels_from_linkage(const double* z, int64_t n, double threshold, int64_t n_clusters);

// Z of exact UPGMA on x (n x d row-major float32, finite; for cosine, rows of non-zero norm),
// the merges scipy.cluster.hierarchy.linkage(x, "average", metric) makes, with its tie rules.
// Memory: n(n-1)/2 floats.
std::vector<double> hac_average_exact(const float* x, int64_t n, int64_t d, HacMetric metric, int num_threads);

}  // namespace alscale
