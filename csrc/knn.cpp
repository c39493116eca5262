#include "knn.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "common.hpp"
#include "isa.hpp"
#include "tiles.hpp"
#include "topk.hpp"

namespace alscale {
namespace {

constexpr int64_t kJB = kTileCols;
constexpr int64_t kIB = kTileRows;

// acc[r][j] = x[i0 + r] · point (jb + j), accumulated over the dimensions in order.
ALSCALE_INLINE void dot_tile(const float* x, int64_t d, int64_t i0, int64_t ib, const float* xt, float (*acc)[kJB]) {
    for (int64_t r = 0; r < kIB; ++r)
        for (int64_t j = 0; j < kJB; ++j) acc[r][j] = 0.0f;
    for (int64_t k = 0; k < d; ++k) {
        const float* col = xt + k * kJB;
        for (int64_t r = 0; r < ib; ++r) {
            const float v = x[(i0 + r) * d + k];
            float* a = acc[r];
            for (int64_t j = 0; j < kJB; ++j) a[j] += v * col[j];
        }
    }
}

ALSCALE_INLINE void knn_tile_rows(const float* x, const float* xt, int64_t n, int64_t d, int64_t i0, TopK* tops) {
    alignas(64) float acc[kIB][kJB];
    const int64_t ib = std::min(kIB, n - i0);
    for (int64_t jb = 0; jb < n; jb += kJB) {
        dot_tile(x, d, i0, ib, xt + (jb / kJB) * d * kJB, acc);
        const int64_t hi = std::min(n, jb + kJB);
        for (int64_t r = 0; r < ib; ++r) {
            const int64_t i = i0 + r;
            for (int64_t j = jb; j < hi; ++j) {
                if (j == i) continue;
                const Candidate c{-static_cast<double>(acc[r][j - jb]), j};
                if (tops[r].admits(c)) tops[r].push(c);
            }
        }
    }
}

void knn_tile_base(const float* x, const float* xt, int64_t n, int64_t d, int64_t i0, TopK* tops) {
    knn_tile_rows(x, xt, n, d, i0, tops);
}
ALSCALE_AVX2 void knn_tile_avx2(const float* x, const float* xt, int64_t n, int64_t d, int64_t i0, TopK* tops) {
    knn_tile_rows(x, xt, n, d, i0, tops);
}

}  // namespace

void knn_exact(const float* x, int64_t n, int64_t d, int64_t k, int64_t* indices, float* similarities,
               int num_threads) {
    if (k < 1 || k >= n) throw std::invalid_argument("knn needs 1 <= k < n");
    const std::vector<float> xt = pack_transposed_blocks(x, n, d);
    const bool avx2 = use_avx2();
    const int64_t tiles = (n + kIB - 1) / kIB;
    ParallelErrors errors;
#pragma omp parallel for num_threads(thread_count(num_threads)) schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; ++t) {
        errors.run([&] {
            std::vector<TopK> tops(static_cast<size_t>(kIB), TopK(k));
            if (avx2)
                knn_tile_avx2(x, xt.data(), n, d, t * kIB, tops.data());
            else
                knn_tile_base(x, xt.data(), n, d, t * kIB, tops.data());
            for (int64_t r = 0; r < kIB && t * kIB + r < n; ++r) {
                const int64_t i = t * kIB + r;
                const auto best = tops[r].sorted();
                for (int64_t j = 0; j < k; ++j) {
                    indices[i * k + j] = best[j].row;
                    similarities[i * k + j] = static_cast<float>(-best[j].key);
                }
            }
        });
    }
    errors.rethrow();
}

}  // namespace alscale
