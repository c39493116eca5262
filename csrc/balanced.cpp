#include "balanced.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <stdexcept>
#include <unordered_set>

#include "isa.hpp"
#include "rowmath.hpp"

namespace alscale {
namespace {

// Largest per-class extra a later pass may use: bounds memory at about 2^24 candidates.
int64_t max_extra(int64_t num_classes) { return std::max<int64_t>(64, (int64_t{1} << 24) / num_classes); }

// The extra room of the pass after one that ran short: 4x (at least 64), up to max_extra.
int64_t grown_extra(int64_t extra, int64_t num_classes) {
    return std::min(std::max<int64_t>(4 * extra, 64), std::max(extra, max_extra(num_classes)));
}

// A row fed twice in one pass would be counted twice: refuse it where it matters, among the
// candidates of a class.
void check_distinct_rows(const std::vector<Candidate>& candidates) {
    std::vector<int64_t> rows;
    rows.reserve(candidates.size());
    for (const auto& c : candidates) rows.push_back(c.row);
    check_distinct(std::move(rows), "row ", " was fed more than once in this pass (overlapping chunks or row_ids?)");
}

// Rows as a set while the classes are served: a byte per row when the rows are dense enough (pool
// rows), a hash set for sparse ids (global row ids of a few shards).
class RowSet {
public:
    // check: whether check_distinct is to be called (else no owner table is kept).
    RowSet(int64_t max_row, size_t candidates, bool check)
        : dense_(max_row < std::max<int64_t>(int64_t{1} << 24, 4 * static_cast<int64_t>(candidates))) {
        if (dense_) {
            taken_.assign(static_cast<size_t>(max_row + 1), 0);
            if (check) owner_.assign(static_cast<size_t>(max_row + 1), -1);
        }
    }
    bool contains(int64_t row) const { return dense_ ? taken_[static_cast<size_t>(row)] != 0 : sparse_.count(row) > 0; }
    void insert(int64_t row) {
        if (dense_)
            taken_[static_cast<size_t>(row)] = 1;
        else
            sparse_.insert(row);
    }
    // A row twice among class c's candidates was fed twice in this pass: refused.
    void check_distinct(const std::vector<Candidate>& candidates, int64_t c) {
        if (!dense_) return check_distinct_rows(candidates);
        for (const auto& cand : candidates) {
            auto& o = owner_[static_cast<size_t>(cand.row)];
            if (o == c)
                throw std::invalid_argument("row " + std::to_string(cand.row) +
                                            " was fed more than once in this pass (overlapping chunks or row_ids?)");
            o = static_cast<int32_t>(c);
        }
    }

private:
    bool dense_;
    std::vector<uint8_t> taken_;
    std::vector<int32_t> owner_;  // the last class that listed the row
    std::unordered_set<int64_t> sparse_;
};

template <class T>
struct UpdateContext {
    RowReader<T> read;
    InverseNorms inv;
    std::vector<double> r;
    const double* global;       // per class: the bound of the state's own heap at the update's start
    std::vector<double> bound;  // per class: a row can enter its heap only with a score <= bound
    std::vector<int64_t> hits;
    std::vector<ClassCandidates> heaps;
    int64_t fed = 0;
    std::vector<T> spare = {};  // the second buffer of 16-bit rows read ahead (RowsAhead)
};

// The hot loop: per row, its boundary distances, then the candidates for every class whose
// bound they pass (rare once heaps are full). A thread's bound never exceeds the state's own
// (ctx.global): a candidate the state's full heap would reject is never kept, so an update costs
// O(rows + C * k) whatever came before it. Every row is checked for NaN/inf, excluded or taken
// ones included. Returns the first non-finite row or `end`.
template <class T, int B>
ALSCALE_INLINE int64_t balanced_rows(UpdateContext<T>& ctx, const Matrix& logits, const RowIds& ids,
                                     const uint8_t* const& exclude, const std::vector<int64_t>& taken,
                                     const std::vector<int64_t>& capacity, const int64_t& begin,
                                     const int64_t& end) {
    const int64_t n = logits.cols;
    double* r = ctx.r.data();
    double* b = ctx.bound.data();
    const double* g = ctx.global;
    // The max enters boundary_row and the exact values only as 0 + max (a zero's sign is lost).
    auto rows = rows_ahead<T, B>(ctx.read, ctx.spare, logits, ctx.inv.table(), begin, end,
                                 [n](const T* row) __attribute__((always_inline)) { return row_max_first<T, B>(row, n); });
    for (int64_t i = begin; i < end; ++i) {
        RowMax<T> mx;
        const T* x = rows.row(i, mx);
        if (!mx.finite) return i;
        if (exclude && exclude[i]) continue;
        const int64_t row = ids[i];
        if (!taken.empty() && std::binary_search(taken.begin(), taken.end(), row)) continue;
        const int64_t p = mx.arg;
        const double lp = static_cast<double>(mx.max);
        NextRow next, next_inv;
        rows.next(i, x, next, next_inv);
        ctx.hits.clear();
        // With the pairs on demand, r holds lower bounds: a class that passes its bound is made
        // exact before it is offered, and so is the minimum where it passes class p's bound (a
        // larger exact value would not).
        const PairNorms* pairs = ctx.inv.pairs();
        double m = boundary_row<T, B>(x, n, lp, ctx.inv.row(p), r, b, &ctx.hits, next, next_inv);
        const double lp0 = 0.0 + lp;  // the max as boundary_row takes it (row_max_lanes)
        if (pairs && m <= b[p]) m = exact_min<T, B>(*pairs, p, lp0, x, r, n, m);
        for (const int64_t c0 : ctx.hits) {
            // The group's classes under their bounds as a bit mask (compares without branches),
            // then one step per class offered: at large budgets several a row, at random.
            uint32_t under = 0;
            if (c0 + 32 <= n) {
                for (int j = 0; j < 32; ++j) under |= static_cast<uint32_t>(r[c0 + j] <= b[c0 + j]) << j;
            } else {
                for (int64_t j = 0; c0 + j < n; ++j) under |= static_cast<uint32_t>(r[c0 + j] <= b[c0 + j]) << j;
            }
            if (p >= c0 && p < c0 + 32) under &= ~(uint32_t{1} << (p - c0));
            for (; under; under &= under - 1) {
                const int64_t c = c0 + __builtin_ctz(under);
                const double e = pairs ? exact_distance(*pairs, p, c, lp0, x) : r[c];
                if (e <= b[c])
                    b[c] = std::min(g[c], ctx.heaps[static_cast<size_t>(c)].offer(Candidate{e, row},
                                                                                  capacity[static_cast<size_t>(c)]));
            }
        }
        if (m <= b[p])
            b[p] = std::min(g[p], ctx.heaps[static_cast<size_t>(p)].offer(Candidate{m, row},
                                                                          capacity[static_cast<size_t>(p)]));
        ++ctx.fed;
    }
    return end;
}
ALSCALE_MULTIVERSION3(balanced_rows)

}  // namespace

BalancedState::BalancedState(int64_t num_classes, int64_t budget, int64_t extra, int64_t pass_memory)
    : C_(num_classes), B_(budget), extra_(extra), pass_memory_(pass_memory), heaps_(static_cast<size_t>(num_classes)) {
    if (num_classes < 1) throw std::invalid_argument("num_classes must be at least 1");
    if (budget < 0) throw std::invalid_argument("budget must be non-negative");
    if (extra < 0) throw std::invalid_argument("capacity must be non-negative");
    if (pass_memory < 0) throw std::invalid_argument("pass_memory must be non-negative");
    set_capacities(extra);
}

BalancedState::BalancedState(const BalancedSnapshot& s)
    : C_(s.num_classes), B_(s.budget), extra_(s.extra), pass_memory_(s.pass_memory), pass_(s.pass), start_class_(s.start_class),
      available_(s.available), fed_(s.fed), done_(s.done), capacity_(s.capacity), taken_(s.taken),
      picks_(s.picks) {
    // Everything a BalancedState can reach, checked field by field (an edited or corrupt state
    // dict must not be served as a selection).
    auto bad = [](const char* field, const std::string& what) {
        throw std::invalid_argument(std::string("inconsistent BalancedSelector state: state['") + field + "'] " + what);
    };
    const auto str = [](int64_t v) { return std::to_string(v); };
    if (C_ < 1) bad("num_classes", "must be at least 1, got " + str(C_));
    if (B_ < 0) bad("budget", "is negative");
    if (extra_ < 0) bad("extra", "is negative");
    if (pass_memory_ < 0) bad("pass_memory", "is negative");
    if (pass_ < 0) bad("pass", "is negative");
    if (available_ < 0) bad("available", "is negative");
    if (fed_ < 0) bad("fed", "is negative");
    if (start_class_ < 0 || start_class_ >= C_)
        bad("start_class", str(start_class_) + " is not a class of " + str(C_));
    if (static_cast<int64_t>(capacity_.size()) != C_) bad("capacity", "needs one entry per class");
    if (static_cast<int64_t>(s.counts.size()) != C_) bad("counts", "needs one entry per class");
    if (s.keys.size() != s.rows.size()) bad("keys", "and state['rows'] differ in length");
    // The first pass serves nothing until advance(); a later pass exists only because a class
    // c >= 1 ran short after classes 0..c-1 took their quotas of the budget clipped to the pool.
    if (pass_ == 0) {
        if (start_class_ != 0) bad("start_class", "must be 0 in the first pass (state['pass'] is 0)");
        if (!done_ && available_ != 0) bad("available", "is set only once the first pass is served");
    } else {
        if (start_class_ < 1) bad("pass", str(pass_) + " needs a class that ran short: state['start_class'] >= 1");
        if (B_ > available_) bad("budget", "exceeds state['available'] after the first pass");
    }
    const auto served = [&](int64_t classes, int64_t budget) {  // quotas of classes 0..classes-1
        return classes * (budget / C_) + std::min(classes, budget % C_);
    };
    const int64_t before = served(start_class_, B_);
    const int64_t want = done_ ? std::min(B_, available_) : before;
    if (static_cast<int64_t>(picks_.size()) != want)
        bad("picks", "has " + str(static_cast<int64_t>(picks_.size())) + " rows, but " +
                         (done_ ? "a finished selection has min(budget, available) = " + str(want)
                                : "classes 0.." + str(start_class_ - 1) + " take " + str(want) + " of the budget"));
    if (static_cast<int64_t>(taken_.size()) != before)
        bad("taken", "must hold the " + str(before) + " rows picked before the current pass");
    std::vector<int64_t> sorted(picks_);
    std::sort(sorted.begin(), sorted.end());
    if (!sorted.empty() && sorted.front() < 0) bad("picks", "holds a negative row");
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) bad("picks", "repeats a row");
    sorted.assign(picks_.begin(), picks_.begin() + before);
    std::sort(sorted.begin(), sorted.end());
    if (sorted != taken_) bad("taken", "must be the sorted rows of the picks made before the current pass");
    set_capacities(extra_);
    if (capacity_ != s.capacity) bad("capacity", "does not follow from num_classes, budget, extra and start_class");
    heaps_.resize(static_cast<size_t>(C_));
    size_t at = 0;
    for (int64_t c = 0; c < C_; ++c) {
        const int64_t count = s.counts[static_cast<size_t>(c)];
        if (count < 0 || count > capacity_[static_cast<size_t>(c)])
            bad("counts", "class " + str(c) + " has " + str(count) + " candidates for a capacity of " +
                              str(capacity_[static_cast<size_t>(c)]));
        if (count && done_) bad("counts", "must be 0 once the selection is done");
        if (count > fed_) bad("fed", "is smaller than class " + str(c) + "'s candidate count");
        if (static_cast<size_t>(count) > s.keys.size() - at) bad("counts", "add up to more than the candidates given");
        auto& h = heaps_[static_cast<size_t>(c)];
        for (int64_t j = 0; j < count; ++j, ++at) {
            const Candidate cand{s.keys[at], s.rows[at]};
            if (!(cand.key >= 0)) bad("keys", "holds a negative or NaN score (class " + str(c) + ")");
            if (cand.row < 0) bad("rows", "holds a negative row (class " + str(c) + ")");
            if (std::binary_search(taken_.begin(), taken_.end(), cand.row))
                bad("rows", "row " + str(cand.row) + " is a candidate of class " + str(c) + " but already taken");
            h.items.push_back(cand);
        }
        std::vector<int64_t> rows;
        for (const auto& cand : h.items) rows.push_back(cand.row);
        std::sort(rows.begin(), rows.end());
        if (std::adjacent_find(rows.begin(), rows.end()) != rows.end())
            bad("rows", "repeats a row among class " + str(c) + "'s candidates");
        h.shrink(capacity_[static_cast<size_t>(c)]);  // a full class gets its bound back
    }
    if (at != s.keys.size()) bad("keys", "holds more candidates than state['counts'] add up to");
}

