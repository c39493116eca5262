#include "head.hpp"

#include <cstring>

#include "isa.hpp"

namespace alscale {
namespace {

constexpr int64_t kTile = 32;  // rows of a tile: 2 x 32 rows of D doubles stay in L2

// A bfloat16 <= v (v > 0 or +inf), as its bits: the largest, or 0 below float's normal range.
inline uint16_t bf16_below(double v) {
    float f = static_cast<float>(v);
    if (static_cast<double>(f) > v) f = std::nextafter(f, 0.0f);
    if (f < std::numeric_limits<float>::min()) return 0;
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return static_cast<uint16_t>(bits >> 16);  // truncation: toward zero
}

constexpr int64_t kChunk = 256;  // doubles of a row per pass of a register block (2 KB)

// lane_dot of MR rows a[i] with NR rows b[k] over elements [j0, j1) of d (j0 a multiple of 8),
// as MR x NR independent dot products in one register block: every row vector loaded once per
// block, not once per pair. Each pair keeps lane_dot's 8 lane sums (element j in lane j % 8, in
// order), carried from one chunk to the next in `acc` (loaded and stored whole: the same
// additions in the same order), so once all chunks are done combine_lanes gives lane_dot's bits.
// A short last block (j1 = d not a multiple of 8) is zero padded: + 0 * 0 = +0 leaves a lane sum
// unchanged (a sum started at +0 is never -0).
template <int B, int MR, int NR>
ALSCALE_INLINE void dot_chunk(const double* const* a, const double* const* b, int64_t j0, int64_t j1, int64_t d,
                              double* acc_io) {
    typedef double V __attribute__((vector_size(B)));
    constexpr int W = B / 8, P = 8 / W;  // doubles per native vector, vectors per 8 lanes
    V acc[MR][NR][P];
    std::memcpy(acc, acc_io, sizeof acc);
    auto step = [&](const double* const* pa, const double* const* pb, int64_t j) __attribute__((always_inline)) {
        for (int h = 0; h < P; ++h) {
            V va[MR], vb[NR];
            for (int i = 0; i < MR; ++i) std::memcpy(&va[i], pa[i] + j + h * W, sizeof(V));
            for (int k = 0; k < NR; ++k) std::memcpy(&vb[k], pb[k] + j + h * W, sizeof(V));
            for (int i = 0; i < MR; ++i)
                for (int k = 0; k < NR; ++k) acc[i][k][h] += va[i] * vb[k];
        }
    };
    int64_t j = j0;
    const int64_t full = std::min(j1, d - d % 8);
    for (; j + 8 <= full; j += 8) step(a, b, j);
    if (j1 == d && j < d) {
        double ta[MR][8], tb[NR][8];
        const double* pa[MR];
        const double* pb[NR];
        for (int i = 0; i < MR; ++i) {
            for (int l = 0; l < 8; ++l) ta[i][l] = j + l < d ? a[i][j + l] : 0.0;
            pa[i] = ta[i];
        }
        for (int k = 0; k < NR; ++k) {
            for (int l = 0; l < 8; ++l) tb[k][l] = j + l < d ? b[k][j + l] : 0.0;
            pb[k] = tb[k];
        }
        step(pa, pb, 0);
    }
    std::memcpy(acc_io, acc, sizeof acc);
}

// The upper-triangle entries of the tile (rows [p0, p1) x [c0, c1), c > p) and their mirror, as
// float64 (out) or as bfloat16 lower bounds (lower), in register blocks of MR x NR pairs (B = 64:
// 4 x 4, sixteen 8-double accumulators; else 2 x 2). For each MR rows, the row length is taken in
// chunks of kChunk, every register block of the tile's columns in turn within a chunk, so the MR
// rows' chunk stays in L1 (whole rows of 16 KB, for D = 2048, would come from L2 block by block).
template <class T, int B>
ALSCALE_INLINE int64_t norm_tile(const double* const& w, const int64_t& d, const double* const& diag,
                                 double* const& out, uint16_t* const& lower, const int64_t& C, const int64_t& p0,
                                 const int64_t& p1, const int64_t& c0, const int64_t& c1) {
    constexpr int MR = B == 64 ? 4 : 2, NR = B == 64 ? 4 : 2;
    constexpr int64_t kBlocks = (kTile + NR - 1) / NR;
    constexpr size_t kAcc = static_cast<size_t>(MR * NR * 8);  // doubles of a block's lane sums
    alignas(64) double acc[kBlocks * kAcc];
    for (int64_t p = p0; p < p1; p += MR) {
        const int64_t first = std::max(c0, p + 1);
        if (first >= c1) continue;
        const int64_t blocks = (c1 - first + NR - 1) / NR;
        const double* a[MR];
        for (int i = 0; i < MR; ++i) a[i] = w + std::min(p + i, p1 - 1) * d;
        std::fill(acc, acc + blocks * kAcc, 0.0);
        for (int64_t j0 = 0; j0 < d; j0 += kChunk) {
            const int64_t j1 = std::min(d, j0 + kChunk);
            for (int64_t q = 0; q < blocks; ++q) {
                const int64_t c = first + q * NR;
                const double* b[NR];
                for (int k = 0; k < NR; ++k) b[k] = w + std::min(c + k, c1 - 1) * d;
                dot_chunk<B, MR, NR>(a, b, j0, j1, d, acc + q * kAcc);
            }
        }
        for (int64_t q = 0; q < blocks; ++q) {
            const int64_t c = first + q * NR;
            for (int i = 0; i < MR && p + i < p1; ++i)
                for (int k = 0; k < NR && c + k < c1; ++k) {
                    const int64_t pi = p + i, ck = c + k;
                    if (ck <= pi) continue;
                    // lanes of pair (i, k): acc[i][k][h][slot] = lane h * W + slot
                    const double* lanes = acc + q * kAcc + static_cast<size_t>((i * NR + k) * 8);
                    const double v = inverse_norm_of_dot(combine_lanes(lanes), a[i], w + ck * d, d, diag[pi], diag[ck]);
                    if (out) {
                        out[pi * C + ck] = v;
                        out[ck * C + pi] = v;
                    } else {
                        lower[pi * C + ck] = lower[ck * C + pi] = bf16_below(v);
                    }
                }
        }
    }
    return 0;
}
ALSCALE_MULTIVERSION3(norm_tile)

template <class T, int B>
ALSCALE_INLINE int64_t diag_rows(const double* const& w, const int64_t& d, double* const& diag,
                                 const int64_t& begin, const int64_t& end) {
    for (int64_t p = begin; p < end; ++p) diag[p] = lane_dot(w + p * d, w + p * d, d);
    return 0;
}
ALSCALE_MULTIVERSION(diag_rows)

// Fills out (or lower) tile by tile, in parallel; the diagonal is left to the caller.
void fill_pairs(const double* w, int64_t C, int64_t d, const double* diag, double* out, uint16_t* lower,
                int num_threads) {
    const int threads = thread_count(num_threads);
    const int64_t tiles = (C + kTile - 1) / kTile;
    const int64_t pairs = tiles * (tiles + 1) / 2;  // tiles (a, b) with a <= b
    ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t t = 0; t < pairs; ++t) {
        errors.run([&] {
            int64_t a = 0, rest = t;  // the t-th pair (a, b), a <= b, in row-major order
            while (rest >= tiles - a) rest -= tiles - a++;
            const int64_t b = a + rest;
            const int64_t p0 = a * kTile, p1 = std::min(C, p0 + kTile);
            const int64_t c0 = b * kTile, c1 = std::min(C, c0 + kTile);
            norm_tile_dispatch3<double>(w, d, diag, out, lower, C, p0, p1, c0, c1);
        });
    }
    errors.rethrow();
}

std::vector<double> diagonal(const double* w, int64_t C, int64_t d) {
    std::vector<double> diag(static_cast<size_t>(C));
    double* g = diag.data();
    const int64_t zero = 0;
    diag_rows_dispatch<double>(w, d, g, zero, C);
    return diag;
}

}  // namespace

