#include "knn_lists.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#include "common.hpp"
#include "isa.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace alscale {
namespace {

constexpr int64_t kW = 32;  // points per packed block
constexpr int64_t kR = 8;   // query rows per tile

// (similarity, row) ordered best first: larger similarity, then the smaller row.
struct Hit {
    float sim;
    int64_t row;
};
inline bool better(float s, int64_t i, const Hit& h) { return s > h.sim || (s == h.sim && i < h.row); }
inline bool operator<(const Hit& a, const Hit& b) { return better(a.sim, a.row, b); }

// Groups of rows packed for tiles: each group in blocks of kW points, a block d x kW (transposed,
// zero padded), with every column's row (-1: padding).
struct Packed {
    std::vector<float> data;
    std::vector<int64_t> rows;
    std::vector<int64_t> block_start;  // group g: blocks [block_start[g], block_start[g + 1])
};

// Group g holds rows members[start[g] .. start[g + 1]) of x (members == nullptr: the rows
// start[g] .. start[g + 1] themselves).
Packed pack(const float* x, int64_t d, int64_t groups, const int64_t* start, const int64_t* members, int threads) {
    Packed p;
    p.block_start.assign(static_cast<size_t>(groups + 1), 0);
    for (int64_t g = 0; g < groups; ++g)
        p.block_start[g + 1] = p.block_start[g] + (start[g + 1] - start[g] + kW - 1) / kW;
    const int64_t blocks = p.block_start[groups];
    p.data.assign(static_cast<size_t>(blocks * d * kW), 0.0f);
    p.rows.assign(static_cast<size_t>(blocks * kW), -1);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t g = 0; g < groups; ++g)
        for (int64_t t = 0; t < start[g + 1] - start[g]; ++t) {
            const int64_t row = members ? members[start[g] + t] : start[g] + t;
            const int64_t b = p.block_start[g] + t / kW, col = t % kW;
            p.rows[b * kW + col] = row;
            float* blk = p.data.data() + b * d * kW;
            for (int64_t k = 0; k < d; ++k) blk[k * kW + col] = x[row * d + k];
        }
    return p;
}

// acc[r][j] = q_r . column j of the block, summed over the dimensions in order with separate
// multiplies and adds (knn_exact's arithmetic, so the same float32 similarities).
// 16 floats as one value (one AVX-512 register; two AVX2 or four SSE ones): written with them the
// tile's 16 accumulators stay in registers (a float array behind a pointer that may alias q
// is stored and reloaded every step).
typedef float V16 __attribute__((vector_size(64)));

ALSCALE_INLINE void tile(const float* q, int64_t d, const float* blk, float (*acc)[kW]) {
    static_assert(kW == 32 && kR == 8, "the tile is 8 rows x 2 V16");
    V16 a0[kR], a1[kR];
    for (int64_t r = 0; r < kR; ++r) a0[r] = a1[r] = V16{};
    for (int64_t k = 0; k < d; ++k) {
        V16 c0, c1;
        std::memcpy(&c0, blk + k * kW, sizeof c0);
        std::memcpy(&c1, blk + k * kW + 16, sizeof c1);
        for (int64_t r = 0; r < kR; ++r) {
            const float v = q[r * d + k];
            a0[r] += v * c0;
            a1[r] += v * c1;
        }
    }
    for (int64_t r = 0; r < kR; ++r) {
        std::memcpy(acc[r], &a0[r], sizeof a0[r]);
        std::memcpy(acc[r] + 16, &a1[r], sizeof a1[r]);
    }
}

// Whether any similarity of a tile row reaches t (a vectorisable test that skips most rows).
ALSCALE_INLINE bool reaches(const float* a, float t) {
    int any = 0;
    for (int64_t j = 0; j < kW; ++j) any |= a[j] >= t;
    return any != 0;
}

// Bit j set where a tile row's similarity j reaches t (SSE's compare and movemask on x86: the
// compiler leaves the plain loop scalar).
ALSCALE_INLINE uint32_t at_least(const float* a, float t) {
    uint32_t m = 0;
#if defined(__SSE2__)
    const __m128 v = _mm_set1_ps(t);
    for (int64_t j = 0; j < kW; j += 4)
        m |= static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(a + j), v))) << j;
#else
    for (int64_t j = 0; j < kW; ++j) m |= static_cast<uint32_t>(a[j] >= t) << j;
#endif
    return m;
}

