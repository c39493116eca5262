// The kNN graph over an inverted file, searched GEMM-shaped: every query ranks the lists'
// centroids exactly and scans the points of its `probes` first lists, but the scan runs list by
// list (the (query, list) pairs of a block of queries inverted), so each list's points meet all the
// block's queries that probe it in tiles of dot products instead of one query at a time.
#pragma once

#include <cstdint>

namespace alscale {

// For every row of x (n x d row-major float32, unit rows), the `probes` centroids (lists x d, unit
// rows) with the largest dot product, largest first, ties to the smaller centroid: out[i*probes+j].
// Needs 1 <= probes <= lists. (Ranking only the centroids of a few groups of centroids was tried
// and lost recall on overlapping data: BENCHMARKS.md.)
void knn_rank_lists(const float* x, int64_t n, int64_t d, const float* centroids, int64_t lists, int64_t probes,
                    int32_t* out, int num_threads);

// The k nearest other rows of every row of x, searched in the points of its `probes` first lists
// (knn_rank_lists): list l holds the rows list_rows[list_start[l] .. list_start[l+1]) (every row in
// exactly one list). Similarities are knn_exact's (the same float32 dot products, in the same
// order); neighbours by descending similarity, ties to the smaller row; -1 and 0 where the probed
// lists hold fewer than k other rows. The result does not depend on the thread count.
// ranks (n x probes, or nullptr): every row's lists as knn_rank_lists gave them (the pass that
// chose the lists' members: its first column), instead of ranking again.
// queries (m rows, or nullptr: every row, m = n): only these rows are searched, in this order
// (list order reads each list's blocks least); ranks (if given) and the results are then theirs,
// m x probes and m x k, by position. A query's neighbours do not depend on the other queries, so
// searching the rows in parts gives the graph of one call.
void knn_lists(const float* x, int64_t n, int64_t d, int64_t k, const float* centroids, int64_t lists,
               const int64_t* list_start, const int64_t* list_rows, int64_t probes, const int32_t* ranks,
               const int64_t* queries, int64_t m, int64_t* indices, float* similarities, int num_threads);

}  // namespace alscale
