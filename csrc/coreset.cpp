#include "coreset.hpp"

#include <limits>

#include "common.hpp"
#include "isa.hpp"
#include "lanedot.hpp"

namespace alscale {
namespace {

// Rows [begin, end): lowers each eligible row's distance with centers[0..nc) and finds the
// farthest eligible row.
template <class T, int B>
ALSCALE_INLINE int64_t coreset_rows(const T* const& x, const int64_t& d, const int64_t* const& centers,
                                    const int64_t& nc, const uint8_t* const& eligible, double* const& mind,
                                    const int64_t& begin, const int64_t& end, Best& best) {
    for (int64_t i = begin; i < end; ++i) {
        if (!eligible[i]) continue;
        const T* xi = x + i * d;
        double m = mind[i];
        for (int64_t k = 0; k < nc; ++k) {
            const double dist = lane_sqdist(xi, x + centers[k] * d, d);
            if (dist < m) m = dist;
        }
        mind[i] = m;
        const Best here{m, i};
        if (better(here, best)) best = here;
    }
    return end;
}
ALSCALE_MULTIVERSION(coreset_rows)

// One parallel pass over the rows with the given centers; returns the farthest eligible row.
template <class T>
Best coreset_pass(const T* x, int64_t n, int64_t d, const int64_t* centers, int64_t nc, const uint8_t* eligible,
                  double* mind, int threads) {
    std::vector<Best> bests(static_cast<size_t>(threads), Best{0.0, -1});
#pragma omp parallel num_threads(threads)
    {
        const int t = thread_id();
        const auto range = split_range(n, threads, t);
        Best b{0.0, -1};
        const int64_t begin = range.first, end = range.second;
        coreset_rows_dispatch<T>(x, d, centers, nc, eligible, mind, begin, end, b);
        bests[static_cast<size_t>(t)] = b;
    }
    Best best{0.0, -1};
    for (const auto& b : bests)
        if (better(b, best)) best = b;
    return best;
}

}  // namespace

template <class T>
std::vector<int64_t> select_coreset(const T* x, int64_t n, int64_t d, const int64_t* centers, int64_t n_centers,
                                    const uint8_t* exclude, int64_t budget, int num_threads) {
    std::vector<int64_t> out;
    if (budget <= 0 || n <= 0) return out;
    std::vector<uint8_t> eligible(static_cast<size_t>(n), 1);
    if (exclude)
        for (int64_t i = 0; i < n; ++i) eligible[i] = exclude[i] ? 0 : 1;
    for (int64_t k = 0; k < n_centers; ++k) eligible[centers[k]] = 0;
    std::vector<double> mind(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
    const int threads = row_threads(num_threads, n);
    // The labeled centers, a block at a time (each block's rows stay in cache across the pool).
    constexpr int64_t kBlock = 64;
    Best best{0.0, -1};
    if (n_centers == 0) best = coreset_pass(x, n, d, centers, 0, eligible.data(), mind.data(), threads);
    for (int64_t k0 = 0; k0 < n_centers; k0 += kBlock)
        best = coreset_pass(x, n, d, centers + k0, std::min(kBlock, n_centers - k0), eligible.data(), mind.data(),
                            threads);
    out.reserve(static_cast<size_t>(budget));
    while (static_cast<int64_t>(out.size()) < budget && best.row >= 0) {
        const int64_t pick = best.row;
        out.push_back(pick);
        eligible[pick] = 0;
        if (static_cast<int64_t>(out.size()) == budget) break;
        best = coreset_pass(x, n, d, &pick, 1, eligible.data(), mind.data(), threads);
    }
    return out;
}

template std::vector<int64_t> select_coreset<float>(const float*, int64_t, int64_t, const int64_t*, int64_t,
                                                    const uint8_t*, int64_t, int);
template std::vector<int64_t> select_coreset<double>(const double*, int64_t, int64_t, const int64_t*, int64_t,
                                                     const uint8_t*, int64_t, int);

}  // namespace alscale
