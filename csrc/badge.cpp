#include "badge.hpp"

#include <cmath>
#include <limits>

#include "isa.hpp"
#include "lanedot.hpp"

namespace alscale {
namespace {

// Rows [begin, end): a = float32(softmax - onehot(argmax)) and g2 = ||a||² ||z||².
// Returns the first row with a non-finite logit, or end.
template <class T, int B>
ALSCALE_INLINE int64_t badge_prepare_rows(RowReader<double>& read, std::vector<double>& e, const T* const& z,
                                          const int64_t& d, float* const& a, double* const& g2,
                                          const int64_t& begin, const int64_t& end) {
    const int64_t C = static_cast<int64_t>(e.size());
    for (int64_t i = begin; i < end; ++i) {
        const double* l = read(i);
        double m = l[0];
        int64_t arg = 0;
        for (int64_t c = 0; c < C; ++c) {
            if (!std::isfinite(l[c])) return i;
            if (l[c] > m) {
                m = l[c];
                arg = c;
            }
        }
        double s = 0.0;
        for (int64_t c = 0; c < C; ++c) {
            e[c] = std::exp(l[c] - m);
            s += e[c];
        }
        float* ai = a + i * C;
        for (int64_t c = 0; c < C; ++c) ai[c] = static_cast<float>(e[c] / s - (c == arg ? 1.0 : 0.0));
        g2[i] = lane_dot(ai, ai, C) * lane_dot(z + i * d, z + i * d, d);
    }
    return end;
}
ALSCALE_MULTIVERSION(badge_prepare_rows)

// Rows [begin, end): lowers each eligible row's distance with the new center c.
template <class T, int B>
ALSCALE_INLINE int64_t badge_update_rows(const float* const& a, const int64_t& C, const T* const& z,
                                         const int64_t& d, const double* const& g2, const uint8_t* const& eligible,
                                         double* const& mind, const int64_t& c, const int64_t& begin,
                                         const int64_t& end) {
    const float* ac = a + c * C;
    const T* zc = z + c * d;
    for (int64_t i = begin; i < end; ++i) {
        if (!eligible[i]) continue;
        const double aa = lane_dot(a + i * C, ac, C);
        const double zz = lane_dot(z + i * d, zc, d);
        double dist = (g2[i] + g2[c]) - 2.0 * (aa * zz);
        if (!(dist > 0.0)) dist = 0.0;
        if (dist < mind[i]) mind[i] = dist;
    }
    return end;
}
ALSCALE_MULTIVERSION(badge_update_rows)

}  // namespace

template <class T>
std::vector<int64_t> select_badge(const Matrix& logits, const T* z, int64_t d, const uint8_t* exclude,
                                  int64_t budget, const double* uniforms, int num_threads) {
    std::vector<int64_t> out;
    const int64_t n = logits.rows, C = logits.cols;
    if (n <= 0) return out;
    std::vector<float> a(static_cast<size_t>(n * C));
    std::vector<double> g2(static_cast<size_t>(n));
    const int threads = row_threads(num_threads, n);
    float* const ap = a.data();
    double* const gp = g2.data();
    parallel_rows(
        n, threads,
        [&](int) { return std::make_pair(RowReader<double>(logits), std::vector<double>(static_cast<size_t>(C))); },
        [&](std::pair<RowReader<double>, std::vector<double>>& ctx, int64_t begin, int64_t end) {
            return badge_prepare_rows_dispatch<T>(ctx.first, ctx.second, z, d, ap, gp, begin, end);
        },
        [](std::pair<RowReader<double>, std::vector<double>>&, int) {});
    if (budget <= 0) return out;

    std::vector<uint8_t> eligible(static_cast<size_t>(n), 1);
    if (exclude)
        for (int64_t i = 0; i < n; ++i) eligible[i] = exclude[i] ? 0 : 1;
    // First pick: the largest gradient norm.
    int64_t pick = -1;
    for (int64_t i = 0; i < n; ++i)
        if (eligible[i] && (pick < 0 || g2[i] > g2[pick])) pick = i;
    std::vector<double> mind(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
    const uint8_t* const el = eligible.data();
    double* const mp = mind.data();
    out.reserve(static_cast<size_t>(budget));
    while (pick >= 0) {
        out.push_back(pick);
        eligible[pick] = 0;
        if (static_cast<int64_t>(out.size()) == budget) break;
        const int64_t c = pick;
#pragma omp parallel num_threads(threads)
        {
            const auto range = split_range(n, threads, thread_id());
            badge_update_rows_dispatch<T>(ap, C, z, d, gp, el, mp, c, range.first, range.second);
        }
        // D² sampling: inverse CDF over the row order, in float64 (sequential: exact).
        double total = 0.0;
        int64_t first = -1, last_positive = -1;
        for (int64_t i = 0; i < n; ++i) {
            if (!eligible[i]) continue;
            if (first < 0) first = i;
            total += mind[i];
            if (mind[i] > 0.0) last_positive = i;
        }
        if (first < 0) break;  // nothing left
        if (!(total > 0.0)) {
            pick = first;
            continue;
        }
        const double target = uniforms[out.size()] * total;
        double cum = 0.0;
        pick = last_positive;
        for (int64_t i = 0; i < n; ++i) {
            if (!eligible[i]) continue;
            cum += mind[i];
            if (cum > target) {
                pick = i;
                break;
            }
        }
    }
    return out;
}

template std::vector<int64_t> select_badge<float>(const Matrix&, const float*, int64_t, const uint8_t*, int64_t,
                                                  const double*, int);
template std::vector<int64_t> select_badge<double>(const Matrix&, const double*, int64_t, const uint8_t*, int64_t,
                                                   const double*, int);

}  // namespace alscale
