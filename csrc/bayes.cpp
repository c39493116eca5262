
#include "bayes.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "isa.hpp"
#include "rowmath.hpp"

namespace alscale {
namespace {

// Why a sample row was refused (code 0: it was not).
struct RowFault {
    int code = 0;  // 1 NaN/inf, 2 negative probability, 3 not normalised
    int64_t cls = 0;
    double value = 0;
};

// A sample row's 64-bit fingerprint (of its values' bits as T): a streaming state compares
// each sample's rows with the first sample's by it, so that it needs no copy of that sample.
// Eight independent multiply-xorshift chains over the classes c = j (mod 8), then one chain over
// the eight: order-sensitive (a swap of two classes changes it), a multiply per value without a
// dependency between neighbours. A row is hashed for the first sample and then only while it
// still equals it: for a stochastic model, twice per row whatever T.
template <class T>
uint64_t row_hash(const T* x, int64_t n) {
    constexpr uint64_t kMul = 0xbf58476d1ce4e5b9ull;
    uint64_t lane[8];
    for (int j = 0; j < 8; ++j) lane[j] = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(j + 1);
    auto step = [](uint64_t h, T value) {
        uint64_t b = 0;
        std::memcpy(&b, &value, sizeof value);
        h = (h ^ b) * kMul;
        return h ^ (h >> 29);
    };
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int j = 0; j < 8; ++j) lane[j] = step(lane[j], x[c + j]);
    for (int j = 0; c + j < n; ++j) lane[j] = step(lane[j], x[c + j]);
    uint64_t h = static_cast<uint64_t>(n);
    for (int j = 0; j < 8; ++j) {
        h = (h ^ lane[j]) * kMul;
        h ^= h >> 31;
    }
    return h;
}

// Whether two sample rows hold the same values, bit for bit (as row_hash tells them apart).
template <class T>
ALSCALE_INLINE bool same_row(const T* a, const T* b, int64_t n) {
    return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(T)) == 0;
}

// ---- The logits kernel's vectors: a block is 64 bytes of T (16 floats, 8 doubles: one cache
// line), element c of a row in logical lane c % L; a lane takes its elements in order and the L
// lanes are combined by lane_sum's fixed tree, so every instruction set (B = 16, 32, 64 bytes)
// computes the same bits: P native vectors of W values per block.
template <class T, int B>
struct McVec {
    using V = vec<T, B>;
    using I = ivec<T, B>;
    static constexpr int W = kWidth<T, B>;
    static constexpr int L = 64 / static_cast<int>(sizeof(T));
    static constexpr int P = L / W;
};

// l[0] + ... + l[L-1] in a fixed tree: l[j] += l[j + h] for h = L/2, L/4, ..., 1.
template <class T, int L>
ALSCALE_INLINE T lane_sum(T* l) {
    for (int h = L / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; ++j) l[j] = add(l[j], l[j + h]);
    return l[0];
}

// Where the next row to be read lies, pulled into the cache one 64-byte line per block while
// the current row's exp pass (compute-bound) runs: the rows of a sample are 4 KB apart at C = 1000,
// and the hardware prefetcher stops at every page. Only for unit-stride rows of 8 bytes or fewer per value.
struct Ahead {
    const char* p = nullptr;  // the values
    int64_t bytes = 0;        // per value
    const char* acc = nullptr;  // the sums the row will be added to (read and written), if any
    int64_t acc_bytes = 0;
    ALSCALE_INLINE void at(int64_t c) const {
        if (p) __builtin_prefetch(p + c * bytes, 0, 3);
        if (acc) __builtin_prefetch(acc + c * acc_bytes, 1, 3);
    }
};
// How many rows ahead of the one being softmaxed the prefetches reach when the next row is read
// alongside (that row must be in the cache by then: a row's 63 lines at C = 1000 take several of
// the line-fill buffers' waves of a memory latency each). Measured at C = 1000: 1.33 ns per value
// (1 ahead), 0.77 (2), 0.68-0.72 (3 to 12, flat from 3).
constexpr int64_t kAhead = 4;
// The same for a streaming state's pass, which also reads and writes the rows' sums (12 bytes per
// value to the fused pass's 4): 0.95 ns per value with 2 rows ahead, 1.16 with 4.
constexpr int64_t kAheadState = 2;

