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

// One logits row into the sums: acc[c] += softmax(x)_c, h += H[softmax(x)] computed as
// log(s) - t / s with s = sum exp(x - max), t = sum exp(x - max) (x - max) (softmax_step's
// arithmetic, 8 lanes combined in a fixed order). e: a row of scratch. 0, or 1 for NaN/inf.
template <class T, int B>
ALSCALE_INLINE int add_logits_row(const T* x, int64_t n, T* e, T* acc, double& h) {
    using V = vec<T, B>;
    constexpr int P = kParts<T, B>, W = kWidth<T, B>;
    const RowMax<T> mx = row_max<T, B, false>(x, n);
    if (!mx.finite) return 1;
    const V vmx = row_max_lanes<V>(mx.max);
    const V lo = splat<V>(T(-1e30));
    V s[P], t[P];
    for (int k = 0; k < P; ++k) s[k] = t[k] = splat<V>(T(0));
    auto step = [&](const Block<T, B>& b, T* out) __attribute__((always_inline)) {
        for (int k = 0; k < P; ++k) {
            V d = sub(b.part[k], vmx);
            d = d < lo ? lo : d;
            const V ev = exp_nonpos<T, V, ivec<T, B>>(d);
            s[k] = add(s[k], ev);
            t[k] = add(t[k], mul(ev, d));
            std::memcpy(out + k * W, &ev, sizeof ev);
        }
    };
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) step(load_block<T, B>(x + c), e + c);
    if (c < n) {
        T tail[kLanes];
        step(load_tail<T, B>(x + c, n - c, -std::numeric_limits<T>::infinity()), tail);
        for (int64_t j = 0; c + j < n; ++j) e[c + j] = tail[j];
    }
    T ls[kLanes], lt[kLanes];
    for (int j = 0; j < kLanes; ++j) {
        ls[j] = s[j / W][j % W];
        lt[j] = t[j / W][j % W];
    }
    const T sum = sum_lanes(ls), tsum = sum_lanes(lt);
    const T inv = div(T(1), sum);
    for (int64_t k = 0; k < n; ++k) acc[k] = add(acc[k], mul(e[k], inv));
    h += static_cast<double>(sub(static_cast<T>(std::log(sum)), div(tsum, sum)));
    return 0;
}

// One probabilities row into the sums (acc += p, h += -sum p log p), after checking it:
// finite, >= 0, summing to 1 within kSumTolerance. Returns 0 or the fault's code.
template <class T>
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
        acc[k] = add(acc[k], v);
    }
    h += static_cast<double>(ent);
    return 0;
}

template <class T, int B>
ALSCALE_INLINE int add_row(const T* x, int64_t n, bool probabilities, T* e, T* acc, double& h, RowFault& fault) {
    if (probabilities) return add_probability_row<T>(x, n, acc, h, fault);
    const int code = add_logits_row<T, B>(x, n, e, acc, h);
    if (code) fault = {code, 0, 0.0};
    return code;
}

// A row's score from its sums over `count` samples: q = acc * (1 / count) and q log q in the
// state's precision (float or double), summed in double. `same`: every sample of the row is the
// same, bit for bit (always so for one sample): its BALD is then exactly 0, not rounding noise.
template <class T>
double score_row(const T* acc, int64_t n, int64_t count, double h, McScore kind, bool same) {
    const double k = static_cast<double>(count);
    if (kind == McScore::expected_entropy) return h / k;
    if (kind == McScore::bald && same) return 0.0;
    const T inv = T(1) / static_cast<T>(count);
    double ent = 0.0, top1 = -1.0, top2 = 0.0;
    for (int64_t c = 0; c < n; ++c) {
        const T qt = acc[c] * inv;
        const double q = static_cast<double>(qt);
        if (qt > T(0)) ent -= static_cast<double>(qt * std::log(qt));
        if (q > top1) {
            top2 = top1;
            top1 = q;
        } else if (q > top2) {
            top2 = q;
        }
    }
    if (top2 < 0.0) top2 = 0.0;  // one class
    switch (kind) {
        case McScore::margin:
            return top1 - top2;
        case McScore::confidence:
            return top1;
        case McScore::entropy:
            return ent;
        default: {
            const double mi = ent - h / k;
            return mi > 0.0 ? mi : 0.0;
        }
    }
}

