// BASE (Balanced Selection, Emam et al. 2021), exact and streaming.
//
// Each class keeps its best candidates (score, row) in a bounded buffer (ClassCandidates): O(C * k)
// memory, never N x C. Rows are fed in chunks (any order, any chunking, from any number of states merged), then
// advance() serves the classes in order 0..C-1, each taking its quota of the smallest candidates
// not yet taken. If earlier classes took so many of a class's candidates that its heap ran short
// (heavy ties), advance() returns false and sets up one more pass over the pool for the remaining
// classes, with the rows taken so far excluded and capacities that guarantee progress: the first
// classes of the new pass get room for every row the classes before them in the pass can take
// (quota + before, so they cannot run short), as many classes as kPassMemory candidates allow,
// and the classes after them a grown extra. The result is always the one the official rule gives
// on the whole pool; passes_bound() says how many passes the worst case (every score tied) takes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "head.hpp"
#include "topk.hpp"

namespace alscale {

// Everything a BalancedState is, as flat arrays: what state_dict() serializes and merge checks.
// The `capacity` smallest candidates (by key, then row) offered to one class, kept lazily: an
// offer at or under the bound is appended; at twice the capacity the buffer shrinks to the
// capacity smallest (nth_element) and the bound drops to the largest kept key. Amortized O(1) per
// offer with sequential writes (a binary heap's sift-down touches O(log k) cache lines of a
// structure that, at large budgets, no longer fits in the caches: what made BASE's cost grow with B).
struct ClassCandidates {
    std::vector<Candidate> items;
    double bound = kInf;  // a larger key can never be among the capacity smallest

    // Appends c (the caller checked c.key <= bound); returns the bound.
    double offer(const Candidate& c, int64_t capacity) {
        items.push_back(c);
        if (static_cast<int64_t>(items.size()) >= 2 * capacity + 16) shrink(capacity);
        return bound;
    }
    // Keeps only the capacity smallest; exact whatever order the offers came in.
    void shrink(int64_t capacity) {
        if (static_cast<int64_t>(items.size()) < capacity || capacity <= 0) return;
        std::nth_element(items.begin(), items.begin() + (capacity - 1), items.end());
        items.resize(static_cast<size_t>(capacity));
        bound = std::min(bound, items.back().key);
    }
    // Takes other's candidates (a disjoint set of offers); the smaller bound holds for the union.
    void absorb(const ClassCandidates& other, int64_t capacity) {
        items.insert(items.end(), other.items.begin(), other.items.end());
        settle(other.bound, capacity);
    }
    // The same, taking other's buffer itself where this one is empty (no copy).
    void absorb(ClassCandidates&& other, int64_t capacity) {
        if (items.empty() && other.items.size() >= items.capacity())
            items.swap(other.items);
        else
            items.insert(items.end(), other.items.begin(), other.items.end());
        settle(other.bound, capacity);
    }

private:
    void settle(double other_bound, int64_t capacity) {
        bound = std::min(bound, other_bound);
        const auto n = static_cast<int64_t>(items.size());
        if (n >= 2 * capacity + 16 || (n >= capacity && bound == kInf)) shrink(capacity);
    }
};

struct BalancedSnapshot {
    int64_t num_classes = 0, budget = 0, extra = 0, pass_memory = 0;
    int64_t pass = 0, start_class = 0, available = 0, fed = 0;
    bool done = false;
    std::vector<int64_t> capacity;  // per class
    std::vector<int64_t> taken;     // sorted rows taken by classes < start_class
    std::vector<int64_t> picks;     // picks of classes < start_class, in order
    std::vector<int64_t> counts;    // candidates per class
    std::vector<double> keys;       // concatenated candidates, class by class
    std::vector<int64_t> rows;
};

class BalancedState {
public:
    // extra: candidates kept per class beyond its quota (more: fewer extra passes on heavy ties).
    // pass_memory: candidates a pass after the first may spend on classes it guarantees (0: none).
    BalancedState(int64_t num_classes, int64_t budget, int64_t extra, int64_t pass_memory = kPassMemory);
    explicit BalancedState(const BalancedSnapshot& s);