void tile_base(const float* q, int64_t d, const float* blk, float (*acc)[kW]) { tile(q, d, blk, acc); }
ALSCALE_AVX2 void tile_avx2(const float* q, int64_t d, const float* blk, float (*acc)[kW]) { tile(q, d, blk, acc); }
ALSCALE_AVX512 void tile_avx512(const float* q, int64_t d, const float* blk, float (*acc)[kW]) { tile(q, d, blk, acc); }

using TileFn = void (*)(const float*, int64_t, const float*, float (*)[kW]);
TileFn tile_fn() { return use_avx512() ? tile_avx512 : use_avx2() ? tile_avx2 : tile_base; }

// A (similarity, row) hit as one unsigned key ordered as `better`: the float's bits made monotone
// (-0 read as +0, as the float compare ties them) above the row's complement (the smaller row
// wins a tie). Rows below 2^32 (lists are at most INT32_MAX).
inline uint64_t key_of(float s, int64_t row) {
    if (s == 0.0f) s = 0.0f;
    uint32_t b;
    std::memcpy(&b, &s, sizeof b);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return (static_cast<uint64_t>(b) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(row));
}
inline float sim_of(uint64_t key) {
    uint32_t b = static_cast<uint32_t>(key >> 32);
    b = (b & 0x80000000u) ? (b & 0x7FFFFFFFu) : ~b;
    float s;
    std::memcpy(&s, &b, sizeof s);
    return s;
}
inline int64_t row_of(uint64_t key) { return 0xFFFFFFFFu - static_cast<uint32_t>(key); }

// The best `keep` of a stream of hits: their keys in a buffer pruned to `keep` (nth_element on
// the integers: no two-field compare) whenever it holds 2 * keep; the keep-th best so far bounds
// what is admitted.
class Best {
public:
    explicit Best(int64_t keep) : keep_(keep) { buf_.reserve(static_cast<size_t>(2 * keep)); }
    void reset() {
        buf_.clear();
        full_ = false;
    }
    float bound() const { return full_ ? sim_of(worst_) : -INFINITY; }
    void offer(float s, int64_t row) {
        const uint64_t key = key_of(s, row);
        if (full_ && key <= worst_) return;
        buf_.push_back(key);
        if (static_cast<int64_t>(buf_.size()) == 2 * keep_) prune();
    }
    // The kept hits' keys, best first (at most keep): row_of gives each row.
    const std::vector<uint64_t>& sorted() {
        if (static_cast<int64_t>(buf_.size()) > keep_) prune();
        std::sort(buf_.begin(), buf_.end(), std::greater<uint64_t>());
        return buf_;
    }

private:
    void prune() {
        std::nth_element(buf_.begin(), buf_.begin() + (keep_ - 1), buf_.end(), std::greater<uint64_t>());
        buf_.resize(static_cast<size_t>(keep_));
        worst_ = buf_[keep_ - 1];
        full_ = true;
    }
    int64_t keep_;
    std::vector<uint64_t> buf_;
    uint64_t worst_ = 0;
    bool full_ = false;
};

// The k best other rows of one query: an unsorted array with its worst entry tracked.
struct Neighbours {
    Hit* h;
    int64_t count;
    int64_t worst;
};

inline void admit(Neighbours& nb, int64_t k, float s, int64_t row) {
    if (nb.count < k) {
        nb.h[nb.count++] = {s, row};
        if (nb.count < k) return;
    } else {
        if (!better(s, row, nb.h[nb.worst])) return;
        nb.h[nb.worst] = {s, row};
    }
    int64_t w = 0;
    for (int64_t j = 1; j < k; ++j)
        if (nb.h[w] < nb.h[j]) w = j;
    nb.worst = w;
}

// The centroids, packed once, and what ranking them needs per thread.
struct RankScratch {
    std::vector<Best> best;
    std::vector<float> qbuf;
    RankScratch(int64_t probes, int64_t d) : best(static_cast<size_t>(kR), Best(probes)), qbuf(static_cast<size_t>(kR * d)) {}
};

