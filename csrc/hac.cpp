#include "hac.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "common.hpp"
#include "isa.hpp"
#include "tiles.hpp"

namespace alscale {

// ------------------------------------------------------------------------- Z and flat labels

std::vector<double> linkage_from_merges(int64_t n, std::vector<Merge> merges) {
    const int64_t m = static_cast<int64_t>(merges.size());
    if (m != n - 1) throw std::logic_error("linkage needs n - 1 merges");
    // Heights non-decreasing from the leaves up, so that sorting keeps children before parents.
    std::vector<double> last(static_cast<size_t>(n), -kInf);
    for (auto& mg : merges) {
        mg.height = std::max({mg.height, last[mg.a], last[mg.b]});
        last[mg.into] = mg.height;
    }
    std::vector<int64_t> order(static_cast<size_t>(m));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t i, int64_t j) { return merges[i].height < merges[j].height; });
    // Union-find over the points; the root knows its cluster's scipy id and size.
    std::vector<int64_t> parent(static_cast<size_t>(n)), id(static_cast<size_t>(n)), size(static_cast<size_t>(n), 1);
    std::iota(parent.begin(), parent.end(), 0);
    std::iota(id.begin(), id.end(), 0);
    auto find = [&](int64_t v) {
        while (parent[v] != v) {
            parent[v] = parent[parent[v]];
            v = parent[v];
        }
        return v;
    };
    std::vector<double> z(static_cast<size_t>(4 * m));
    for (int64_t r = 0; r < m; ++r) {
        const Merge& mg = merges[order[r]];
        int64_t ra = find(mg.a), rb = find(mg.b);
        if (ra == rb) throw std::logic_error("merge of a cluster with itself");
        const int64_t ia = id[ra], ib = id[rb];
        z[4 * r] = static_cast<double>(std::min(ia, ib));
        z[4 * r + 1] = static_cast<double>(std::max(ia, ib));
        z[4 * r + 2] = mg.height;
        z[4 * r + 3] = static_cast<double>(size[ra] + size[rb]);
        if (size[ra] < size[rb]) std::swap(ra, rb);
        parent[rb] = ra;
        size[ra] += size[rb];
        id[ra] = n + r;
    }
    return z;
}

std::vector<int64_t> labels_from_linkage(const double* z, int64_t n, double threshold, int64_t n_clusters) {
    int64_t applied = 0;
    if (n_clusters >= 1) {
        if (n_clusters < n) {
            const double t = z[4 * (n - n_clusters - 1) + 2];
            applied = n - n_clusters;
            while (applied < n - 1 && z[4 * applied + 2] <= t) ++applied;
        }
    } else {
        while (applied < n - 1 && z[4 * applied + 2] <= threshold) ++applied;
    }
    // parent over the 2n-1 tree nodes; a node's root is its cluster at the cut.
    std::vector<int64_t> parent(static_cast<size_t>(2 * n - 1));
    std::iota(parent.begin(), parent.end(), 0);
    for (int64_t r = 0; r < applied; ++r) {
        parent[static_cast<int64_t>(z[4 * r])] = n + r;
        parent[static_cast<int64_t>(z[4 * r + 1])] = n + r;
    }
    auto find = [&](int64_t v) {
        int64_t root = v;
        while (parent[root] != root) root = parent[root];
        while (parent[v] != root) {
            const int64_t next = parent[v];
            parent[v] = root;
            v = next;
        }
        return root;
    };
    std::vector<int64_t> label_of(static_cast<size_t>(2 * n - 1), -1), labels(static_cast<size_t>(n));
    int64_t next = 0;
    for (int64_t p = 0; p < n; ++p) {
        const int64_t root = find(p);
        if (label_of[root] < 0) label_of[root] = next++;
        labels[p] = label_of[root];
    }
    return labels;
}

// ------------------------------------------------------------------------- distance matrix

