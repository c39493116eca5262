#include "topk.hpp"

#include "common.hpp"

namespace alscale {

std::vector<int64_t> select_topk(const double* scores, int64_t n, int64_t k, const uint8_t* exclude,
                                 bool largest, int num_threads) {
    std::vector<int64_t> out;
    if (k <= 0 || n <= 0) return out;
    const int threads =
        static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(thread_count(num_threads), n / 4096)));
    std::vector<TopK> parts(static_cast<size_t>(threads), TopK(k));
    const double sign = largest ? -1.0 : 1.0;
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    errors.run([&] {
        const int t = thread_id();
        const auto range = split_range(n, threads, t);
        TopK& top = parts[static_cast<size_t>(t)];
        for (int64_t i = range.first; i < range.second; ++i) {
            if (exclude && exclude[i]) continue;
            top.push(Candidate{sign * scores[i], i});
        }
    });
    errors.rethrow();
    for (int t = 1; t < threads; ++t) parts[0].absorb(std::move(parts[static_cast<size_t>(t)]));
    const auto best = parts[0].sorted();
    out.reserve(best.size());
    for (const auto& c : best) out.push_back(c.row);
    return out;
}

}  // namespace alscale
