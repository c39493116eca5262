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

// Offers a candidate to a bounded max-heap; returns the new filter bound of the class.
inline double offer(std::vector<Candidate>& heap, int64_t capacity, const Candidate& c) {
    if (static_cast<int64_t>(heap.size()) < capacity) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end());
    } else if (c < heap.front()) {
        std::pop_heap(heap.begin(), heap.end());
        heap.back() = c;
        std::push_heap(heap.begin(), heap.end());
    }
    return static_cast<int64_t>(heap.size()) < capacity ? kInf : heap.front().key;
}

// Keeps the `capacity` smallest of a and b in a (as a max-heap).
void merge_heap(std::vector<Candidate>& a, const std::vector<Candidate>& b, int64_t capacity) {
    if (b.empty()) return;
    a.insert(a.end(), b.begin(), b.end());
    if (static_cast<int64_t>(a.size()) > capacity) {
        std::nth_element(a.begin(), a.begin() + capacity, a.end());
        a.resize(static_cast<size_t>(capacity));
    }
    std::make_heap(a.begin(), a.end());
}

// A row fed twice in one pass would be counted twice: refuse it where it matters, among the
// candidates of a class.
void check_distinct_rows(const std::vector<Candidate>& candidates) {
    std::vector<int64_t> rows;
    rows.reserve(candidates.size());
    for (const auto& c : candidates) rows.push_back(c.row);
    check_distinct(std::move(rows), "row ", " was fed more than once in this pass (overlapping chunks or row_ids?)");
}

template <class T>
struct UpdateContext {
    RowReader<T> read;
    InverseNorms inv;
    std::vector<double> r;
    std::vector<double> bound;  // per class: a row can enter its heap only with a score <= bound
    std::vector<int64_t> hits;
    std::vector<std::vector<Candidate>> heaps;
    int64_t fed = 0;
};

// The hot loop: per row, its boundary distances, then the candidates for every class whose
// bound they pass (rare once heaps are full). Returns the first non-finite row or `end`.
template <class T, int B>
ALSCALE_INLINE int64_t balanced_rows(UpdateContext<T>& ctx, const int64_t& n, const RowIds& ids,
                                     const uint8_t* const& exclude, const std::vector<int64_t>& taken,
                                     const std::vector<int64_t>& capacity, const int64_t& begin,
                                     const int64_t& end) {
    double* r = ctx.r.data();
    double* b = ctx.bound.data();
    for (int64_t i = begin; i < end; ++i) {
        if (exclude && exclude[i]) continue;
        const int64_t row = ids[i];
        if (!taken.empty() && std::binary_search(taken.begin(), taken.end(), row)) continue;
        const T* x = ctx.read(i);
        const RowMax<T> mx = row_max<T, B, false>(x, n);
        if (!mx.finite) return i;
        const int64_t p = mx.arg;
        ctx.hits.clear();
        const double m = boundary_row<T, B>(x, n, static_cast<double>(mx.max), ctx.inv.row(p), r, b, &ctx.hits);
        for (const int64_t c0 : ctx.hits) {
            const int64_t c1 = std::min<int64_t>(c0 + 32, n);
            for (int64_t c = c0; c < c1; ++c)
                if (r[c] <= b[c] && c != p)
                    b[c] = offer(ctx.heaps[static_cast<size_t>(c)], capacity[static_cast<size_t>(c)],
                                 Candidate{r[c], row});
        }
        if (m <= b[p])
            b[p] = offer(ctx.heaps[static_cast<size_t>(p)], capacity[static_cast<size_t>(p)], Candidate{m, row});
        ++ctx.fed;
    }
    return end;
}
ALSCALE_MULTIVERSION(balanced_rows)

}  // namespace

BalancedState::BalancedState(int64_t num_classes, int64_t budget, int64_t extra)
    : C_(num_classes), B_(budget), extra_(extra), heaps_(static_cast<size_t>(num_classes)) {
    if (num_classes < 1) throw std::invalid_argument("num_classes must be at least 1");
    if (budget < 0) throw std::invalid_argument("budget must be non-negative");
    if (extra < 0) throw std::invalid_argument("capacity must be non-negative");
    set_capacities(extra);
}