void inverse_norms(const double* w, int64_t C, int64_t d, double* out, int num_threads) {
    const std::vector<double> diag = diagonal(w, C, d);
    fill_pairs(w, C, d, diag.data(), out, nullptr, num_threads);
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t p = 0; p < C; ++p) out[p * C + p] = inf;
}

PairNorms::PairNorms(const double* w, int64_t classes, int64_t dims, int num_threads)
    : C_(classes), D_(dims), w_(w, w + classes * dims), diag_(diagonal(w, classes, dims)),
      lower_(static_cast<size_t>(classes * classes)) {
    fill_pairs(w_.data(), C_, D_, diag_.data(), nullptr, lower_.data(), num_threads);
    const uint16_t inf = bf16_below(std::numeric_limits<double>::infinity());
    for (int64_t p = 0; p < C_; ++p) lower_[static_cast<size_t>(p * C_ + p)] = inf;
}

void PairNorms::lower_row(int64_t p, double* out) const {
    const uint16_t* row = lower_.data() + p * C_;
    for (int64_t c = 0; c < C_; ++c) {
        const uint32_t bits = static_cast<uint32_t>(row[c]) << 16;
        float f;
        std::memcpy(&f, &bits, sizeof f);
        out[c] = f;
    }
}

}  // namespace alscale