inline Ahead ahead(const Matrix& m, int64_t i) {
    if (i >= m.rows || m.col_stride <= 0 || m.col_stride > 8) return {};
    return Ahead{m.data + i * m.row_stride, m.col_stride};
}

// A row's maximum and whether it is finite (its maximum and minimum are; a NaN that the
// compares pass over makes the softmax sum NaN, which add_logits_row checks). known: computed
// already (by the previous row's exp pass, which reads this row alongside).
template <class T>
struct RowTop {
    T mx = T(0);
    bool finite = false;
    bool narrow = false;  // finite, and max - min too: no gap x - max is -inf, none needs clamping
    bool known = false;
};

// NV independent compare-select chains of a row's maximum and minimum: order-free, so the same
// values whatever the vector width and the order of the steps (+-0 made +0 by row_max_lanes).
template <class T, int B, int NV>
struct MaxMin {
    using V = typename McVec<T, B>::V;
    V hi[NV], lo[NV];
    explicit ALSCALE_INLINE MaxMin(T first) {
        for (int v = 0; v < NV; ++v) hi[v] = lo[v] = splat<V>(first);
    }
    ALSCALE_INLINE void step(int v, V b) {
        hi[v] = b > hi[v] ? b : hi[v];
        lo[v] = b < lo[v] ? b : lo[v];
    }
    // Values x[c .. c + W) with those past n taken as x[0] (which changes neither).
    ALSCALE_INLINE void tail(int v, const T* x, int64_t c, int64_t n) {
        constexpr int W = McVec<T, B>::W;
        T tmp[W];
        for (int j = 0; j < W; ++j) tmp[j] = c + j < n ? x[c + j] : x[0];
        step(v, load<T, B>(tmp));
    }
    ALSCALE_INLINE RowTop<T> top() {
        for (int v = 1; v < NV; ++v) {
            hi[0] = hi[v] > hi[0] ? hi[v] : hi[0];
            lo[0] = lo[v] < lo[0] ? lo[v] : lo[0];
        }
        T h = hi[0][0], l = lo[0][0];
        for (int j = 1; j < McVec<T, B>::W; ++j) {
            h = hi[0][j] > h ? hi[0][j] : h;
            l = lo[0][j] < l ? lo[0][j] : l;
        }
        const T inf = std::numeric_limits<T>::infinity();
        const bool finite = (h < inf) && (l > -inf);  // not for a NaN max or min either
        return {h, finite, finite && sub(h, l) < inf, true};
    }
};

// A row's RowTop in its own pass (four chains: the pass is load-bound).
template <class T, int B>
ALSCALE_INLINE RowTop<T> row_top(const T* x, int64_t n) {
    constexpr int W = McVec<T, B>::W, NV = 4;
    MaxMin<T, B, NV> mm(x[0]);
    int64_t c = 0;
    for (; c + NV * W <= n; c += NV * W)
        for (int v = 0; v < NV; ++v) mm.step(v, load<T, B>(x + c + v * W));
    for (; c + W <= n; c += W) mm.step(0, load<T, B>(x + c));
    if (c < n) mm.tail(0, x, c, n);
    return mm.top();
}