template <class T>
struct Work {
    std::vector<RowReader<T>> read;  // one per sample
    std::vector<T> e, acc;
    RowFault fault;
    int64_t sample = 0;  // the sample of the fault
};

// Rows [begin, end) of one sample into the state's sums, and whether each row still equals the
// first sample's (by fingerprint; `first`: this is the first sample); the first bad row, or end.
template <class T, int B>
ALSCALE_INLINE int64_t add_rows(Work<T>& w, T* const& acc, double* const& ent, uint64_t* const& hash,
                                uint8_t* const& same, const bool& first, const int64_t& n, const bool& probs,
                                const int64_t& begin, const int64_t& end) {
    for (int64_t i = begin; i < end; ++i) {
        const T* x = w.read[0](i);
        if (add_row<T, B>(x, n, probs, w.e.data(), acc + i * n, ent[i], w.fault)) return i;
        if (first) {
            hash[i] = row_hash(x, n);
            same[i] = 1;
        } else if (same[i]) {  // a row that differed once is done: a stochastic model's rows after sample 1
            same[i] = static_cast<uint8_t>(row_hash(x, n) == hash[i]);
        }
    }
    return end;
}
ALSCALE_MULTIVERSION(add_rows)

// Rows [begin, end) of every sample, each row summed in w.acc and scored; the first bad row, or end.
template <class T, int B>
ALSCALE_INLINE int64_t fused_rows(Work<T>& w, const int64_t& n, const bool& probs, const McScore& kind,
                                  double* const& out, const int64_t& begin, const int64_t& end) {
    const int64_t count = static_cast<int64_t>(w.read.size());
    for (int64_t i = begin; i < end; ++i) {
        std::fill(w.acc.begin(), w.acc.end(), T(0));
        double h = 0.0;
        bool same = true;
        const T* first = nullptr;  // sample 0's row (each sample has its own reader and buffer)
        for (int64_t t = 0; t < count; ++t) {
            const T* x = w.read[static_cast<size_t>(t)](i);
            if (add_row<T, B>(x, n, probs, w.e.data(), w.acc.data(), h, w.fault)) {
                w.sample = t;
                return i;
            }
            if (t == 0)
                first = x;
            else if (same)
                same = same_row(x, first, n);
        }
        out[i] = score_row<T>(w.acc.data(), n, count, h, kind, same);
    }
    return end;
}
ALSCALE_MULTIVERSION(fused_rows)

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
            w.e.resize(static_cast<size_t>(n));
            return w;
        },
        [&](Work<T>& w, int64_t begin, int64_t end) {
            return add_rows_dispatch<T>(w, acc, ent, hash, same, first, n, probs, begin, end);
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
            w.e.resize(static_cast<size_t>(n));
            w.acc.resize(static_cast<size_t>(n));
            return w;
        },
        [&](Work<T>& w, int64_t begin, int64_t end) {
            return fused_rows_dispatch<T>(w, n, probs, kind, out, begin, end);
        });
}

template <class T>
void scores_impl(const T* acc, const double* ent, const uint8_t* same, int64_t rows, int64_t n, int64_t count,
                 McScore kind, double* out, int num_threads) {
    const int threads = row_threads(num_threads, rows);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < rows; ++i) out[i] = score_row<T>(acc + i * n, n, count, ent[i], kind, same[i] != 0);
}

}  // namespace

McState::McState(int64_t rows, int64_t classes, bool f64) : rows_(rows), classes_(classes), f64_(f64) {
    if (rows < 0 || classes < 1) throw std::invalid_argument("an MC state needs rows >= 0 and classes >= 1");
    const auto size = static_cast<size_t>(rows) * static_cast<size_t>(classes);
    if (f64)
        accd_.assign(size, 0.0);
    else
        accf_.assign(size, 0.0f);
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
            add_impl<double>(sample, probabilities, accd_.data(), entropy_.data(), hash_.data(), same_.data(),
                             samples_, num_threads);
        else
            add_impl<float>(sample, probabilities, accf_.data(), entropy_.data(), hash_.data(), same_.data(), samples_,
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
        scores_impl<double>(accd_.data(), entropy_.data(), same_.data(), rows_, classes_, samples_, kind, out,
                            num_threads);
    else
        scores_impl<float>(accf_.data(), entropy_.data(), same_.data(), rows_, classes_, samples_, kind, out,
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
