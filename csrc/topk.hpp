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

// A pool row's candidacy in a top-k over rows named by global ids (shards, chunks): ordered by
// (key, id); pos is where it sits in the caller's arrays.
struct Ranked {
    double key;
    int64_t id;
    int64_t pos;
};
inline bool operator<(const Ranked& a, const Ranked& b) { return a.key < b.key || (a.key == b.key && a.id < b.id); }

// The k smallest (key = ±score, minus for largest) non-excluded rows, sorted, ties to the smaller
// global id ids[i] (ids.ids == nullptr: ids.offset + i). What one shard or chunk contributes.
std::vector<Ranked> topk_ranked(const double* scores, int64_t n, int64_t k, const uint8_t* exclude, bool largest,
                                const int64_t* ids, int64_t offset, int num_threads);

// Throws std::invalid_argument("<what> <id><why>") for the first id that appears twice.
void check_distinct(std::vector<int64_t> ids, const char* what, const char* why);

// The k smallest (keys[i], ids[i]) of candidates gathered from shards or chunks, sorted; pos
// indexes the inputs. Throws if an id appears twice among them (overlapping shards).
std::vector<Ranked> merge_ranked(const double* keys, const int64_t* ids, int64_t n, int64_t k);

// Keeps the k smallest items of a stream: amortized O(1) per push (buffer + nth_element).
template <class Item>
class BasicTopK {
public:
    explicit BasicTopK(int64_t k) : k_(k) {}
    // True when c could still be among the k smallest (cheap pre-check for callers).
    bool admits(const Item& c) const { return !full_ || c < bound_; }
    void push(const Item& c) {
        if (!admits(c)) return;
        buf_.push_back(c);
        if (static_cast<int64_t>(buf_.size()) >= 2 * k_ + 64) shrink();
    }
    // The k smallest, sorted.
    std::vector<Item> sorted() {
        shrink();
        std::sort(buf_.begin(), buf_.end());
        return buf_;
    }
    void absorb(BasicTopK&& other) {
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
    std::vector<Item> buf_;
    Item bound_{};
    bool full_ = false;
};
using TopK = BasicTopK<Candidate>;

}  // namespace alscale