// e[c] = exp(x[c] - mx) for a row with maximum mx (e holds the row rounded up to whole blocks,
// the padding 0), s = sum e, u = sum e (x - mx), in the L lanes (gaps below -1e30 clamped: their
// exp is 0 either way, and -inf would make 0 * gap NaN; Clamp false for a row whose max - min is
// finite, where the clamp would change nothing: e = 0 and 0 * gap = -0 either way, the same
// bits for two vector operations less). Peek: also reads the next row nx (of
// the same length) and returns its RowTop in *peek, so that its own max pass is not needed;
// `next`: what to prefetch meanwhile.
template <class T, int B, bool Peek, bool Clamp>
ALSCALE_INLINE void exp_row(const T* x, int64_t n, T mx, T* e, T& s_out, T& u_out, const Ahead& next,
                            const T* nx, RowTop<T>* peek) {
    using M = McVec<T, B>;
    using V = typename M::V;
    constexpr int W = M::W, L = M::L, P = M::P;
    const V vmx = row_max_lanes<V>(mx);
    const V lo = splat<V>(T(-1e30));
    V s[P], u[P];
    for (int k = 0; k < P; ++k) s[k] = u[k] = splat<V>(T(0));
    MaxMin<T, B, P> mm(Peek ? nx[0] : T(0));
    auto block = [&](const T* p, T* out, bool clamp) __attribute__((always_inline)) {
        for (int k = 0; k < P; ++k) {
            V d = sub(load<T, B>(p + k * W), vmx);
            if (clamp) d = d < lo ? lo : d;  // else no d is below -1e30 but the tail's padding
            const V ev = exp_nonpos<T, V, typename M::I>(d);
            s[k] = add(s[k], ev);
            u[k] = add(u[k], mul(ev, d));
            std::memcpy(out + k * W, &ev, sizeof ev);
        }
    };
    int64_t c = 0;
    for (; c + L <= n; c += L) {
        next.at(c);
        if (Peek)
            for (int k = 0; k < P; ++k) mm.step(k, load<T, B>(nx + c + k * W));
        block(x + c, e + c, Clamp);
    }
    if (c < n) {
        next.at(c);
        if (Peek)
            for (int k = 0; k < P && c + k * W < n; ++k) mm.tail(k, nx, c + k * W, n);
        T tail[L];
        for (int j = 0; j < L; ++j) tail[j] = c + j < n ? x[c + j] : -std::numeric_limits<T>::infinity();
        block(tail, e + c, true);
    }
    if (Peek) *peek = mm.top();
    T ls[L], lu[L];
    for (int j = 0; j < L; ++j) {
        ls[j] = s[j / W][j % W];
        lu[j] = u[j / W][j % W];
    }
    s_out = lane_sum<T, L>(ls);
    u_out = lane_sum<T, L>(lu);
}

// acc[c] = acc[c] + e[c] * inv (First: acc[c] = e[c] * inv, the same value as 0 + e[c] * inv,
// for p >= 0), c < n; the next row's sums are pulled in meanwhile (`next`).
template <class T, int B, bool First>
ALSCALE_INLINE void add_scaled(T* acc, const T* e, int64_t n, T inv) {
    using V = typename McVec<T, B>::V;
    constexpr int W = McVec<T, B>::W;
    const V vi = splat<V>(inv);
    int64_t c = 0;
    for (; c + W <= n; c += W) {
        V a = mul(load<T, B>(e + c), vi);
        if (!First) a = add(load<T, B>(acc + c), a);
        std::memcpy(acc + c, &a, sizeof a);
    }
    for (; c < n; ++c) acc[c] = First ? mul(e[c], inv) : add(acc[c], mul(e[c], inv));
}