BalancedState::BalancedState(const BalancedSnapshot& s)
    : C_(s.num_classes), B_(s.budget), extra_(s.extra), pass_(s.pass), start_class_(s.start_class),
      available_(s.available), fed_(s.fed), done_(s.done), capacity_(s.capacity), taken_(s.taken),
      picks_(s.picks) {
    auto bad = [](const std::string& what) { throw std::invalid_argument("inconsistent BalancedSelector state: " + what); };
    if (C_ < 1) bad("num_classes < 1");
    if (B_ < 0 || extra_ < 0 || pass_ < 0 || available_ < 0 || fed_ < 0) bad("a negative count");
    if (start_class_ < 0 || start_class_ > C_) bad("start_class out of range");
    if (static_cast<int64_t>(capacity_.size()) != C_ || static_cast<int64_t>(s.counts.size()) != C_)
        bad("capacity and counts need one entry per class");
    if (s.keys.size() != s.rows.size()) bad("keys and rows differ in length");
    if (!std::is_sorted(taken_.begin(), taken_.end()) ||
        std::adjacent_find(taken_.begin(), taken_.end()) != taken_.end())
        bad("taken rows must be sorted and distinct");
    if (picks_.size() != taken_.size() && !done_) bad("picks and taken rows differ");
    heaps_.resize(static_cast<size_t>(C_));
    size_t at = 0;
    for (int64_t c = 0; c < C_; ++c) {
        const int64_t count = s.counts[static_cast<size_t>(c)];
        if (count < 0 || count > capacity_[static_cast<size_t>(c)] || capacity_[static_cast<size_t>(c)] < 0 ||
            static_cast<size_t>(count) > s.keys.size() - at)
            bad("candidate counts do not fit the capacities and arrays");
        auto& h = heaps_[static_cast<size_t>(c)];
        for (int64_t j = 0; j < count; ++j) {
            if (s.rows[at + static_cast<size_t>(j)] < 0 || std::isnan(s.keys[at + static_cast<size_t>(j)]))
                bad("a candidate with a negative row or a NaN score");
            h.push_back(Candidate{s.keys[at + static_cast<size_t>(j)], s.rows[at + static_cast<size_t>(j)]});
        }
        std::make_heap(h.begin(), h.end());
        at += static_cast<size_t>(count);
    }
    if (at != s.keys.size()) bad("more candidates than the counts say");
}

void BalancedState::set_capacities(int64_t extra) {
    // Class c needs its quota plus room for the rows earlier classes of this pass may take from
    // it (at most their quotas together): with that much, it can never run short.
    capacity_.assign(static_cast<size_t>(C_), 0);
    int64_t before = 0;
    for (int64_t c = start_class_; c < C_; ++c) {
        const int64_t q = quota(c, B_);
        capacity_[static_cast<size_t>(c)] = q == 0 ? 0 : q + std::min(before, extra);
        before += q;
    }
}

double BalancedState::bound(int64_t c) const {
    const auto cap = capacity_[static_cast<size_t>(c)];
    if (c < start_class_ || cap == 0) return -kInf;
    const auto& h = heaps_[static_cast<size_t>(c)];
    return static_cast<int64_t>(h.size()) < cap ? kInf : h.front().key;
}

void BalancedState::update(const Matrix& logits, RowIds ids, const uint8_t* exclude,
                           const double* inv_norm, int num_threads) {
    if (done_) throw std::logic_error("the selection is complete; build a new selector");
    if (logits.cols != C_)
        throw std::invalid_argument("logits have " + std::to_string(logits.cols) +
                                    " classes but the selector was built for " + std::to_string(C_));
    const int64_t n = C_;
    std::vector<double> bounds(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c) bounds[static_cast<size_t>(c)] = bound(c);
    const int threads = row_threads(num_threads, logits.rows);

    auto run = [&](auto tag) {
        using T = decltype(tag);
        std::vector<std::vector<std::vector<Candidate>>> local(static_cast<size_t>(threads));
        std::vector<int64_t> fed(static_cast<size_t>(threads), 0);
        parallel_rows(
            logits.rows, threads,
            [&](int) {
                return UpdateContext<T>{RowReader<T>(logits),
                                        InverseNorms(inv_norm, n),
                                        std::vector<double>(static_cast<size_t>(n)),
                                        bounds,
                                        {},
                                        std::vector<std::vector<Candidate>>(static_cast<size_t>(n)),
                                        0};
            },
            [&](UpdateContext<T>& ctx, int64_t begin, int64_t end) {
                return balanced_rows_dispatch<T>(ctx, n, ids, exclude, taken_, capacity_, begin, end);
            },
            [&](UpdateContext<T>& ctx, int t) {
                local[static_cast<size_t>(t)] = std::move(ctx.heaps);
                fed[static_cast<size_t>(t)] = ctx.fed;
            });
        for (int t = 0; t < threads; ++t) fed_ += fed[static_cast<size_t>(t)];
        ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
        for (int64_t c = 0; c < n; ++c)
            errors.run([&] {
                for (int t = 0; t < threads; ++t)
                    merge_heap(heaps_[static_cast<size_t>(c)], local[static_cast<size_t>(t)][static_cast<size_t>(c)],
                               capacity_[static_cast<size_t>(c)]);
            });
        errors.rethrow();
    };
    if (logits.dtype == DType::f64)
        run(double{});
    else
        run(float{});
}