    // Feeds rows of the current pass. exclude: nullptr or logits.rows bytes (non-zero: skip).
    // head: the head's inverse norms (head.hpp; empty: no weight).
    // ceilings (first pass only; nullptr: none): per class, no key above it is offered. Returns
    // whether every class with a finite ceiling still kept its capacity of candidates: then the
    // state is exactly the one update() without ceilings gives; if not, the caller must start over.
    // expected (with ceilings; nullptr: none): per class, about how many rows its ceiling lets
    // through (sampled_ceilings' estimate): the buffers are sized for it up front.
    bool update(const Matrix& logits, RowIds ids, const uint8_t* exclude, const HeadNorms& head, int num_threads,
                const std::vector<double>* ceilings = nullptr, const std::vector<int64_t>* expected = nullptr);
    // Per class, a key that about 1.4x its capacity of the rows reach (estimated from every
    // stride-th row; +inf where the sample cannot tell): update(..., &ceilings) then offers a
    // class few more rows than it keeps. Empty when the pool is too small to sample.
    // expected (optional): per class, the rows the sample says reach its ceiling (0: unknown).
    std::vector<double> sampled_ceilings(const Matrix& logits, const uint8_t* exclude, const HeadNorms& head,
                                         int num_threads, int64_t stride,
                                         std::vector<int64_t>* expected = nullptr) const;
    // Adds another state's candidates (same classes, budget, extra and pass).
    void merge(const BalancedState& other);
    // Serves the classes; true when the result is complete, false when the pool must be fed again.
    bool advance();
    // The caller feeds every row at most once a pass by construction (select_balanced: the whole
    // matrix, once): advance() then skips its check for rows fed twice.
    void rows_fed_once() { rows_fed_once_ = true; }
    bool done() const { return done_; }
    const std::vector<int64_t>& result() const;
    BalancedSnapshot snapshot() const;

    int64_t num_classes() const { return C_; }
    int64_t pass() const { return pass_; }
    int64_t start_class() const { return start_class_; }
    // Default pass_memory: 2^23 candidates (128 MiB).
    static constexpr int64_t kPassMemory = int64_t{1} << 23;
    // Passes the worst case takes (every score tied, so each class's best rows are the earlier
    // classes' picks) from pass 1 on, for this state's capacities: the guarantee per pass.
    int64_t passes_bound() const;

private:
    int64_t quota(int64_t c, int64_t budget) const { return budget / C_ + (c < budget % C_ ? 1 : 0); }
    void set_capacities(int64_t extra);
    double bound(int64_t c) const;  // filter threshold of class c

    int64_t C_, B_, extra_, pass_memory_;
    int64_t pass_ = 0, start_class_ = 0, available_ = 0, fed_ = 0;
    bool done_ = false;
    bool rows_fed_once_ = false;  // not part of the state either (rows_fed_once())
    int serve_threads_ = 1;  // advance()'s threads: the last update's num_threads (not part of the state)
    std::vector<int64_t> capacity_;
    std::vector<int64_t> taken_;
    std::vector<int64_t> picks_;
    std::vector<ClassCandidates> heaps_;
};

// Default extra candidates per class: room for the rows earlier classes take (measured at
// ImageNet scale, B = 10K: at most 28 of a class's best rows, 7 on average), with a wide margin.
inline int64_t default_extra(int64_t num_classes, int64_t budget) {
    return 64 + 4 * (budget / std::max<int64_t>(1, num_classes));
}

// Rows between the sampled rows of select_balanced's first pass (BalancedState::sampled_ceilings).
constexpr int64_t kSampleStride = 64;

// How select_balanced's first pass went: ceilings sampled, and whether they held (if not, the
// pass was made again without them). For tests and benchmarks.
struct SampledPass {
    bool sampled = false;
    bool held = false;
};

// One-shot BASE over a whole matrix: passes until done. Returns the selected rows in order. The
// first pass offers each class only the rows under a ceiling sampled from every sample_stride-th
// row (0: no sampling); the result is the same whatever the stride.
std::vector<int64_t> select_balanced(const Matrix& logits, int64_t budget, const uint8_t* exclude,
                                     const HeadNorms& head, int num_threads, int64_t sample_stride = kSampleStride,
                                     SampledPass* info = nullptr);

}  // namespace alscale
