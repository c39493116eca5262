// Top-k selection over a score vector: the k smallest (or largest) scores among rows not
// excluded, in order, ties to the smaller row index. O(n) expected time, O(k) memory per thread.
#pragma once

#include <cstdint>
#include <algorithm>
#include <vector>

namespace alscale {

struct Candidate {
    double key;
    int64_t row;
};

// Strict total order used everywhere: by key, then by row.
inline bool operator<(const Candidate& a, const Candidate& b) {
    return a.key < b.key || (a.key == b.key && a.row < b.row);
}

// exclude: nullptr or n bytes (non-zero = excluded). k is clipped to the rows available.
std::vector<int64_t> select_topk(const double* scores, int64_t n, int64_t k, const uint8_t* exclude,
                                 bool largest, int num_threads);

// Keeps the k smallest candidates of a stream: amortized O(1) per push (buffer + nth_element).
class TopK {
public:
    explicit TopK(int64_t k) : k_(k) {}
    // True when c could still be among the k smallest (cheap pre-check for callers).
    bool admits(const Candidate& c) const { return !full_ || c < bound_; }
    void push(const Candidate& c) {
        if (!admits(c)) return;
        buf_.push_back(c);
        if (static_cast<int64_t>(buf_.size()) >= 2 * k_ + 64) shrink();
    }
    // The k smallest, sorted.
    std::vector<Candidate> sorted() {
        shrink();
        std::sort(buf_.begin(), buf_.end());
        return buf_;
    }
    void absorb(TopK&& other) {
        for (const auto& c : other.buf_) push(c);
    }

private:
    void shrink() {
        if (static_cast<int64_t>(buf_.size()) <= k_) return;
        std::nth_element(buf_.begin(), buf_.begin() + k_, buf_.end());
        buf_.resize(static_cast<size_t>(k_));
        bound_ = *std::max_element(buf_.begin(), buf_.end());
        full_ = true;
    }
    int64_t k_;
    std::vector<Candidate> buf_;
    Candidate bound_{0, 0};
    bool full_ = false;
};

}  // namespace alscale
