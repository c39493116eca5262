// Cluster-Margin's round-robin (Citovsky et al., NeurIPS 2021): candidates grouped by cluster,
// clusters ordered by their number of candidates ascending (ties: smaller cluster id), then one
// random candidate per cluster in turn until the budget is taken; exhausted clusters are skipped.
#pragma once

#include <cstdint>
#include <vector>

namespace alscale {

// The random order inside a cluster: candidates by ascending (key(seed, row), row), where
// key(seed, row) = splitmix64 output for the state seed + (row + 1) * 0x9E3779B97F4A7C15, i.e.
// z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31.
inline uint64_t round_robin_key(uint64_t seed, int64_t row) {
    uint64_t z = seed + (static_cast<uint64_t>(row) + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// rows: the m candidate rows (distinct pool rows or global ids); labels: the cluster of each
// candidate (labels[i] for rows[i]). Returns min(budget, m) rows in the order the round-robin
// takes them.
std::vector<int64_t> cluster_round_robin(const int64_t* rows, const int64_t* labels, int64_t m, int64_t budget,
                                         uint64_t seed);

}  // namespace alscale