void BalancedState::set_capacities(int64_t extra) {
    // Class c needs its quota plus room for the rows earlier classes of this pass may take from
    // it (at most their quotas together, `before`): with that much, it can never run short. The
    // first pass gives it at most `extra` of that room. A later pass exists because a class ran
    // short: it gives its first classes the whole room (quota + before) while their capacities
    // add up to at most pass_memory (its first class always), so it serves them whatever the
    // ties, and the classes after them the grown extra.
    capacity_.assign(static_cast<size_t>(C_), 0);
    int64_t before = 0, guaranteed = 0;
    bool guarding = pass_ > 0;
    for (int64_t c = start_class_; c < C_; ++c) {
        const int64_t q = quota(c, B_);
        if (q == 0) continue;
        int64_t cap = q + std::min(before, extra);
        if (guarding && (c == start_class_ || guaranteed + q + before <= pass_memory_)) {
            cap = q + before;
            guaranteed += cap;
        } else {
            guarding = false;
        }
        capacity_[static_cast<size_t>(c)] = cap;
        before += q;
    }
}

int64_t BalancedState::passes_bound() const {
    // Every score tied: class c of a pass runs short exactly when before > its room beyond the
    // quota, so a pass serves its guaranteed classes and those the extra covers. Count the passes
    // left by replaying the capacity rule (classes served are those whose capacity >= q + before).
    BalancedState probe(C_, B_, extra_, pass_memory_);
    probe.pass_ = pass_;
    probe.start_class_ = start_class_;
    int64_t passes = 1;
    for (;;) {
        probe.set_capacities(probe.extra_);
        int64_t before = 0, c = probe.start_class_;
        for (; c < C_; ++c) {
            const int64_t q = probe.quota(c, B_);
            if (q == 0) continue;
            if (probe.capacity_[static_cast<size_t>(c)] < q + before && c > probe.start_class_) break;
            before += q;
        }
        if (c >= C_) return passes;
        probe.start_class_ = c;
        ++probe.pass_;
        probe.extra_ = grown_extra(probe.extra_, C_);
        ++passes;
    }
}