// log(x) of float vectors for finite x >= FLT_MIN: Cephes' logf (x = m 2^k with m in
// [sqrt(1/2), sqrt(2)), a polynomial in m - 1), within 2 ulp; the same operations on every
// instruction set, so the same bits.
template <class V, class I>
ALSCALE_INLINE V log_pos(V x) {
    const I bits = bit_cast<I>(x);
    const V m = bit_cast<V>((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
    const I small = m < 0.70710678118654752440f;                // -1 (true) or 0
    const I k = ((bits >> 23) - 126) + small;
    const V f = sub(small ? add(m, m) : m, 1.0f);  // exact either way
    const V z = mul(f, f);
    V y = splat<V>(7.0376836292e-2f);
    y = add(mul(y, f), -1.1514610310e-1f);
    y = add(mul(y, f), 1.1676998740e-1f);
    y = add(mul(y, f), -1.2420140846e-1f);
    y = add(mul(y, f), 1.4249322787e-1f);
    y = add(mul(y, f), -1.6668057665e-1f);
    y = add(mul(y, f), 2.0000714765e-1f);
    y = add(mul(y, f), -2.4999993993e-1f);
    y = add(mul(y, f), 3.3333331174e-1f);
    y = mul(mul(y, f), z);
    const V kf = __builtin_convertvector(k, V);
    y = add(y, mul(kf, -2.12194440e-4f));
    y = sub(y, mul(z, 0.5f));
    return add(add(f, y), mul(kf, 0.693359375f));
}

// One logits row into the sums (First: the row's first sample, whose values are written, not
// added): acc += softmax(x), h += H[softmax(x)] = log(s) - u / s with s = sum exp(x - max),
// u = sum exp(x - max) (x - max). e: a row of scratch in whole blocks. top: this row's RowTop if
// known, and on return the next row's when nx (that row) is given. 0, or 1 for NaN/inf.
template <class T, int B, bool First>
ALSCALE_INLINE int add_logits_row(const T* x, int64_t n, T* e, T* acc, double& h, const Ahead& next,
                                  RowTop<T>& top, const T* nx) {
    if (!top.known) top = row_top<T, B>(x, n);
    if (!top.finite) return 1;
    T s, u;
    if (nx) {
        if (top.narrow)
            exp_row<T, B, true, false>(x, n, top.mx, e, s, u, next, nx, &top);
        else
            exp_row<T, B, true, true>(x, n, top.mx, e, s, u, next, nx, &top);
    } else {
        if (top.narrow)
            exp_row<T, B, false, false>(x, n, top.mx, e, s, u, next, nullptr, nullptr);
        else
            exp_row<T, B, false, true>(x, n, top.mx, e, s, u, next, nullptr, nullptr);
        top.known = false;
    }
    if (!(s == s)) return 1;  // a NaN that the max's compares passed over
    add_scaled<T, B, First>(acc, e, n, div(T(1), s));
    h += static_cast<double>(sub(static_cast<T>(std::log(s)), div(u, s)));
    return 0;
}

// One probabilities row into the sums (acc += p, First: acc = p; h += -sum p log p), after
// checking it: finite, >= 0, summing to 1 within kSumTolerance. Returns 0 or the fault's code.
template <class T, bool First>
ALSCALE_INLINE int add_probability_row(const T* x, int64_t n, T* acc, double& h, RowFault& fault) {
    bool ok = true;
    for (int64_t c = 0; c < n; ++c) ok &= (x[c] >= T(0)) & (x[c] <= T(1) + T(kSumTolerance));
    if (!ok) {
        for (int64_t c = 0; c < n; ++c) {
            const T v = x[c];
            if (!std::isfinite(v) || v < T(0)) {
                fault = {std::isfinite(v) ? 2 : 1, c, static_cast<double>(v)};
                return fault.code;
            }
        }
    }
    T lanes[kLanes] = {};
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes)
        for (int j = 0; j < kLanes; ++j) lanes[j] = add(lanes[j], x[c + j]);
    for (int j = 0; c + j < n; ++j) lanes[j] = add(lanes[j], x[c + j]);
    const double total = static_cast<double>(sum_lanes(lanes));
    if (!(std::fabs(total - 1.0) <= kSumTolerance)) {
        fault = {3, 0, total};
        return 3;
    }
    T ent = T(0);
    for (int64_t k = 0; k < n; ++k) {
        const T v = x[k];
        if (v > T(0)) ent = sub(ent, mul(v, static_cast<T>(std::log(v))));
        acc[k] = First ? add(T(0), v) : add(acc[k], v);
    }
    h += static_cast<double>(ent);
    return 0;
}

template <class T, int B, bool First>
ALSCALE_INLINE int add_row(const T* x, int64_t n, bool probabilities, T* e, T* acc, double& h, RowFault& fault,
                           const Ahead& next, RowTop<T>& top, const T* nx) {
    if (probabilities) return add_probability_row<T, First>(x, n, acc, h, fault);
    const int code = add_logits_row<T, B, First>(x, n, e, acc, h, next, top, nx);
    if (code) fault = {code, 0, 0.0};
    return code;
}

// -sum q log q of q = acc * inv: for float, q log q in float vectors (log_pos; q below FLT_MIN
// taken at FLT_MIN, so 0 gives 0) summed in 16 float64 lanes; for double, in order with std::log.
template <class T, int B>
ALSCALE_INLINE double entropy_of_mean(const T* acc, int64_t n, T inv) {
    if constexpr (std::is_same<T, float>::value) {
        using M = McVec<T, B>;
        using V = typename M::V;
        constexpr int W = M::W, L = M::L, P = M::P;
        const V vi = splat<V>(inv), tiny = splat<V>(std::numeric_limits<float>::min());
        double lanes[L] = {};
        auto block = [&](const T* p) __attribute__((always_inline)) {
            T terms[L];
            for (int k = 0; k < P; ++k) {
                const V q = mul(load<T, B>(p + k * W), vi);
                const V v = mul(q, log_pos<V, typename M::I>(q < tiny ? tiny : q));
                std::memcpy(terms + k * W, &v, sizeof v);
            }
            for (int j = 0; j < L; ++j) lanes[j] += static_cast<double>(terms[j]);
        };
        int64_t c = 0;
        for (; c + L <= n; c += L) block(acc + c);
        if (c < n) {
            T tail[L];
            for (int j = 0; j < L; ++j) tail[j] = c + j < n ? acc[c + j] : T(0);
            block(tail);
        }
        return 0.0 - lane_sum<double, L>(lanes);
    } else {
        double ent = 0.0;
        for (int64_t c = 0; c < n; ++c) {
            const T q = acc[c] * inv;
            if (q > T(0)) ent -= static_cast<double>(q * std::log(q));
        }
        return ent;
    }
}

// A row's score from its sums over `count` samples: q = acc * (1 / count) in the state's
// precision (float or double). `same`: every sample of the row is the same, bit for bit (always
// so for one sample): its BALD is then exactly 0, not rounding noise.
template <class T, int B>
ALSCALE_INLINE double score_row(const T* acc, int64_t n, int64_t count, double h, McScore kind, bool same) {
    const double k = static_cast<double>(count);
    if (kind == McScore::expected_entropy) return h / k;
    if (kind == McScore::bald && same) return 0.0;
    const T inv = T(1) / static_cast<T>(count);
    if (kind == McScore::margin || kind == McScore::confidence) {
        double top1 = -1.0, top2 = 0.0;
        for (int64_t c = 0; c < n; ++c) {
            const double q = static_cast<double>(acc[c] * inv);
            if (q > top1) {
                top2 = top1;
                top1 = q;
            } else if (q > top2) {
                top2 = q;
            }
        }
        if (top2 < 0.0) top2 = 0.0;  // one class
        return kind == McScore::margin ? top1 - top2 : top1;
    }
    const double ent = entropy_of_mean<T, B>(acc, n, inv);
    if (kind == McScore::entropy) return ent;
    const double mi = ent - h / k;
    return mi > 0.0 ? mi : 0.0;
}

// Per-thread scratch of a row rounded up to whole 64-byte blocks, 64-byte aligned.
template <class T>
class RowBuffer {
public:
    void resize(int64_t n) {
        const int64_t per = 64 / static_cast<int64_t>(sizeof(T));
        store_.assign(static_cast<size_t>((n + per - 1) / per * per + per), T(0));
        const auto at = reinterpret_cast<uintptr_t>(store_.data());
        data_ = store_.data() + ((64 - at % 64) % 64) / sizeof(T);
    }
    T* data() { return data_; }

private:
    std::vector<T> store_;
    T* data_ = nullptr;
};

template <class T>
struct Work {
    std::vector<RowReader<T>> read;  // one per sample
    RowBuffer<T> e, acc;
    RowFault fault;
    int64_t sample = 0;  // the sample of the fault
};

// The rows of m as pointers to its values, when they are stored as T with unit stride (then a
// row's exp pass can read the next row alongside, taking its maximum); else nullptr.
template <class T>
struct Direct {
    const char* data = nullptr;
    int64_t stride = 0;
    explicit Direct(const Matrix& m) {
        if (m.col_stride == static_cast<int64_t>(sizeof(T)) &&
            (std::is_same<T, float>::value ? m.dtype == DType::f32 : m.dtype == DType::f64)) {
            data = m.data;
            stride = m.row_stride;
        }
    }
    ALSCALE_INLINE const T* row(int64_t i) const { return reinterpret_cast<const T*>(data + i * stride); }
};

// Rows [begin, end) of one sample into the state's sums (First: the first sample, written), and
// whether each row still equals the first sample's (by fingerprint); the first bad row, or end.
// While a row is softmaxed the next row's values are read alongside (or prefetched, when not
// stored as T) and its sums prefetched.
template <class T, int B, bool First>
ALSCALE_INLINE int64_t add_rows(Work<T>& w, const Matrix& m, T* acc, double* ent, uint64_t* hash, uint8_t* same,
                                int64_t n, bool probs, int64_t begin, int64_t end) {
    const Direct<T> direct(m);
    const bool peek = direct.data && !probs;
    RowTop<T> top;
    for (int64_t i = begin; i < end; ++i) {
        const T* x = peek ? direct.row(i) : w.read[0](i);
        Ahead next;
        const T* nx = nullptr;
        if (i + 1 < end) {
            if (peek) {
                nx = direct.row(i + 1);
                if (i + kAheadState < end) next = ahead(m, i + kAheadState);
            } else {
                next = ahead(m, i + 1);
            }
            const int64_t ai = peek && i + kAheadState < end ? i + kAheadState : i + 1;
            next.acc = reinterpret_cast<const char*>(acc + ai * n);
            next.acc_bytes = sizeof(T);
        }
        if (add_row<T, B, First>(x, n, probs, w.e.data(), acc + i * n, ent[i], w.fault, next, top, nx)) return i;
        if (First) {
            hash[i] = row_hash(x, n);
            same[i] = 1;
        } else if (same[i]) {  // a row that differed once is done: a stochastic model's rows after sample 1
            same[i] = static_cast<uint8_t>(row_hash(x, n) == hash[i]);
        }
    }
    return end;
}

template <class T, int B>
ALSCALE_INLINE int64_t add_sample_rows(Work<T>& w, const Matrix& m, T* const& acc, double* const& ent,
                                       uint64_t* const& hash, uint8_t* const& same, const bool& first,
                                       const int64_t& n, const bool& probs, const int64_t& begin, const int64_t& end) {
    return first ? add_rows<T, B, true>(w, m, acc, ent, hash, same, n, probs, begin, end)
                 : add_rows<T, B, false>(w, m, acc, ent, hash, same, n, probs, begin, end);
}
ALSCALE_MULTIVERSION3(add_sample_rows)

// Rows [begin, end) of every sample, each row summed in w.acc and scored; the first bad row, or
// end. While a sample's row is softmaxed, the next one to be read (the next sample's, or the
// next row's first) is read alongside for its maximum (samples stored as T), or prefetched.
template <class T, int B>
ALSCALE_INLINE int64_t fused_rows(Work<T>& w, const std::vector<Matrix>& samples, const int64_t& n,
                                  const bool& probs, const McScore& kind, double* const& out, const int64_t& begin,
                                  const int64_t& end) {
    const int64_t count = static_cast<int64_t>(w.read.size());
    std::vector<Direct<T>> direct;
    bool peek = !probs;
    for (const auto& s : samples) {
        direct.emplace_back(s);
        peek &= direct.back().data != nullptr;
    }
    T* acc = w.acc.data();
    T* e = w.e.data();
    RowTop<T> top;
    for (int64_t i = begin; i < end; ++i) {
        double h = 0.0;
        bool same = true;
        const T* first = nullptr;  // sample 0's row (each sample has its own reader and buffer)
        for (int64_t t = 0; t < count; ++t) {
            const size_t ts = static_cast<size_t>(t);
            const T* x = peek ? direct[ts].row(i) : w.read[ts](i);
            Ahead next;
            const T* nx = nullptr;
            if (t + 1 < count || i + 1 < end) {
                const size_t nt = t + 1 < count ? ts + 1 : 0;
                const int64_t ni = t + 1 < count ? i : i + 1;
                if (peek) {
                    nx = direct[nt].row(ni);
                    const int64_t t2 = t + kAhead;
                    const int64_t ni2 = i + t2 / count;
                    if (ni2 < end) next = ahead(samples[static_cast<size_t>(t2 % count)], ni2);
                } else {
                    next = ahead(samples[nt], ni);
                }
            }
            const int code = t == 0 ? add_row<T, B, true>(x, n, probs, e, acc, h, w.fault, next, top, nx)
                                    : add_row<T, B, false>(x, n, probs, e, acc, h, w.fault, next, top, nx);
            if (code) {
                w.sample = t;
                return i;
            }
            if (t == 0)
                first = x;
            else if (same)
                same = same_row(x, first, n);
        }
        out[i] = score_row<T, B>(acc, n, count, h, kind, same);
    }
    return end;
}
ALSCALE_MULTIVERSION3(fused_rows)

// The scores of rows [begin, end) from the state's sums.
template <class T, int B>
ALSCALE_INLINE int64_t state_rows(const T* const& acc, const double* const& ent, const uint8_t* const& same,
                                  const int64_t& n, const int64_t& count, const McScore& kind, double* const& out,
                                  const int64_t& begin, const int64_t& end) {
    for (int64_t i = begin; i < end; ++i) out[i] = score_row<T, B>(acc + i * n, n, count, ent[i], kind, same[i] != 0);
    return end;
}
ALSCALE_MULTIVERSION3(state_rows)

[[noreturn]] void throw_fault(int64_t sample, int64_t row, const RowFault& f) {
    char buf[160];
    const std::string where = "sample " + std::to_string(sample) + " row " + std::to_string(row);
    switch (f.code) {
        case 1:
            throw std::invalid_argument(where + " contains NaN or inf");
        case 2:
            std::snprintf(buf, sizeof buf, " has a negative probability (%.6g for class %lld)", f.value,
                          static_cast<long long>(f.cls));
            throw std::invalid_argument(where + buf);
        default:
            std::snprintf(buf, sizeof buf, " does not sum to 1 (sum %.9g)", f.value);
            throw std::invalid_argument(where + buf +
                                        ": these are not probabilities (logits? then pass probabilities=False)");
    }
}

// Runs range(work, begin, end) over fixed row parts, one per thread; throws for the first bad row.
template <class T, class Make, class Range>
void run_rows(int64_t rows, int threads, int64_t first_sample, Make make, Range range) {
    std::vector<int64_t> bad(static_cast<size_t>(threads), rows);
    std::vector<RowFault> faults(static_cast<size_t>(threads));
    std::vector<int64_t> samples(static_cast<size_t>(threads), 0);
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    errors.run([&] {
        const int t = thread_id();
        Work<T> w = make();
        const auto part = split_range(rows, threads, t);
        const int64_t b = range(w, part.first, part.second);
        if (b < part.second) {
            bad[static_cast<size_t>(t)] = b;
            faults[static_cast<size_t>(t)] = w.fault;
            samples[static_cast<size_t>(t)] = w.sample;
        }
    });
    errors.rethrow();
    for (int t = 0; t < threads; ++t)
        if (bad[static_cast<size_t>(t)] < rows)
            throw_fault(first_sample + samples[static_cast<size_t>(t)], bad[static_cast<size_t>(t)],
                        faults[static_cast<size_t>(t)]);
}

template <class T>
void add_impl(const Matrix& m, bool probs, T* acc, double* ent, uint64_t* hash, uint8_t* same, int64_t sample,
              int num_threads) {
    const bool first = sample == 0;
    const int64_t n = m.cols;
    run_rows<T>(
        m.rows, row_threads(num_threads, m.rows), sample,
        [&] {
            Work<T> w;
            w.read.emplace_back(m);
            w.e.resize(n);
            return w;
        },
        [&](Work<T>& w, int64_t begin, int64_t end) {
            return add_sample_rows_dispatch3<T>(w, m, acc, ent, hash, same, first, n, probs, begin, end);
        });
}

template <class T>
void fused_impl(const std::vector<Matrix>& samples, bool probs, McScore kind, double* out, int num_threads) {
    const int64_t rows = samples[0].rows, n = samples[0].cols;
    run_rows<T>(
        rows, row_threads(num_threads, rows), 0,
        [&] {
            Work<T> w;
            for (const auto& s : samples) w.read.emplace_back(s);
            w.e.resize(n);
            w.acc.resize(n);
            return w;
        },
        [&](Work<T>& w, int64_t begin, int64_t end) {
            return fused_rows_dispatch3<T>(w, samples, n, probs, kind, out, begin, end);
        });
}

template <class T>
void scores_impl(const T* acc, const double* ent, const uint8_t* same, int64_t rows, int64_t n, int64_t count,
                 McScore kind, double* out, int num_threads) {
    const int threads = row_threads(num_threads, rows);
#pragma omp parallel num_threads(threads)
    {
        const auto part = split_range(rows, threads, thread_id());
        state_rows_dispatch3<T>(acc, ent, same, n, count, kind, out, part.first, part.second);
    }
}

}  // namespace