// out[i * probes + j]: the j-th ranked list of row i of q (m x d), in tiles of kR rows against
// every block of centroids.
void rank_rows(const float* q, int64_t m, int64_t d, const Packed& cen, int64_t probes, int32_t* out, RankScratch& sc) {
    const TileFn fn = tile_fn();
    alignas(64) float acc[kR][kW];
    const int64_t blocks = cen.block_start.back();
    for (int64_t i0 = 0; i0 < m; i0 += kR) {
        const int64_t rr = std::min(kR, m - i0);
        std::fill(sc.qbuf.begin(), sc.qbuf.end(), 0.0f);
        std::copy_n(q + i0 * d, rr * d, sc.qbuf.data());
        for (int64_t r = 0; r < rr; ++r) sc.best[r].reset();
        for (int64_t b = 0; b < blocks; ++b) {
            fn(sc.qbuf.data(), d, cen.data.data() + b * d * kW, acc);
            const int64_t* rows = cen.rows.data() + b * kW;
            for (int64_t r = 0; r < rr; ++r) {
                const float bound = sc.best[r].bound();
                if (!reaches(acc[r], bound)) continue;
                // only the centroids at or above the bound can enter
                for (uint32_t m = at_least(acc[r], bound); m; m &= m - 1) {
                    const int j = __builtin_ctz(m);
                    if (rows[j] >= 0) sc.best[r].offer(acc[r][j], rows[j]);
                }
            }
        }
        for (int64_t r = 0; r < rr; ++r) {
            const auto& top = sc.best[r].sorted();
            for (int64_t j = 0; j < probes; ++j) out[(i0 + r) * probes + j] = static_cast<int32_t>(row_of(top[j]));
        }
    }
}

Packed pack_centroids(const float* centroids, int64_t lists, int64_t d, int threads) {
    const int64_t all[2] = {0, lists};
    return pack(centroids, d, 1, all, nullptr, threads);
}

void check_lists(int64_t n, int64_t d, int64_t lists, int64_t probes, const int64_t* list_start,
                 const int64_t* list_rows) {
    if (n < 1 || d < 1) throw std::invalid_argument("knn_lists needs points");
    if (probes < 1 || probes > lists) throw std::invalid_argument("probes must be in [1, lists]");
    if (lists > INT32_MAX) throw std::invalid_argument("too many lists");
    if (!list_start) return;
    if (list_start[0] != 0 || list_start[lists] != n) throw std::invalid_argument("the lists must hold the n points");
    for (int64_t l = 0; l < lists; ++l)
        if (list_start[l + 1] < list_start[l]) throw std::invalid_argument("list offsets must be non-decreasing");
    std::vector<uint8_t> seen(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) {
        if (list_rows[i] < 0 || list_rows[i] >= n || seen[list_rows[i]])
            throw std::invalid_argument("every row must lie in exactly one list");
        seen[list_rows[i]] = 1;
    }
}

}  // namespace

void knn_rank_lists(const float* x, int64_t n, int64_t d, const float* centroids, int64_t lists, int64_t probes,
                    int32_t* out, int num_threads) {
    check_lists(n, d, lists, probes, nullptr, nullptr);
    const int threads = thread_count(num_threads);
    const Packed cen = pack_centroids(centroids, lists, d, threads);
    constexpr int64_t kRows = 1024;
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    {
        RankScratch sc(probes, d);
#pragma omp for schedule(dynamic, 1)
        for (int64_t s = 0; s < n; s += kRows)
            errors.run([&] { rank_rows(x + s * d, std::min(kRows, n - s), d, cen, probes, out + s * probes, sc); });
    }
    errors.rethrow();
}

