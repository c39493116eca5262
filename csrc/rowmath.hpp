// Per-row arithmetic of the CPU scoring and BASE kernels, on 8-lane vectors (GCC/Clang vector
// extensions: one AVX2 register per float op, two SSE2 registers without AVX2). Element c of a
// row always goes to lane c % 8, the arithmetic of a lane and the combining of the lanes are
// rowmath_common.hpp's (shared with the GPU kernels), and there is no FMA contraction
// (-ffp-contract=off), so every score is bit-identical on every x86-64 / ARM CPU, whichever
// instruction set the dispatcher picks (isa.hpp), and on the GPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common.hpp"
#include "head.hpp"
#include "isa.hpp"
#include "rowmath_common.hpp"

namespace alscale {

// Native vectors of B bytes: 32 (an AVX2 register: 8 floats or 4 doubles) or 16 (SSE2, NEON).
// A row is processed in blocks of 8 elements, element c in logical lane c % 8, that is part
// (c % 8) / W of the block, slot (c % 8) % W, whatever B is.
template <class T, int B>
struct Lanes {
    typedef T V __attribute__((vector_size(B)));
    typedef typename IntOf<T>::type I __attribute__((vector_size(B)));
};
template <class T, int B>
using vec = typename Lanes<T, B>::V;
template <class T, int B>
using ivec = typename Lanes<T, B>::I;

template <class T, int B>
constexpr int kWidth = static_cast<int>(B / sizeof(T));  // elements per native vector
template <class T, int B>
constexpr int kParts = kLanes / kWidth<T, B>;  // native vectors per block

template <class T, int B>
ALSCALE_INLINE vec<T, B> load(const T* p) {
    vec<T, B> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// A block of 8 values starting at p, or the last `count` < 8 with the missing lanes set to fill.
template <class T, int B>
struct Block {
    vec<T, B> part[kParts<T, B>];
};

template <class T, int B>
ALSCALE_INLINE Block<T, B> load_block(const T* p) {
    Block<T, B> b;
    for (int h = 0; h < kParts<T, B>; ++h) b.part[h] = load<T, B>(p + h * kWidth<T, B>);
    return b;
}

template <class T, int B>
ALSCALE_INLINE Block<T, B> load_tail(const T* p, int64_t count, T fill) {
    T tmp[kLanes];
    for (int j = 0; j < kLanes; ++j) tmp[j] = j < count ? p[j] : fill;
    return load_block<T, B>(tmp);
}

// Whether any bit of m is set: its halves or-ed down to 16 bytes (vector ors, not a scalar or of
// every 8 bytes: BASE asks this of every 32 classes).
template <class M>
ALSCALE_INLINE bool any_lane(M m) {
    constexpr int S = static_cast<int>(sizeof(M));
    if constexpr (S > 16) {
        using H = typename Lanes<double, S / 2>::I;
        H lo, hi;
        std::memcpy(&lo, &m, sizeof lo);
        std::memcpy(&hi, reinterpret_cast<const char*>(&m) + sizeof lo, sizeof hi);
        return any_lane(lo | hi);
    } else {
        using Q = typename Lanes<double, S>::I;
        const Q q = (Q)m;
        int64_t any = 0;
        for (int j = 0; j < S / 8; ++j) any |= q[j];
        return any != 0;
    }
}

// AVX-512 code (B = 64) on x86-64 with GCC's asm: the lanes where `a Pred b` holds (Pred a
// vcmpps/vcmppd predicate: 0 ==, 2 <=) as the bits of one compare into a mask register. GCC's own
// form of a vector compare widens each mask back into a vector (and in some loops compares lane by
// lane). Callers test kMaskCompare<B> first; elsewhere mask_compare is never instantiated.
enum : int { kCmpEq = 0, kCmpLe = 2 };
#if defined(__x86_64__) && defined(__GNUC__)
template <int B>
constexpr bool kMaskCompare = B == 64;
template <int Pred, class V>
ALSCALE_INLINE unsigned mask_compare(V a, V b) {
    uint16_t k;
    if constexpr (sizeof(a[0]) == 4)
        asm("vcmpps %3, %2, %1, %0" : "=Yk"(k) : "v"(a), "v"(b), "i"(Pred));
    else
        asm("vcmppd %3, %2, %1, %0" : "=Yk"(k) : "v"(a), "v"(b), "i"(Pred));
    return k;
}
#else
template <int B>
constexpr bool kMaskCompare = false;
template <int Pred, class V>
unsigned mask_compare(V a, V b);
#endif

// The lane numbers 0, 1, ..., as a vector of integers I (W lanes).
template <class I, int W>
ALSCALE_INLINE I lane_iota() {
    I iota;
    for (int j = 0; j < W; ++j) iota[j] = j;
    return iota;
}

// The stored bytes of a row ahead of the current one, pulled into the cache while the current
// row's second pass runs from L1, so that that row's first pass (its max) does not stall on
// memory: the two passes of a row are compute- and load-bound in turn, this overlaps them.
// kRowsAhead = 2, the row after next: a prefetch of the next row, issued along this row's second
// pass, arrived too late for its max pass (one thread: MASE with the head 0.46 -> 0.33 ns a
// logit, BASE 0.58 -> 0.47; BENCHMARKS.md). Only for rows stored with unit stride (any dtype);
// otherwise nothing is fetched.
constexpr int64_t kRowsAhead = 2;
struct NextRow {
    const char* p = nullptr;
    int64_t step = 0;  // stored bytes per element
    ALSCALE_INLINE void at(int64_t c) const {
        if (p) __builtin_prefetch(p + c * step, 0, 3);
    }
};
// The row kRowsAhead after row i, if it is below `end` (a thread's own rows).
inline NextRow fetch_ahead(const Matrix& m, int64_t i, int64_t end) {
    if (i + kRowsAhead >= end || m.col_stride <= 0 || m.col_stride > 8 || m.row_stride < m.cols * m.col_stride)
        return {};
    return NextRow{m.data + (i + kRowsAhead) * m.row_stride, m.col_stride};
}

// Native vectors of any element type (Lanes is for float and double).
template <class E, int B>
struct RawLanes {
    typedef E V __attribute__((vector_size(B)));
};

// n stored 16-bit values as floats, exactly, in native vectors of B bytes (RowReader's scalar
// loop runs 8 lanes a step even on AVX-512, and half_to_float is a dozen integer operations a
// vector): bfloat16 widened and shifted; float16 by vcvtph2ps (AVX-512F has it; with AVX2 where
// the CPU has F16C), exact for every finite half whatever MXCSR's DAZ / FTZ say
// (tests/test_half_kernels.py runs every half with both set), else half_to_float. A non-finite
// value stays non-finite (inf as inf, NaN as a NaN), which is all the kernels ask of one: they
// reject its row.
template <int B>
ALSCALE_INLINE void halves_to_float(const uint16_t* src, float* out, int64_t n, DType dtype) {
    constexpr int W = kWidth<float, B>;
    using H = typename RawLanes<uint16_t, B / 2>::V;
    using U = typename RawLanes<uint32_t, B>::V;
    int64_t c = 0;
    if (dtype == DType::bf16) {
        for (; c + W <= n; c += W) {
            H h;
            std::memcpy(&h, src + c, sizeof h);
            U u;
#if defined(__x86_64__) && defined(__GNUC__)
            if constexpr (B == 64)  // one 16-wide widening (GCC splits it into two 8-wide ones)
                asm("vpmovzxwd %1, %0" : "=v"(u) : "v"(h));
            else
#endif
                u = __builtin_convertvector(h, U);
            u <<= 16;
            std::memcpy(out + c, &u, sizeof u);
        }
        for (; c < n; ++c) out[c] = bf16_to_float(src[c]);
        return;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (B == 64 || B == 32) {
        if (B == 64 || has_f16c()) {
            for (; c + W <= n; c += W) {
                H h;
                std::memcpy(&h, src + c, sizeof h);
                vec<float, B> f;
                asm("vcvtph2ps %1, %0" : "=v"(f) : "v"(h));
                std::memcpy(out + c, &f, sizeof f);
            }
        }
    }
#endif
    for (; c < n; ++c) out[c] = half_to_float(src[c]);
}

// Row i of `read` (RowReader::operator()), its 16-bit values converted by halves_to_float where
// they are stored with unit stride: into `into` (n values) where given, else read's own buffer.
template <class T, int B>
ALSCALE_INLINE const T* read_row(RowReader<T>& read, int64_t i, int64_t n, T* into = nullptr) {
    if constexpr (std::is_same<T, float>::value) {
        if (const uint16_t* h = read.half_row(i)) {
            T* out = into ? into : read.buffer();
            halves_to_float<B>(h, out, n, read.dtype());
            return out;
        }
    }
    return read(i);
}

// Rows read one ahead for a boundary pass with the head's table (MASE, BASE): row p of the table
// (8 KB for C = 1000, a random row each time) comes from L3, so the next row's max pass runs
// before this row's boundary pass, which then prefetches the next row's table row and the logits
// of the row kRowsAhead after that. Only where rows are read in place, or are 16-bit rows
// converted into two buffers in turn (`spare` the second: a row read ahead must not overwrite the
// current one).
// max_of(row) gives a row's RowMax.
template <class T, int B, class MaxOf>
class RowsAhead {
public:
    RowsAhead(RowReader<T>& read, std::vector<T>& spare, const Matrix& m, const double* table, int64_t begin,
              int64_t end, MaxOf max_of)
        : read_(read), spare_(spare), m_(m), table_(table), end_(end), max_of_(max_of) {
        const bool half = begin < end && read.half_row(begin) != nullptr;
        ahead_ = table && (half || (m.col_stride == static_cast<int64_t>(sizeof(T)) &&
                                    m.dtype == (sizeof(T) == 4 ? DType::f32 : DType::f64)));
        if (ahead_ && half) spare.resize(static_cast<size_t>(m.cols));
    }
    // Row i and its max (mx): taken ahead by the previous row's next(), else now.
    ALSCALE_INLINE const T* row(int64_t i, RowMax<T>& mx) {
        if (next_x_) {
            const T* x = next_x_;
            mx = next_mx_;
            next_x_ = nullptr;
            return x;
        }
        const T* x = read_row<T, B>(read_, i, m_.cols);
        mx = max_of_(x);
        return x;
    }
    // Before the boundary pass of row i (held in x): row i + 1 read and its max taken; `next` and
    // `next_inv` what that pass is to prefetch.
    ALSCALE_INLINE void next(int64_t i, const T* x, NextRow& next, NextRow& next_inv) {
        next = fetch_ahead(m_, i, end_);
        if (!ahead_ || i + 1 >= end_) return;
        next_x_ = read_row<T, B>(read_, i + 1, m_.cols, x == read_.buffer() ? spare_.data() : read_.buffer());
        next_mx_ = max_of_(next_x_);
        next = fetch_ahead(m_, i + 1, end_);
        if (next_mx_.finite) next_inv = NextRow{reinterpret_cast<const char*>(table_ + next_mx_.arg * m_.cols), 8};
    }

private:
    RowReader<T>& read_;
    std::vector<T>& spare_;
    const Matrix& m_;
    const double* table_;
    int64_t end_;
    MaxOf max_of_;
    bool ahead_ = false;
    const T* next_x_ = nullptr;
    RowMax<T> next_mx_{};
};
template <class T, int B, class MaxOf>
ALSCALE_INLINE RowsAhead<T, B, MaxOf> rows_ahead(RowReader<T>& read, std::vector<T>& spare, const Matrix& m,
                                                 const double* table, int64_t begin, int64_t end, MaxOf max_of) {
    return RowsAhead<T, B, MaxOf>(read, spare, m, table, begin, end, max_of);
}

// Two lanes' running maxima (max_step's m1, m2 and the position `at` of m1, -1 for none) over
// disjoint parts of a row, merged into a: m1 the larger (on a tie the earlier position: the first
// argmax), m2 (WantSecond) the largest of the rest as a multiset. Order-free, so any split of a
// row into parts gives max_step's values over the whole row.
template <bool WantSecond, class V, class I>
ALSCALE_INLINE void merge_max(V& m1a, V& m2a, I& ata, V m1b, V m2b, I atb) {
    const auto tie = (m1b == m1a) & (atb < ata) & (atb >= 0);
    const auto take = (m1b > m1a) | tie;
    if (WantSecond) {
        const V lose = take ? m1a : m1b;
        const V m2 = m2b > m2a ? m2b : m2a;
        m2a = lose > m2 ? lose : m2;
    }
    m1a = take ? m1b : m1a;
    ata = take ? atb : ata;
}

// Max, first argmax and (WantSecond) second largest of a row, and whether every value is finite
// (x - x is NaN exactly for NaN and +-inf). The row is read in steps of A = 4 native vectors,
// element c in virtual lane c % A (four independent compare-select chains, not one), the step
// number as the position; the virtual lanes are then merged (merge_max, which is exact for any
// split) into the 8 lanes of combine_max: the same RowMax as one lane per c % 8 read in order.
template <class T, int B, bool WantSecond>
ALSCALE_INLINE RowMax<T> row_max_split(const T* x, int64_t n) {
    using V = typename Lanes<T, B>::V;
    using I = typename Lanes<T, B>::I;
    constexpr int W = kWidth<T, B>, NV = 4, A = NV * W;
    const T ninf = -std::numeric_limits<T>::infinity();
    V m1[NV], m2[NV];
    I at[NV], probe = I{};
    for (int v = 0; v < NV; ++v) {
        m1[v] = m2[v] = splat<V>(ninf);
        at[v] = I{} - 1;
    }
    I step = I{};
    auto body = [&](const T* p) __attribute__((always_inline)) {
        for (int v = 0; v < NV; ++v) {
            const V b = load<T, B>(p + v * W);
            probe |= (I)(b - b);  // 0 bits, or a NaN's
            max_step<WantSecond>(b, step, m1[v], m2[v], at[v]);
        }
        step += 1;
    };
    int64_t c = 0;
    for (; c + A <= n; c += A) body(x + c);
    bool bad = false;
    // The last, partial step: its whole native vectors, then one padded with -inf (each vector v
    // keeps its virtual lanes: positions step * A + v * W + j).
    for (int v = 0; v < NV && c < n; ++v, c += W) {
        V b;
        if (c + W <= n) {
            b = load<T, B>(x + c);
            probe |= (I)(b - b);
        } else {
            T tmp[W];
            for (int j = 0; j < W; ++j) {
                const T e = c + j < n ? x[c + j] : ninf;
                if (c + j < n) bad |= !(e - e == T(0));
                tmp[j] = e;
            }
            b = load<T, B>(tmp);
        }
        max_step<WantSecond>(b, step, m1[v], m2[v], at[v]);
    }
    // Positions: step * A + virtual lane, -1 kept.
    const I iota = lane_iota<I, W>();
    for (int v = 0; v < NV; ++v) at[v] = at[v] >= 0 ? at[v] * A + (iota + v * W) : at[v];
    if constexpr (W % kLanes == 0) {  // every native vector holds whole blocks: merge them lane for lane
        for (int v = 1; v < NV; ++v) merge_max<WantSecond>(m1[0], m2[0], at[0], m1[v], m2[v], at[v]);
    }
    constexpr int left = W % kLanes == 0 ? 1 : NV;
    bad |= any_lane(probe != I{});
    T lane_m1[kLanes], lane_m2[kLanes];
    int64_t lane_at[kLanes];
    for (int j = 0; j < kLanes; ++j) {
        lane_m1[j] = lane_m2[j] = ninf;
        lane_at[j] = -1;
    }
    for (int v = 0; v < left; ++v)
        for (int j = 0; j < W; ++j) {
            const int l = (v * W + j) % kLanes;
            T a1 = lane_m1[l], a2 = lane_m2[l];
            int64_t aa = lane_at[l];
            merge_max<WantSecond>(a1, a2, aa, m1[v][j], m2[v][j], static_cast<int64_t>(at[v][j]));
            lane_m1[l] = a1;
            lane_m2[l] = a2;
            lane_at[l] = aa;
        }
    return combine_max<T, WantSecond>(lane_m1, lane_m2, lane_at, n, !bad);
}

// Max and (WantSecond) second largest of a row as a multiset, and whether every value is finite,
// without the argmax (the softmax scores need none): four independent max / min-max chains,
// m2 = max(m2, min(m1, v)), m1 = max(m1, v), which are order-free, so any split of the row gives
// the same values but for the sign of a zero max or second (which no score depends on: the
// softmax pass subtracts 0 + max, and exp(second - max) is 1 for any signs of two zeros). The
// argmax is left 0.
template <class T, int B, bool WantSecond>
ALSCALE_INLINE RowMax<T> row_max_top(const T* x, int64_t n) {
    using V = vec<T, B>;
    using I = ivec<T, B>;
    constexpr int W = kWidth<T, B>, NV = 4;
    const T ninf = -std::numeric_limits<T>::infinity();
    V m1[NV], m2[NV];
    I probe = I{};
    for (int v = 0; v < NV; ++v) m1[v] = m2[v] = splat<V>(ninf);
    auto step = [&](int v, V b) __attribute__((always_inline)) {
        if (WantSecond) {
            const V lo = b < m1[v] ? b : m1[v];
            m2[v] = lo > m2[v] ? lo : m2[v];
        }
        m1[v] = b > m1[v] ? b : m1[v];
    };
    int64_t c = 0;
    for (; c + NV * W <= n; c += NV * W)
        for (int v = 0; v < NV; ++v) {
            const V b = load<T, B>(x + c + v * W);
            probe |= (I)(b - b);  // 0 bits, or a NaN's
            step(v, b);
        }
    for (; c + W <= n; c += W) {
        const V b = load<T, B>(x + c);
        probe |= (I)(b - b);
        step(0, b);
    }
    bool bad = false;
    if (c < n && n >= W) {
        // The row's last W values in one load, those already seen (the first W - (n - c)) set
        // to -inf: the same multiset as a tail filled with -inf, without a store and reload.
        const V b = load<T, B>(x + n - W);
        probe |= (I)(b - b);
        step(0, lane_iota<I, W>() >= static_cast<typename IntOf<T>::type>(W - (n - c)) ? b : splat<V>(ninf));
    } else if (c < n) {
        T tmp[W];
        for (int j = 0; j < W; ++j) {
            const T e = c + j < n ? x[c + j] : ninf;
            if (c + j < n) bad |= !(e - e == T(0));
            tmp[j] = e;
        }
        step(0, load<T, B>(tmp));
    }
    bad |= any_lane(probe != I{});
    // The chains merged as a tree (a serial scalar chain over their 4 W lanes cost a third of
    // margin's time): the vectors pairwise, then each vector's upper half into its lower half.
    auto merge = [](auto& a1, auto& a2, auto b1, auto b2) __attribute__((always_inline)) {
        if (WantSecond) {
            const auto lo = b1 < a1 ? b1 : a1;
            const auto hi2 = b2 > a2 ? b2 : a2;
            a2 = lo > hi2 ? lo : hi2;
        }
        a1 = b1 > a1 ? b1 : a1;
    };
    merge(m1[0], m2[0], m1[1], m2[1]);
    merge(m1[2], m2[2], m1[3], m2[3]);
    merge(m1[0], m2[0], m1[2], m2[2]);
    T a1[W], a2[W];
    std::memcpy(a1, &m1[0], sizeof a1);
    std::memcpy(a2, &m2[0], sizeof a2);
    for (int h = W / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; ++j) merge(a1[j], a2[j], a1[j + h], a2[j + h]);
    RowMax<T> r;
    r.max = a1[0];
    r.arg = 0;
    r.second = a2[0];
    r.finite = !bad;
    return r;
}

// The max and first argmax of a row (row_max_split's RowMax without the second), in two cheap
// steps: row_max_top's order-free max chains, then the first position holding a value == max
// (the row is in L1 by then). The same position as row_max_split's, which is also the first
// value == max; the max's sign, where it is a zero, may differ (row_max_split takes a lane's),
// so only for callers that use the max as row_max_lanes does (0 + max: a zero's sign is lost).
template <class T, int B>
ALSCALE_INLINE RowMax<T> row_max_first(const T* x, int64_t n) {
    constexpr int W = kWidth<T, B>;
    RowMax<T> mx = row_max_top<T, B, false>(x, n);
    if (!mx.finite) return mx;
    using V = vec<T, B>;
    const V v = splat<V>(mx.max);
    int64_t c = 0;
    if constexpr (kMaskCompare<B>) {
        // AVX-512: four vectors a test through mask registers, then the position from the bits.
        for (; c + 4 * W <= n; c += 4 * W) {
            uint64_t bits = 0;
            for (int k = 0; k < 4; ++k)
                bits |= static_cast<uint64_t>(mask_compare<kCmpEq>(load<T, B>(x + c + k * W), v)) << (k * W);
            if (bits) {
                mx.arg = c + __builtin_ctzll(bits);
                return mx;
            }
        }
    }
    for (; c + W <= n; c += W)
        if (any_lane(load<T, B>(x + c) == v)) break;
    while (x[c] != mx.max) ++c;  // a finite row holds its max
    mx.arg = c;
    return mx;
}

// softmax_sums for native vectors of 16 floats (AVX-512): the exponentials and the products
// e (x - mx) of two blocks at once, each half then added to the 8 lane sums in order (the first
// block's half, then the second's), so the same bits as 8 lanes a block (softmax_step's
// arithmetic, element by element); the row's last block or two in 8 lanes.
template <class T, int B, bool WantT>
ALSCALE_INLINE void softmax_sums_wide(const T* x, int64_t n, T mx, T& s_out, T& t_out, const NextRow& next) {
    constexpr int H = kLanes * static_cast<int>(sizeof(T));  // bytes of one block
    using V = vec<T, B>;
    using V8 = vec<T, H>;
    static_assert(kWidth<T, B> == 2 * kLanes, "two blocks per native vector");
    const V vmx = row_max_lanes<V>(mx);
    V8 s = splat<V8>(T(0)), t = splat<V8>(T(0));
    auto add_halves = [](V8& acc, const V& v) __attribute__((always_inline)) {
        V8 half[2];
        std::memcpy(&half[0], &v, sizeof v);
        acc = add(add(acc, half[0]), half[1]);
    };
    int64_t c = 0;
    // Two native vectors a step: their exps are two independent dependency chains side by side
    // (each ~20 operations deep), then added in element order, so the same bits as one at a time.
    for (; c + 4 * kLanes <= n; c += 4 * kLanes) {
        next.at(c);
        next.at(c + 2 * kLanes);
        const V d0 = sub(load<T, B>(x + c), vmx), d1 = sub(load<T, B>(x + c + 2 * kLanes), vmx);
        const V e0 = exp_nonpos<T, V, ivec<T, B>>(d0), e1 = exp_nonpos<T, V, ivec<T, B>>(d1);
        add_halves(s, e0);
        add_halves(s, e1);
        if constexpr (WantT) {
            add_halves(t, softmax_product<T>(e0, d0));
            add_halves(t, softmax_product<T>(e1, d1));
        }
    }
    for (; c + 2 * kLanes <= n; c += 2 * kLanes) {
        next.at(c);
        const V d = sub(load<T, B>(x + c), vmx);
        const V e = exp_nonpos<T, V, ivec<T, B>>(d);
        add_halves(s, e);
        if constexpr (WantT) add_halves(t, softmax_product<T>(e, d));
    }
    const V8 vmx8 = row_max_lanes<V8>(mx);
    for (; c + kLanes <= n; c += kLanes) {
        next.at(c);
        softmax_step<T, V8, ivec<T, H>, WantT>(load<T, H>(x + c), vmx8, s, t);
    }
    if (c < n) {
        next.at(c);
        T tmp[kLanes];
        for (int j = 0; j < kLanes; ++j) tmp[j] = c + j < n ? x[c + j] : -std::numeric_limits<T>::infinity();
        softmax_step<T, V8, ivec<T, H>, WantT>(load<T, H>(tmp), vmx8, s, t);
    }
    T ls[kLanes], lt[kLanes];
    for (int j = 0; j < kLanes; ++j) {
        ls[j] = s[j];
        lt[j] = t[j];
    }
    s_out = sum_lanes(ls);
    t_out = sum_lanes(lt);
}

// Softmax sums of a row with maximum mx: s = sum exp(x - mx), t = sum exp(x - mx) * (x - mx),
// in 8 lane sums combined in a fixed order (softmax_step, sum_lanes). Without WantT, t is 0 and
// s has the same bits (margin and confidence need s alone).
template <class T, int B, bool WantT = true>
ALSCALE_INLINE void softmax_sums(const T* x, int64_t n, T mx, T& s_out, T& t_out, const NextRow& next = {}) {
    if constexpr (kWidth<T, B> > kLanes) {
        softmax_sums_wide<T, B, WantT>(x, n, mx, s_out, t_out, next);
        return;
    }
    using V = vec<T, B>;
    constexpr int P = kParts<T, B>, W = kWidth<T, B>;
    const V vmx = row_max_lanes<V>(mx);
    V s[P], t[P];
    for (int h = 0; h < P; ++h) s[h] = t[h] = splat<V>(T(0));
    auto step = [&](const Block<T, B>& b) __attribute__((always_inline)) {
        for (int h = 0; h < P; ++h) softmax_step<T, V, ivec<T, B>, WantT>(b.part[h], vmx, s[h], t[h]);
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) {
        next.at(c);
        step(load_block<T, B>(x + c));
    }
    if (c < n) {
        next.at(c);
        step(load_tail<T, B>(x + c, n - c, -std::numeric_limits<T>::infinity()));
    }
    T ls[kLanes], lt[kLanes];
    for (int j = 0; j < kLanes; ++j) {
        ls[j] = s[j / W][j % W];
        lt[j] = t[j / W][j % W];
    }
    s_out = sum_lanes(ls);
    t_out = sum_lanes(lt);
}

// 8 logits from p as float64 vectors (kParts<double, B> of them: 4, 2 or 1), converted exactly.
template <int B>
ALSCALE_INLINE void to_double(const float* p, vec<double, B>* out) {
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (B == 64) {
        // Only in AVX-512 code (ALSCALE_MULTIVERSION3): GCC widens the 8 floats as two halves
        // (two 4-wide converts, an extract and an insert); one vcvtps2pd does it (exact either way).
        const vec<float, 32> f = load<float, 32>(p);
        vec<double, 64> d;
        asm("vcvtps2pd %1, %0" : "=v"(d) : "v"(f));
        out[0] = d;
        return;
    }
#endif
    constexpr int W = kWidth<double, B>;
    for (int h = 0; h < kParts<double, B>; ++h)
        out[h] = __builtin_convertvector(load<float, B / 2>(p + h * W), vec<double, B>);
}
template <int B>
ALSCALE_INLINE void to_double(const double* p, vec<double, B>* out) {
    for (int h = 0; h < kParts<double, B>; ++h) out[h] = load<double, B>(p + h * kWidth<double, B>);
}

// Distances of a row to the p/c decision hyperplanes: r_c = boundary_distance(l_p, l_c, inv[c]),
// inv = row p of the inverse-norm matrix. Returns min_c r_c and (StoreR) writes r (n values): MASE
// with the table reads r back nowhere, and saves a store per 8 values. Bounded (BASE): also lists
// in `hits` the first class of each 32-class group where some r_c <= bound[c]; the row is taken a
// group (four blocks) at a time, its hits tested once a group.
template <class T, int B, bool StoreR = true, bool Bounded = true>
ALSCALE_INLINE double boundary_row(const T* x, int64_t n, double lp, const double* inv, double* r,
                                   const double* bound, std::vector<int64_t>* hits, const NextRow& next = {},
                                   const NextRow& next_inv = {}) {
    using V = vec<double, B>;
    using I = ivec<double, B>;
    constexpr int P = kParts<double, B>, W = kWidth<double, B>;
    constexpr int64_t kGroup = 32;
    const V vlp = row_max_lanes<V>(lp);
    V mn = splat<V>(kInf);
    I hit = I{};
    unsigned hit_bits = 0;
    auto block = [&](const T* xp, const double* iv, const double* bv, double* out) __attribute__((always_inline)) {
        V xd[P];
        to_double<B>(xp, xd);
        for (int h = 0; h < P; ++h) {
            const V a = boundary_distance(vlp, xd[h], load<double, B>(iv + W * h));
            mn = a < mn ? a : mn;
            if constexpr (StoreR) std::memcpy(out + W * h, &a, sizeof a);
            if constexpr (Bounded) {
                const V b = load<double, B>(bv + W * h);
                if constexpr (kMaskCompare<B>)
                    hit_bits |= mask_compare<kCmpLe>(a, b);  // or'ed as an integer
                else
                    hit |= a <= b;
            }
        }
    };
    // Whether the group just passed had a hit; clears the accumulators for the next group.
    auto group_hit = [&]() __attribute__((always_inline)) {
        const bool any = hit_bits != 0 || any_lane(hit);
        hit = I{};
        hit_bits = 0;
        return any;
    };
    // A row ahead's logits and the next row's table row pulled into L2 a block at a time (a block
    // of floats is half a line: one prefetch of two is redundant, cheaper than a branch). Without
    // such a row, this row's own first byte (in cache) stands in, so the loop has no branch for it.
    const char* const np = next.p ? next.p : reinterpret_cast<const char*>(x);
    const char* const ip = next_inv.p ? next_inv.p : reinterpret_cast<const char*>(x);
    const int64_t ns = next.p ? next.step : 0, is = next_inv.p ? next_inv.step : 0;
    auto step = [&](int64_t c) __attribute__((always_inline)) {
        __builtin_prefetch(np + c * ns, 0, 2);
        __builtin_prefetch(ip + c * is, 0, 2);
        block(x + c, inv + c, Bounded ? bound + c : nullptr, StoreR ? r + c : nullptr);
    };
    int64_t c = 0;
    for (; c + kGroup <= n; c += kGroup) {
        step(c);
        step(c + kLanes);
        step(c + 2 * kLanes);
        step(c + 3 * kLanes);
        if (Bounded && group_hit()) hits->push_back(c);
    }
    for (; c + kLanes <= n; c += kLanes) step(c);
    int64_t last = c - kLanes;  // start of the last block
    if (c < n) {
        next.at(c);
        double iv[kLanes], bv[kLanes], out[kLanes];
        T xt[kLanes];
        for (int j = 0; j < kLanes; ++j) {
            iv[j] = c + j < n ? inv[c + j] : 1.0;
            bv[j] = Bounded && c + j < n ? bound[c + j] : -kInf;
            xt[j] = c + j < n ? x[c + j] : std::numeric_limits<T>::infinity();
        }
        block(xt, iv, bv, out);
        if constexpr (StoreR)
            for (int j = 0; c + j < n; ++j) r[c + j] = out[j];
        last = c;
    }
    if (Bounded && group_hit()) hits->push_back((last / kGroup) * kGroup);  // the unfinished group
    double m = mn[0];
    for (int j = 1; j < W; ++j) m = mn[j] < m ? mn[j] : m;
    return m;
}

// Row p of the inverse norms: of the C x C table; with no head weight every norm is 1, so the row
// is all ones but +inf at p (kept in a per-thread buffer); with the pairs on demand, row p of their
// lower bounds (a per-thread buffer: the caller then makes its scores exact with exact_min and
// exact_distance).
class InverseNorms {
public:
    InverseNorms(const HeadNorms& head, int64_t n) : m_(head.table), pairs_(head.pairs), n_(n) {
        if (!m_) buf_.assign(static_cast<size_t>(n), 1.0);
    }
    const double* row(int64_t p) {
        if (m_) return m_ + p * n_;
        if (p == last_) return buf_.data();
        if (pairs_) {
            pairs_->lower_row(p, buf_.data());
        } else {
            if (last_ >= 0) buf_[static_cast<size_t>(last_)] = 1.0;
            buf_[static_cast<size_t>(p)] = kInf;
        }
        last_ = p;
        return buf_.data();
    }
    const PairNorms* pairs() const { return pairs_; }
    const double* table() const { return m_; }

private:
    const double* m_;
    const PairNorms* pairs_;
    int64_t n_;
    std::vector<double> buf_;
    int64_t last_ = -1;
};

// r_c of a row predicted as p with the exact inverse norm: boundary_distance's arithmetic, lp as
// boundary_row takes the max (0 + max: the same bits as its lanes, a zero's sign lost).
template <class T>
ALSCALE_INLINE double exact_distance(const PairNorms& pairs, int64_t p, int64_t c, double lp, const T* x) {
    const double v = (lp - static_cast<double>(x[c])) * pairs.exact(p, c);
    return v >= 0.0 ? v : kInf;
}

// Whether some of r[0], ..., r[4 W - 1] (never NaN) is <= t (Strict: < t): their minimum, as
// vectors, then one compare.
template <int B, bool Strict>
ALSCALE_INLINE bool any_under(const double* r, double t) {
    using V = vec<double, B>;
    constexpr int W = kWidth<double, B>;
    V m = load<double, B>(r);
    for (int k = 1; k < 4; ++k) {
        const V a = load<double, B>(r + k * W);
        m = a < m ? a : m;
    }
    const V v = splat<V>(t);
    if constexpr (Strict)
        return any_lane(m < v);
    else
        return any_lane(m <= v);
}

// min_c r_c from r = the lower bounds of r (boundary_row with PairNorms' lower row) and lo = min_c
// of them: a class whose lower bound is not under the exact minimum cannot hold a smaller value.
// So the exact value of a class whose lower bound is lo, then every class whose lower bound is
// under the minimum so far, found with vector scans of r from L1 (a pair or two per row).
template <class T, int B>
ALSCALE_INLINE double exact_min(const PairNorms& pairs, int64_t p, double lp, const T* x, const double* r, int64_t n,
                                double lo) {
    constexpr int G = 4 * kWidth<double, B>;
    if (lo == kInf) return kInf;  // every exact value is at least its lower bound
    double m = kInf;
    int64_t c = 0;
    while (c + G <= n && !any_under<B, false>(r + c, lo)) c += G;
    while (c < n && r[c] != lo) ++c;
    if (c < n) m = exact_distance(pairs, p, c, lp, x);
    for (c = 0; c + G <= n; c += G)
        if (any_under<B, true>(r + c, m))
            for (int j = 0; j < G; ++j)
                if (r[c + j] < m) m = std::min(m, exact_distance(pairs, p, c + j, lp, x));
    for (; c < n; ++c)
        if (r[c] < m) m = std::min(m, exact_distance(pairs, p, c, lp, x));
    return m;
}

}  // namespace alscale