double BalancedState::bound(int64_t c) const {
    const auto cap = capacity_[static_cast<size_t>(c)];
    if (c < start_class_ || cap == 0) return -kInf;
    return heaps_[static_cast<size_t>(c)].bound;
}

namespace {

// Feeds rows into per-class buffers `heaps` (one ClassCandidates per class): each thread keeps
// its own buffers from the bounds (-inf: the class takes nothing), then they are absorbed class
// by class. Returns the rows fed (neither excluded nor taken).
int64_t feed_rows(const Matrix& logits, RowIds ids, const uint8_t* exclude, const HeadNorms& head, int num_threads,
                  const std::vector<int64_t>& taken, const std::vector<int64_t>& capacity,
                  const std::vector<double>& bounds, std::vector<ClassCandidates>& heaps,
                  const std::vector<int64_t>* expected = nullptr) {
    const int64_t n = logits.cols;
    const int threads = row_threads(num_threads, logits.rows);
    int64_t total = 0;
    auto run = [&](auto tag) {
        using T = decltype(tag);
        std::vector<std::vector<ClassCandidates>> local(static_cast<size_t>(threads));
        std::vector<int64_t> fed(static_cast<size_t>(threads), 0);
        parallel_rows(
            logits.rows, threads,
            [&](int) {
                UpdateContext<T> ctx{RowReader<T>(logits),
                                     InverseNorms(head, n),
                                     std::vector<double>(static_cast<size_t>(n)),
                                     bounds.data(),
                                     bounds,
                                     {},
                                     std::vector<ClassCandidates>(static_cast<size_t>(n)),
                                     0};
                // Buffers sized for this thread's share of the expected offers (a buffer never
                // holds more than 2 * capacity + 16): no regrowth and no copies while the pass runs.
                if (expected)
                    for (int64_t c = 0; c < n; ++c) {
                        const auto e = (*expected)[static_cast<size_t>(c)];
                        if (e <= 0) continue;
                        const int64_t share = e / threads, want = share + share / 8 + 64;
                        ctx.heaps[static_cast<size_t>(c)].items.reserve(static_cast<size_t>(
                            std::min(want, 2 * capacity[static_cast<size_t>(c)] + 16)));
                    }
                return ctx;
            },
            [&](UpdateContext<T>& ctx, int64_t begin, int64_t end) {
                return balanced_rows_dispatch3<T>(ctx, logits, ids, exclude, taken, capacity, begin, end);
            },
            [&](UpdateContext<T>& ctx, int t) {
                local[static_cast<size_t>(t)] = std::move(ctx.heaps);
                fed[static_cast<size_t>(t)] = ctx.fed;
            });
        size_t found = 0;  // candidates the threads kept: few once the heaps are full
        for (int t = 0; t < threads; ++t) {
            total += fed[static_cast<size_t>(t)];
            for (const auto& h : local[static_cast<size_t>(t)]) found += h.items.size();
        }
        ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16) if (found > (size_t{1} << 16))
        for (int64_t c = 0; c < n; ++c)
            errors.run([&] {
                for (int t = 0; t < threads; ++t)
                    heaps[static_cast<size_t>(c)].absorb(std::move(local[static_cast<size_t>(t)][static_cast<size_t>(c)]),
                                                         capacity[static_cast<size_t>(c)]);
            });
        errors.rethrow();
    };
    if (logits.dtype == DType::f64)
        run(double{});
    else
        run(float{});
    return total;
}

}  // namespace