void knn_lists(const float* x, int64_t n, int64_t d, int64_t k, const float* centroids, int64_t lists,
               const int64_t* list_start, const int64_t* list_rows, int64_t probes, const int32_t* ranks,
               const int64_t* queries, int64_t m_all, int64_t* indices, float* similarities, int num_threads) {
    if (k < 1) throw std::invalid_argument("knn needs k >= 1");
    check_lists(n, d, lists, probes, list_start, list_rows);
    const bool by_row = queries == nullptr;  // every row, in list order; ranks and results by row
    if (by_row) {
        queries = list_rows;
        m_all = n;
    }
    if (m_all < 0) throw std::invalid_argument("the query count must be >= 0");
    for (int64_t i = 0; i < m_all; ++i)
        if (queries[i] < 0 || queries[i] >= n) throw std::invalid_argument("query row out of range");
    if (ranks)
        for (int64_t p = 0; p < m_all * probes; ++p)
            if (ranks[p] < 0 || ranks[p] >= lists) throw std::invalid_argument("ranked list out of range");
    if (m_all == 0) return;
    const int threads = thread_count(num_threads);
    const Packed pts = pack(x, d, lists, list_start, list_rows, threads);
    const Packed cen = ranks ? Packed{} : pack_centroids(centroids, lists, d, threads);  // ranks given: not ranked here
    const TileFn fn = tile_fn();
    // Queries in list order (neighbouring queries probe overlapping lists), in chunks whose
    // (query, list) pairs are inverted: each list's blocks are read once a chunk.
    // At least one chunk a thread; at most 2^24 pairs a chunk.
    const int64_t cap = std::max<int64_t>(4096, std::min<int64_t>(1 << 17, (int64_t{1} << 24) / probes));
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(cap, (m_all + threads - 1) / threads));
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    {
        RankScratch sc(probes, d);
        std::vector<float> qbuf(static_cast<size_t>(kR * d)), qx;
        std::vector<int32_t> pr, inv;
        std::vector<int64_t> inv_start;
        std::vector<Hit> hits;
        std::vector<Neighbours> nbs;
        alignas(64) float acc[kR][kW];
#pragma omp for schedule(dynamic, 1)
        for (int64_t c0 = 0; c0 < m_all; c0 += chunk) errors.run([&] {
            const int64_t m = std::min(chunk, m_all - c0);
            const int64_t* qrows = queries + c0;
            qx.resize(static_cast<size_t>(m * d));
            for (int64_t i = 0; i < m; ++i) std::copy_n(x + qrows[i] * d, d, qx.data() + i * d);
            pr.resize(static_cast<size_t>(m * probes));
            if (ranks)
                for (int64_t i = 0; i < m; ++i)
                    std::copy_n(ranks + (by_row ? qrows[i] : c0 + i) * probes, probes, pr.data() + i * probes);
            else
                rank_rows(qx.data(), m, d, cen, probes, pr.data(), sc);
            // invert: the chunk's queries of every list, ascending
            inv_start.assign(static_cast<size_t>(lists + 1), 0);
            for (int64_t p = 0; p < m * probes; ++p) ++inv_start[pr[p] + 1];
            for (int64_t l = 0; l < lists; ++l) inv_start[l + 1] += inv_start[l];
            inv.resize(static_cast<size_t>(m * probes));
            {
                std::vector<int64_t> fill(inv_start.begin(), inv_start.end() - 1);
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < probes; ++j) inv[fill[pr[i * probes + j]]++] = static_cast<int32_t>(i);
            }
            hits.resize(static_cast<size_t>(m * k));
            nbs.resize(static_cast<size_t>(m));
            for (int64_t i = 0; i < m; ++i) nbs[i] = {hits.data() + i * k, 0, 0};
            for (int64_t l = 0; l < lists; ++l) {
                const int64_t q0 = inv_start[l], q1 = inv_start[l + 1];
                for (int64_t t = q0; t < q1; t += kR) {
                    const int64_t rr = std::min(kR, q1 - t);
                    std::fill(qbuf.begin(), qbuf.end(), 0.0f);
                    for (int64_t r = 0; r < rr; ++r) std::copy_n(qx.data() + inv[t + r] * d, d, qbuf.data() + r * d);
                    for (int64_t b = pts.block_start[l]; b < pts.block_start[l + 1]; ++b) {
                        fn(qbuf.data(), d, pts.data.data() + b * d * kW, acc);
                        const int64_t* rows = pts.rows.data() + b * kW;
                        for (int64_t r = 0; r < rr; ++r) {
                            Neighbours& nb = nbs[inv[t + r]];
                            const int64_t self = qrows[inv[t + r]];
                            int64_t j = 0;
                            for (; j < kW && nb.count < k; ++j)  // filling: every point
                                if (rows[j] >= 0 && rows[j] != self) admit(nb, k, acc[r][j], rows[j]);
                            if (j == kW) continue;
                            // full: only the points at or above the k-th similarity can enter
                            // (admit breaks the ties; the kept set is the k best whatever the order)
                            for (uint32_t m = at_least(acc[r], nb.h[nb.worst].sim) >> j << j; m; m &= m - 1) {
                                const int c = __builtin_ctz(m);
                                if (rows[c] >= 0 && rows[c] != self) admit(nb, k, acc[r][c], rows[c]);
                            }
                        }
                    }
                }
            }
            for (int64_t i = 0; i < m; ++i) {
                Neighbours& nb = nbs[i];
                std::sort(nb.h, nb.h + nb.count);
                const int64_t row = by_row ? qrows[i] : c0 + i;  // where its result goes
                for (int64_t j = 0; j < k; ++j) {
                    indices[row * k + j] = j < nb.count ? nb.h[j].row : -1;
                    similarities[row * k + j] = j < nb.count ? nb.h[j].sim : 0.0f;
                }
            }
        });
    }
    errors.rethrow();
}

}  // namespace alscale
