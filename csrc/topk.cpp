#include "topk.hpp"

#include <stdexcept>
#include <string>

#include "common.hpp"

namespace alscale {
namespace {

// The first k items of the union of sorted runs, in order (runs are few: one per thread).
template <class Item>
std::vector<Item> merge_sorted(const std::vector<std::vector<Item>>& runs, int64_t k) {
    size_t total = 0;
    for (const auto& r : runs) total += r.size();
    std::vector<Item> out;
    out.reserve(std::min<size_t>(total, static_cast<size_t>(k)));
    std::vector<size_t> at(runs.size(), 0);
    while (static_cast<int64_t>(out.size()) < k) {
        int best = -1;
        for (size_t r = 0; r < runs.size(); ++r)
            if (at[r] < runs[r].size() && (best < 0 || runs[r][at[r]] < runs[static_cast<size_t>(best)][at[static_cast<size_t>(best)]]))
                best = static_cast<int>(r);
        if (best < 0) break;
        out.push_back(runs[static_cast<size_t>(best)][at[static_cast<size_t>(best)]++]);
    }
    return out;
}

// The k smallest items make(i) of the non-excluded rows, sorted; rows split over threads.
template <class Item, class Make>
std::vector<Item> topk_scan(int64_t n, int64_t k, const uint8_t* exclude, int num_threads, const Make& make) {
    if (k <= 0 || n <= 0) return {};
    k = std::min(k, n);  // a budget beyond the rows (up to INT64_MAX) keeps every row
    const int threads =
        static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(thread_count(num_threads), n / 4096)));
    std::vector<BasicTopK<Item>> parts(static_cast<size_t>(threads), BasicTopK<Item>(k));
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    errors.run([&] {
        const int t = thread_id();
        const auto range = split_range(n, threads, t);
        auto& top = parts[static_cast<size_t>(t)];
        for (int64_t i = range.first; i < range.second; ++i) {
            if (exclude && exclude[i]) continue;
            top.push(make(i));
        }
    });
    errors.rethrow();
    if (threads == 1) return parts[0].sorted();
    // Each thread sorts its own k smallest, then one merge takes the first k: no serial
    // nth_element and sort over threads x k items (at k = 1M that was most of the top-k's cost).
    std::vector<std::vector<Item>> sorted(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
    errors.run([&] { sorted[static_cast<size_t>(thread_id())] = parts[static_cast<size_t>(thread_id())].sorted(); });
    errors.rethrow();
    return merge_sorted(sorted, k);
}

}  // namespace

std::vector<int64_t> select_topk(const double* scores, int64_t n, int64_t k, const uint8_t* exclude,
                                 bool largest, int num_threads) {
    const double sign = largest ? -1.0 : 1.0;
    const auto best =
        topk_scan<Candidate>(n, k, exclude, num_threads, [&](int64_t i) { return Candidate{sign * scores[i], i}; });
    std::vector<int64_t> out;
    out.reserve(best.size());
    for (const auto& c : best) out.push_back(c.row);
    return out;
}

std::vector<Ranked> topk_ranked(const double* scores, int64_t n, int64_t k, const uint8_t* exclude, bool largest,
                                const int64_t* ids, int64_t offset, int num_threads) {
    const double sign = largest ? -1.0 : 1.0;
    return topk_scan<Ranked>(n, k, exclude, num_threads, [&](int64_t i) {
        return Ranked{sign * scores[i], ids ? ids[i] : offset + i, i};
    });
}

std::vector<Ranked> merge_ranked(const double* keys, const int64_t* ids, int64_t n, int64_t k) {
    auto best = topk_scan<Ranked>(n, k, nullptr, 1, [&](int64_t i) { return Ranked{keys[i], ids[i], i}; });
    std::vector<int64_t> seen;
    seen.reserve(best.size());
    for (const auto& r : best) seen.push_back(r.id);
    check_distinct(std::move(seen), "row id ", " belongs to more than one shard or chunk (row_ids must be distinct)");
    return best;
}

void check_distinct(std::vector<int64_t> ids, const char* what, const char* why) {
    std::sort(ids.begin(), ids.end());
    const auto twice = std::adjacent_find(ids.begin(), ids.end());
    if (twice != ids.end()) throw std::invalid_argument(what + std::to_string(*twice) + why);
}

}  // namespace alscale