bool BalancedState::update(const Matrix& logits, RowIds ids, const uint8_t* exclude, const HeadNorms& head,
                           int num_threads, const std::vector<double>* ceilings,
                           const std::vector<int64_t>* expected) {
    if (done_) throw std::logic_error("the selection is complete; build a new selector");
    if (logits.cols != C_)
        throw std::invalid_argument("logits have " + std::to_string(logits.cols) +
                                    " classes but the selector was built for " + std::to_string(C_));
    if (ceilings && (pass_ != 0 || static_cast<int64_t>(ceilings->size()) != C_))
        throw std::logic_error("ceilings are for the first pass, one per class");
    std::vector<double> bounds(static_cast<size_t>(C_));
    for (int64_t c = 0; c < C_; ++c)
        bounds[static_cast<size_t>(c)] = ceilings ? std::min(bound(c), (*ceilings)[static_cast<size_t>(c)]) : bound(c);
    if (expected && static_cast<int64_t>(expected->size()) != C_)
        throw std::logic_error("expected offers: one per class");
    fed_ += feed_rows(logits, ids, exclude, head, num_threads, taken_, capacity_, bounds, heaps_,
                      ceilings ? expected : nullptr);
    serve_threads_ = num_threads;
    if (!ceilings) return true;
    // A class that kept its capacity under its ceiling has the capacity smallest keys of all the
    // rows (the capacity-th smallest is under the ceiling, so every key before it was offered).
    for (int64_t c = 0; c < C_; ++c)
        if ((*ceilings)[static_cast<size_t>(c)] < kInf &&
            static_cast<int64_t>(heaps_[static_cast<size_t>(c)].items.size()) < capacity_[static_cast<size_t>(c)])
            return false;
    return true;
}