void BalancedState::merge(const BalancedState& other) {
    if (&other == this) throw std::invalid_argument("cannot merge a selector with itself");
    if (other.C_ != C_ || other.B_ != B_ || other.extra_ != extra_)
        throw std::invalid_argument("cannot merge selectors built with different num_classes, budget or capacity");
    if (other.pass_ != pass_ || other.start_class_ != start_class_ || other.done_ != done_ ||
        other.taken_ != taken_)
        throw std::invalid_argument("cannot merge selectors that are at different passes");
    if (done_) throw std::logic_error("the selection is complete; nothing to merge");
    fed_ += other.fed_;
    for (int64_t c = 0; c < C_; ++c)
        merge_heap(heaps_[static_cast<size_t>(c)], other.heaps_[static_cast<size_t>(c)],
                   capacity_[static_cast<size_t>(c)]);
}

bool BalancedState::advance() {
    if (done_) return true;
    // A later pass exists only because rows are left to feed: none fed yet means still waiting.
    if (pass_ > 0 && fed_ == 0) return false;
    if (pass_ == 0) available_ = fed_;
    const int64_t budget = std::min(B_, available_);
    std::unordered_set<int64_t> taken_now;
    std::vector<int64_t> picks_now;
    for (int64_t c = start_class_; c < C_; ++c) {
        const int64_t q = quota(c, budget);
        if (q == 0) continue;
        auto& h = heaps_[static_cast<size_t>(c)];
        std::sort(h.begin(), h.end());
        check_distinct_rows(h);
        int64_t got = 0;
        for (const auto& cand : h) {
            if (got == q) break;
            if (taken_now.count(cand.row)) continue;
            picks_now.push_back(cand.row);
            ++got;
        }
        if (got < q) {
            if (fed_ <= capacity_[static_cast<size_t>(c)])
                throw std::logic_error("BASE: class ran short with every row at hand (row fed twice?)");
            // Class c's heap lost rows it now needs: pass again from class c.
            picks_now.resize(picks_now.size() - static_cast<size_t>(got));
            for (int64_t row : picks_now) taken_now.insert(row);
            picks_.insert(picks_.end(), picks_now.begin(), picks_now.end());
            taken_.insert(taken_.end(), picks_now.begin(), picks_now.end());
            std::sort(taken_.begin(), taken_.end());
            start_class_ = c;
            ++pass_;
            fed_ = 0;
            extra_ = std::min(std::max<int64_t>(4 * extra_, 64), std::max(extra_, max_extra(C_)));
            B_ = budget;  // the clipped budget from now on
            for (auto& hh : heaps_) hh.clear();
            set_capacities(extra_);
            return false;
        }
        for (auto it = picks_now.end() - got; it != picks_now.end(); ++it) taken_now.insert(*it);
    }
    picks_.insert(picks_.end(), picks_now.begin(), picks_now.end());
    for (auto& hh : heaps_) std::vector<Candidate>().swap(hh);
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
    s.pass = pass_;
    s.start_class = start_class_;
    s.available = available_;
    s.fed = fed_;
    s.done = done_;
    s.capacity = capacity_;
    s.taken = taken_;
    s.picks = picks_;
    for (const auto& h : heaps_) {
        s.counts.push_back(static_cast<int64_t>(h.size()));
        for (const auto& c : h) {
            s.keys.push_back(c.key);
            s.rows.push_back(c.row);
        }
    }
    return s;
}

std::vector<int64_t> select_balanced(const Matrix& logits, int64_t budget, const uint8_t* exclude,
                                     const double* inv_norm, int num_threads) {
    BalancedState state(logits.cols, budget, default_extra(logits.cols, budget));
    do {
        state.update(logits, RowIds{}, exclude, inv_norm, num_threads);
    } while (!state.advance());
    return state.result();
}

}  // namespace alscale
