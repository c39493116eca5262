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

// One tile of kIB gathered query rows q (ib of them) against m gathered candidates packed in xt.
ALSCALE_INLINE void cell_tile_rows(const float* q, int64_t ib, int64_t d, const float* xt, const int64_t* cand,
                                   int64_t m, const int64_t* qrows, TopK* tops) {
    alignas(64) float acc[kIB][kJB];
    for (int64_t jb = 0; jb < m; jb += kJB) {
        dot_tile(q, d, 0, ib, xt + (jb / kJB) * d * kJB, acc);
        const int64_t hi = std::min(m, jb + kJB);
        for (int64_t r = 0; r < ib; ++r)
            for (int64_t j = jb; j < hi; ++j) {
                if (cand[j] == qrows[r]) continue;
                const Candidate c{-static_cast<double>(acc[r][j - jb]), cand[j]};
                if (tops[r].admits(c)) tops[r].push(c);
            }
    }
}

void cell_tile_base(const float* q, int64_t ib, int64_t d, const float* xt, const int64_t* cand, int64_t m,
                    const int64_t* qrows, TopK* tops) {
    cell_tile_rows(q, ib, d, xt, cand, m, qrows, tops);
}
ALSCALE_AVX2 void cell_tile_avx2(const float* q, int64_t ib, int64_t d, const float* xt, const int64_t* cand,
                                 int64_t m, const int64_t* qrows, TopK* tops) {
    cell_tile_rows(q, ib, d, xt, cand, m, qrows, tops);
}

}  // namespace

void knn_cells(const float* x, int64_t n, int64_t d, int64_t k, const int64_t* cell_start, const int64_t* cell_rows,
               int64_t cells, const int64_t* probe_start, const int64_t* probes, int64_t* indices,
               float* similarities, int num_threads) {
    if (k < 1) throw std::invalid_argument("knn needs k >= 1");
    if (cell_start[0] != 0 || cell_start[cells] != n) throw std::invalid_argument("the cells must hold the n points");
    for (int64_t c = 0; c < cells; ++c) {
        if (cell_start[c + 1] < cell_start[c] || probe_start[c + 1] < probe_start[c])
            throw std::invalid_argument("cell offsets must be non-decreasing");
        for (int64_t p = probe_start[c]; p < probe_start[c + 1]; ++p)
            if (probes[p] < 0 || probes[p] >= cells) throw std::invalid_argument("probed cell out of range");
    }
    for (int64_t i = 0; i < n; ++i)
        if (cell_rows[i] < 0 || cell_rows[i] >= n) throw std::invalid_argument("cell row out of range");
    const bool avx2 = use_avx2();
    ParallelErrors errors;
#pragma omp parallel num_threads(thread_count(num_threads))
    {
        std::vector<int64_t> cand;
        std::vector<float> gathered, xt, q(static_cast<size_t>(kIB * d));
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < cells; ++c) {
            errors.run([&] {
                cand.clear();
                for (int64_t p = probe_start[c]; p < probe_start[c + 1]; ++p)
                    cand.insert(cand.end(), cell_rows + cell_start[probes[p]], cell_rows + cell_start[probes[p] + 1]);
                const int64_t m = static_cast<int64_t>(cand.size());
                gathered.resize(static_cast<size_t>(m * d));
                for (int64_t j = 0; j < m; ++j) std::copy_n(x + cand[j] * d, d, gathered.data() + j * d);
                xt = pack_transposed_blocks(gathered.data(), m, d);
                const int64_t* qrows = cell_rows + cell_start[c];
                const int64_t nq = cell_start[c + 1] - cell_start[c];
                for (int64_t t = 0; t < nq; t += kIB) {
                    const int64_t ib = std::min(kIB, nq - t);
                    for (int64_t r = 0; r < ib; ++r) std::copy_n(x + qrows[t + r] * d, d, q.data() + r * d);
                    std::vector<TopK> tops(static_cast<size_t>(kIB), TopK(k));
                    if (avx2)
                        cell_tile_avx2(q.data(), ib, d, xt.data(), cand.data(), m, qrows + t, tops.data());
                    else
                        cell_tile_base(q.data(), ib, d, xt.data(), cand.data(), m, qrows + t, tops.data());
                    for (int64_t r = 0; r < ib; ++r) {
                        const int64_t i = qrows[t + r];
                        const auto best = tops[r].sorted();
                        const int64_t got = static_cast<int64_t>(best.size());
                        for (int64_t j = 0; j < k; ++j) {
                            indices[i * k + j] = j < got ? best[j].row : -1;
                            similarities[i * k + j] = j < got ? static_cast<float>(-best[j].key) : 0.0f;
                        }
                    }
                }
            });
        }
    }
    errors.rethrow();
}

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