std::vector<double> BalancedState::sampled_ceilings(const Matrix& logits, const uint8_t* exclude,
                                                    const HeadNorms& head, int num_threads, int64_t stride,
                                                    std::vector<int64_t>* expected) const {
    // Every stride-th row, with at least 256 of them (fewer: too noisy to be worth it).
    if (stride < 2 || pass_ != 0 || logits.rows < 256 * stride) return {};
    Matrix sample = logits;
    sample.rows = (logits.rows + stride - 1) / stride;
    sample.row_stride = logits.row_stride * stride;
    std::vector<uint8_t> skip;
    int64_t fed = logits.rows, sampled = sample.rows;
    if (exclude) {
        skip.resize(static_cast<size_t>(sample.rows));
        for (int64_t i = 0; i < sample.rows; ++i) skip[static_cast<size_t>(i)] = exclude[i * stride];
        for (int64_t i = 0; i < logits.rows; ++i) fed -= exclude[i] != 0;
        for (const auto e : skip) sampled -= e != 0;
    }
    // Class c keeps the k smallest keys of the sample, k its capacity's share of the sample with a
    // margin of 5 standard deviations: the k-th smallest is then a key that more than the capacity
    // of all rows reach, but for a chance of about 1e-7 per class (then the pass is made again).
    std::vector<int64_t> k(static_cast<size_t>(C_), 0);
    std::vector<double> bounds(static_cast<size_t>(C_), -kInf);
    for (int64_t c = 0; c < C_; ++c) {
        const auto cap = capacity_[static_cast<size_t>(c)];
        if (cap == 0 || fed == 0) continue;
        const double share = static_cast<double>(cap) * static_cast<double>(sampled) / static_cast<double>(fed);
        const auto want = static_cast<int64_t>(std::ceil(share + 5.0 * std::sqrt(share) + 4.0));
        if (want >= sampled) continue;  // the sample cannot bound this class
        k[static_cast<size_t>(c)] = want;
        bounds[static_cast<size_t>(c)] = kInf;
    }
    std::vector<ClassCandidates> heaps(static_cast<size_t>(C_));
    feed_rows(sample, RowIds{}, skip.empty() ? nullptr : skip.data(), head, num_threads, {}, k, bounds, heaps);
    std::vector<double> ceilings(static_cast<size_t>(C_), kInf);
    if (expected) expected->assign(static_cast<size_t>(C_), 0);
    for (int64_t c = 0; c < C_; ++c) {
        auto& h = heaps[static_cast<size_t>(c)];
        const auto want = k[static_cast<size_t>(c)];
        if (want == 0 || static_cast<int64_t>(h.items.size()) < want) continue;
        h.shrink(want);
        ceilings[static_cast<size_t>(c)] = h.bound;
        if (expected)
            (*expected)[static_cast<size_t>(c)] = static_cast<int64_t>(
                static_cast<double>(want) * static_cast<double>(fed) / static_cast<double>(sampled));
    }
    return ceilings;
}