namespace {

constexpr int64_t kJB = kTileCols;
constexpr int64_t kIB = kTileRows;

inline int64_t row_start(int64_t n, int64_t i) { return n * i - i * (i + 1) / 2 - i - 1; }  // + j

// One tile: rows i0..i0+kIB of x (rows past n repeat the last row; their results are unused)
// against the transposed block xt (d x kJB), into acc[kIB][kJB]. A 4 x 16 register block is
// accumulated over all d dimensions in order before it is stored.
template <int M>
ALSCALE_INLINE void tile(const float* x, int64_t n, int64_t d, int64_t i0, const float* xt, float (*acc)[kJB]) {
    const float* xr[kIB];
    for (int64_t r = 0; r < kIB; ++r) xr[r] = x + std::min(i0 + r, n - 1) * d;
    constexpr int64_t kW = 16;
    for (int64_t j0 = 0; j0 < kJB; j0 += kW) {
        float a[kIB][kW] = {};
        for (int64_t k = 0; k < d; ++k) {
            const float* col = xt + k * kJB + j0;
            for (int64_t r = 0; r < kIB; ++r) {
                const float v = xr[r][k];
                for (int64_t j = 0; j < kW; ++j) {
                    if (M == static_cast<int>(HacMetric::cosine)) {
                        a[r][j] += v * col[j];
                    } else {
                        const float t = v - col[j];
                        a[r][j] += t * t;
                    }
                }
            }
        }
        for (int64_t r = 0; r < kIB; ++r)
            for (int64_t j = 0; j < kW; ++j) acc[r][j0 + j] = a[r][j];
    }
}

// 1 - s clipped to [0, 2] as scipy clips the cosine; below 2^-18 it is float32 rounding of
// parallel (or equal) rows, whose distance is 0: taken as 0 so that they tie as in scipy.
ALSCALE_INLINE float cosine_distance(float s) {
    const float v = std::min(2.0f, std::max(0.0f, 1.0f - s));
    return v < 0x1p-18f ? 0.0f : v;
}

template <int M>
ALSCALE_INLINE void distance_rows(const float* x, const float* xt, int64_t n, int64_t d, int64_t i0, float* D) {
    alignas(64) float acc[kIB][kJB];
    const int64_t ib = std::min(kIB, n - i0);
    for (int64_t jb = ((i0 + 1) / kJB) * kJB; jb < n; jb += kJB) {
        tile<M>(x, n, d, i0, xt + (jb / kJB) * d * kJB, acc);
        for (int64_t r = 0; r < ib; ++r) {
            const int64_t i = i0 + r;
            const int64_t lo = std::max(i + 1, jb), hi = std::min(n, jb + kJB);
            float* out = D + row_start(n, i);
            for (int64_t j = lo; j < hi; ++j) {
                const float s = acc[r][j - jb];
                float v;
                if (M == static_cast<int>(HacMetric::cosine))
                    v = cosine_distance(s);
                else if (M == static_cast<int>(HacMetric::euclidean))
                    v = std::sqrt(s);
                else
                    v = s;
                out[j] = v;
            }
        }
    }
}

template <int M>
void distance_range_base(const float* x, const float* xt, int64_t n, int64_t d, int64_t i0, float* D) {
    distance_rows<M>(x, xt, n, d, i0, D);
}
template <int M>
ALSCALE_AVX2 void distance_range_avx2(const float* x, const float* xt, int64_t n, int64_t d, int64_t i0, float* D) {
    distance_rows<M>(x, xt, n, d, i0, D);
}

template <int M>
void condensed(const float* x, int64_t n, int64_t d, float* D, int threads) {
    const std::vector<float> xt = pack_transposed_blocks(x, n, d);
    const bool avx2 = use_avx2();
    const int64_t tiles = (n + kIB - 1) / kIB;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
    for (int64_t t = 0; t < tiles; ++t) {
        if (avx2)
            distance_range_avx2<M>(x, xt.data(), n, d, t * kIB, D);
        else
            distance_range_base<M>(x, xt.data(), n, d, t * kIB, D);
    }
}

// ------------------------------------------------------------------------- nearest-neighbour chain

struct Nearest {
    float dist;
    int64_t pos;  // position in the active list
};

// The active cluster nearest to x (smallest distance, then smallest index), over active[lo, hi).
inline Nearest nearest_in(const float* D, const int64_t* rs, const int32_t* active, int64_t lo, int64_t hi,
                          int64_t x) {
    Nearest best{std::numeric_limits<float>::infinity(), -1};
    int64_t p = lo;
    constexpr int64_t kAhead = 16;  // the column part is a gather: prefetch it
    for (; p < hi && active[p] < x; ++p) {
        if (p + kAhead < hi) __builtin_prefetch(D + rs[active[p + kAhead]] + x);
        const float v = D[rs[active[p]] + x];
        if (v < best.dist || best.pos < 0) best = {v, p};
    }
    if (p < hi && active[p] == x) ++p;
    const float* row = D + rs[x];
    for (; p < hi; ++p) {
        const float v = row[active[p]];
        if (v < best.dist || best.pos < 0) best = {v, p};
    }
    return best;
}

}  // namespace

