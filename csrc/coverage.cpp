#include "coverage.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "common.hpp"

namespace alscale {

namespace {

int64_t uncovered_in(const int64_t* indptr, const int64_t* members, const uint8_t* covered, int64_t row) {
    int64_t count = 0;
    for (int64_t j = indptr[row]; j < indptr[row + 1]; ++j) count += covered[members[j]] == 0;
    return count;
}

// Heap order: the larger gain first, then the smaller row.
struct Before {
    bool operator()(const std::pair<int64_t, int64_t>& a, const std::pair<int64_t, int64_t>& b) const {
        return a.first < b.first || (a.first == b.first && a.second > b.second);
    }
};

}  // namespace

int64_t max_coverage(int64_t n, const int64_t* indptr, const int64_t* members, uint8_t* covered,
                     const uint8_t* candidate, int64_t budget, int64_t* picks, int num_threads) {
    std::vector<int64_t> gain(static_cast<size_t>(n), 0);
    const int threads = row_threads(num_threads, n);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i)
        if (candidate[i]) gain[static_cast<size_t>(i)] = uncovered_in(indptr, members, covered, i);

    std::vector<std::pair<int64_t, int64_t>> heap;  // (gain when last counted, row)
    for (int64_t i = 0; i < n; ++i)
        if (gain[static_cast<size_t>(i)] > 0) heap.emplace_back(gain[static_cast<size_t>(i)], i);
    std::make_heap(heap.begin(), heap.end(), Before{});

    int64_t count = 0;
    while (count < budget && !heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), Before{});
        const auto [stale, row] = heap.back();
        heap.pop_back();
        const int64_t now = uncovered_in(indptr, members, covered, row);
        if (now == stale) {
            // Every other entry's gain is at most its recorded one, which is below (or equal with
            // a larger row to) this one: row is the best pick.
            picks[count++] = row;
            for (int64_t j = indptr[row]; j < indptr[row + 1]; ++j) covered[members[j]] = 1;
        } else if (now > 0) {
            heap.emplace_back(now, row);
            std::push_heap(heap.begin(), heap.end(), Before{});
        }
    }
    return count;
}

}  // namespace alscale