void BalancedState::merge(const BalancedState& other) {
    if (&other == this) throw std::invalid_argument("cannot merge a selector with itself");
    if (done_ || other.done_)
        throw std::logic_error(std::string("cannot merge a finished selector: ") + (done_ ? "this one" : "the other") +
                               " has served its result (result() or advance() returned it); merge before advance()");
    if (other.C_ != C_ || other.B_ != B_ || other.extra_ != extra_ || other.pass_memory_ != pass_memory_)
        throw std::invalid_argument("cannot merge selectors built with different num_classes, budget or capacity");
    if (other.pass_ != pass_ || other.start_class_ != start_class_ || other.done_ != done_ ||
        other.taken_ != taken_)
        throw std::invalid_argument("cannot merge selectors that are at different passes");
    fed_ += other.fed_;
    for (int64_t c = 0; c < C_; ++c)
        heaps_[static_cast<size_t>(c)].absorb(other.heaps_[static_cast<size_t>(c)], capacity_[static_cast<size_t>(c)]);
}

bool BalancedState::advance() {
    if (done_) return true;
    // A later pass exists only because rows are left to feed: none fed yet means still waiting.
    if (pass_ > 0 && fed_ == 0) return false;
    if (pass_ == 0) available_ = fed_;
    const int64_t budget = std::min(B_, available_);
    int64_t max_row = -1;
    size_t total = 0;
    // Class by class and in parallel (nothing here depends on the other classes): the capacity
    // smallest, and the first prefix the serving reads (its quota and then some) sorted ahead.
    std::vector<size_t> presorted(static_cast<size_t>(C_), 0);
    for (int64_t c = start_class_; c < C_; ++c) total += heaps_[static_cast<size_t>(c)].items.size();
    const int threads = total > (size_t{1} << 16) ? thread_count(serve_threads_) : 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8) reduction(max : max_row)
    for (int64_t c = start_class_; c < C_; ++c) {
        auto& heap = heaps_[static_cast<size_t>(c)];
        heap.shrink(capacity_[static_cast<size_t>(c)]);
        for (const auto& cand : heap.items) max_row = std::max(max_row, cand.row);
        const int64_t q = quota(c, budget);
        if (q == 0) continue;
        auto& h = heap.items;
        const size_t upto = std::min(2 * static_cast<size_t>(q) + 16, h.size());
        if (upto < h.size()) std::nth_element(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(upto), h.end());
        std::sort(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(upto));
        presorted[static_cast<size_t>(c)] = upto;
    }
    total = 0;
    for (int64_t c = start_class_; c < C_; ++c) total += heaps_[static_cast<size_t>(c)].items.size();
    RowSet taken_now(max_row, total, !rows_fed_once_);
    std::vector<int64_t> picks_now;
    for (int64_t c = start_class_; c < C_; ++c) {
        const int64_t q = quota(c, budget);
        if (q == 0) continue;
        auto& h = heaps_[static_cast<size_t>(c)].items;
        if (!rows_fed_once_) taken_now.check_distinct(h, c);
        // The candidates in order, sorted only as far as the class reads them (about its quota
        // plus the few rows earlier classes took): nth_element, then sort, in growing prefixes.
        size_t sorted = presorted[static_cast<size_t>(c)];  // what the first sort_to below would sort
        const auto sort_to = [&](size_t upto) {
            upto = std::min(upto, h.size());
            if (upto <= sorted) return;
            if (upto < h.size()) std::nth_element(h.begin() + static_cast<std::ptrdiff_t>(sorted),
                                                  h.begin() + static_cast<std::ptrdiff_t>(upto), h.end());
            std::sort(h.begin() + static_cast<std::ptrdiff_t>(sorted), h.begin() + static_cast<std::ptrdiff_t>(upto));
            sorted = upto;
        };
        int64_t got = 0;
        for (size_t j = 0; j < h.size() && got < q; ++j) {
            if (j == sorted) sort_to(std::max<size_t>(2 * static_cast<size_t>(q) + 16, 2 * sorted));
            const int64_t row = h[j].row;
            if (taken_now.contains(row)) continue;
            picks_now.push_back(row);
            ++got;
        }
        if (got < q) {
            if (fed_ <= capacity_[static_cast<size_t>(c)])
                throw std::logic_error("BASE: class ran short with every row at hand (row fed twice?)");
            // Class c's heap lost rows it now needs: pass again from class c.
            picks_now.resize(picks_now.size() - static_cast<size_t>(got));
            picks_.insert(picks_.end(), picks_now.begin(), picks_now.end());
            taken_.insert(taken_.end(), picks_now.begin(), picks_now.end());
            std::sort(taken_.begin(), taken_.end());
            start_class_ = c;
            ++pass_;
            fed_ = 0;
            extra_ = grown_extra(extra_, C_);
            B_ = budget;  // the clipped budget from now on
            for (auto& hh : heaps_) hh = ClassCandidates{};
            set_capacities(extra_);
            return false;
        }
        for (auto it = picks_now.end() - got; it != picks_now.end(); ++it) taken_now.insert(*it);
    }
    picks_.insert(picks_.end(), picks_now.begin(), picks_now.end());
    for (auto& hh : heaps_) hh = ClassCandidates{};
    done_ = true;
    return true;
}