std::vector<double> hac_average_exact(const float* x, int64_t n, int64_t d, HacMetric metric, int num_threads) {
    if (n < 2) throw std::invalid_argument("hierarchical clustering needs at least 2 points");
    const int threads = thread_count(num_threads);
    std::vector<float> D(static_cast<size_t>(n * (n - 1) / 2));
    switch (metric) {
        case HacMetric::euclidean:
            condensed<0>(x, n, d, D.data(), threads);
            break;
        case HacMetric::sqeuclidean:
            condensed<1>(x, n, d, D.data(), threads);
            break;
        case HacMetric::cosine:
            condensed<2>(x, n, d, D.data(), threads);
            break;
    }
    std::vector<int64_t> rs(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rs[i] = row_start(n, i);
    std::vector<int32_t> active(static_cast<size_t>(n));
    std::iota(active.begin(), active.end(), 0);
    std::vector<int64_t> size(static_cast<size_t>(n), 1);
    std::vector<int64_t> chain;
    chain.reserve(static_cast<size_t>(n));
    std::vector<Merge> merges;
    merges.reserve(static_cast<size_t>(n - 1));
    const float* Dc = D.data();

    // One thread from here: a step is O(n) memory-bound work, too little for a parallel region
    // per step (which costs milliseconds whenever another process holds a core).
    // scipy's nn_chain exactly: the chain starts at the first active cluster; the next link is the
    // nearest active cluster (ties: smallest index), the previous link kept unless strictly beaten.
    for (int64_t step = 0; step < n - 1; ++step) {
        if (chain.empty()) chain.push_back(active[0]);
        int64_t xc, y;
        float current;
        for (;;) {
            xc = chain.back();
            const int64_t m = static_cast<int64_t>(active.size());
            const Nearest best = nearest_in(Dc, rs.data(), active.data(), 0, m, xc);
            y = active[best.pos];
            current = best.dist;
            if (chain.size() > 1) {
                const int64_t prev = chain[chain.size() - 2];
                const float dprev = xc < prev ? Dc[rs[xc] + prev] : Dc[rs[prev] + xc];
                if (!(best.dist < dprev)) {
                    y = prev;
                    current = dprev;
                }
                if (y == prev) break;
            }
            chain.push_back(y);
        }
        chain.pop_back();
        chain.pop_back();
        int64_t a = xc, b = y;
        if (a > b) std::swap(a, b);
        const double na = static_cast<double>(size[a]), nb = static_cast<double>(size[b]);
        merges.push_back(Merge{a, b, b, static_cast<double>(current)});
        size[b] += size[a];
        size[a] = 0;
        active.erase(std::lower_bound(active.begin(), active.end(), static_cast<int32_t>(a)));
        // Lance-Williams: d(a u b, k) = (|a| d(a, k) + |b| d(b, k)) / (|a| + |b|), kept in slot b.
        const int64_t m = static_cast<int64_t>(active.size());
        const double total = na + nb;
        float* Dm = D.data();
        for (int64_t p = 0; p < m; ++p) {
            const int64_t k = active[p];
            if (p + 16 < m && active[p + 16] < b) {
                const int64_t f = active[p + 16];
                __builtin_prefetch(Dm + rs[f] + b, 1);
                if (f < a) __builtin_prefetch(Dm + rs[f] + a);
            }
            if (k == b) continue;
            float& dak = k < a ? Dm[rs[k] + a] : Dm[rs[a] + k];
            float& dbk = k < b ? Dm[rs[k] + b] : Dm[rs[b] + k];
            dbk = static_cast<float>((na * dak + nb * dbk) / total);
        }
    }
    return linkage_from_merges(n, std::move(merges));
}

}  // namespace alscale