McState::McState(int64_t rows, int64_t classes, bool f64) : rows_(rows), classes_(classes), f64_(f64) {
    if (rows < 0 || classes < 1) throw std::invalid_argument("an MC state needs rows >= 0 and classes >= 1");
    const auto size = static_cast<size_t>(rows) * static_cast<size_t>(classes);
    // Not zeroed: the first sample writes every sum (its pages are first touched then).
    if (f64)
        accd_.reset(new double[size]);
    else
        accf_.reset(new float[size]);
    entropy_.assign(static_cast<size_t>(rows), 0.0);
    hash_.assign(static_cast<size_t>(rows), 0);
    same_.assign(static_cast<size_t>(rows), 1);
}

void McState::add(const Matrix& sample, bool probabilities, int num_threads) {
    if (sample.rows != rows_ || sample.cols != classes_)
        throw std::invalid_argument("sample shape does not match the state");
    check_usable();
    try {
        if (f64_)
            add_impl<double>(sample, probabilities, accd_.get(), entropy_.data(), hash_.data(), same_.data(),
                             samples_, num_threads);
        else
            add_impl<float>(sample, probabilities, accf_.get(), entropy_.data(), hash_.data(), same_.data(), samples_,
                            num_threads);
    } catch (...) {
        broken_ = true;  // the rows before the bad one were added: the sums are incomplete
        throw;
    }
    ++samples_;
}