const std::vector<int64_t>& BalancedState::result() const {
    if (!done_) throw std::logic_error("the selection needs another pass over the pool");
    return picks_;
}

BalancedSnapshot BalancedState::snapshot() const {
    BalancedSnapshot s;
    s.num_classes = C_;
    s.budget = B_;
    s.extra = extra_;
    s.pass_memory = pass_memory_;
    s.pass = pass_;
    s.start_class = start_class_;
    s.available = available_;
    s.fed = fed_;
    s.done = done_;
    s.capacity = capacity_;
    s.taken = taken_;
    s.picks = picks_;
    for (int64_t c = 0; c < C_; ++c) {
        ClassCandidates h = heaps_[static_cast<size_t>(c)];  // a copy: at most the capacity smallest
        h.shrink(capacity_[static_cast<size_t>(c)]);
        s.counts.push_back(static_cast<int64_t>(h.items.size()));
        for (const auto& cand : h.items) {
            s.keys.push_back(cand.key);
            s.rows.push_back(cand.row);
        }
    }
    return s;
}

std::vector<int64_t> select_balanced(const Matrix& logits, int64_t budget, const uint8_t* exclude,
                                     const HeadNorms& head, int num_threads, int64_t sample_stride,
                                     SampledPass* info) {
    const int64_t extra = default_extra(logits.cols, budget);
    // Every row is fed once a pass here: no check for rows fed twice.
    auto fresh = [&] {
        BalancedState s(logits.cols, budget, extra);
        s.rows_fed_once();
        return s;
    };
    BalancedState state = fresh();
    // The first pass with sampled ceilings: most rows are then offered to no class at all (at
    // B = N / 2 the buffers' appends were about a third of the pass). If a ceiling was too low
    // (a sample unlike the pool), the pass is made again without them.
    std::vector<int64_t> expected;
    const std::vector<double> ceilings =
        state.sampled_ceilings(logits, exclude, head, num_threads, sample_stride, &expected);
    bool fed = false;
    if (!ceilings.empty()) {
        fed = state.update(logits, RowIds{}, exclude, head, num_threads, &ceilings, &expected);
        if (!fed) state = fresh();
    }
    if (info) *info = SampledPass{!ceilings.empty(), fed};
    if (!fed) state.update(logits, RowIds{}, exclude, head, num_threads);
    while (!state.advance()) state.update(logits, RowIds{}, exclude, head, num_threads);
    return state.result();
}

}  // namespace alscale