void McState::check_usable() const {
    if (broken_)
        throw std::invalid_argument(
            "an earlier sample was refused, so this state's sums are incomplete: start a new one");
}

void McState::scores(McScore kind, double* out, int num_threads) const {
    check_usable();
    if (samples_ == 0) throw std::invalid_argument("no MC sample has been added yet");
    if (f64_)
        scores_impl<double>(accd_.get(), entropy_.data(), same_.data(), rows_, classes_, samples_, kind, out,
                            num_threads);
    else
        scores_impl<float>(accf_.get(), entropy_.data(), same_.data(), rows_, classes_, samples_, kind, out,
                           num_threads);
}

void mc_scores(const std::vector<Matrix>& samples, bool probabilities, bool f64, McScore kind, double* out,
               int num_threads) {
    if (samples.empty()) throw std::invalid_argument("no MC sample given");
    for (const auto& s : samples)
        if (s.rows != samples[0].rows || s.cols != samples[0].cols)
            throw std::invalid_argument("MC samples must all have one shape");
    if (samples[0].rows == 0) return;
    if (f64)
        fused_impl<double>(samples, probabilities, kind, out, num_threads);
    else
        fused_impl<float>(samples, probabilities, kind, out, num_threads);
}

void joint_entropy(const double* configs, const double* weight, int64_t m, int64_t k, const double* probs,
                   int64_t n, int64_t classes, double* out, int num_threads) {
    const int threads = row_threads(num_threads, n * 64);  // every candidate costs M x K x C
    const double scale = 1.0 / static_cast<double>(k);
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    errors.run([&] {
        std::vector<double> joint(static_cast<size_t>(classes));
        const auto part = split_range(n, threads, thread_id());
        for (int64_t i = part.first; i < part.second; ++i) {
            const double* p = probs + i * k * classes;
            double total = 0.0;
            for (int64_t a = 0; a < m; ++a) {
                const double* row = configs + a * k;
                std::fill(joint.begin(), joint.end(), 0.0);
                for (int64_t j = 0; j < k; ++j) {
                    const double w = row[j];
                    const double* pj = p + j * classes;
                    for (int64_t c = 0; c < classes; ++c) joint[static_cast<size_t>(c)] += w * pj[c];
                }
                double s = 0.0;
                for (int64_t c = 0; c < classes; ++c) {
                    const double v = joint[static_cast<size_t>(c)] * scale;
                    if (v > 0.0) s += v * std::log(v);
                }
                total -= weight[a] * s;
            }
            out[i] = total;
        }
    });
    errors.rethrow();
}

}  // namespace alscale
