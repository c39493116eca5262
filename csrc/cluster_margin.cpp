#include "cluster_margin.hpp"

#include <algorithm>

namespace alscale {
namespace {

struct Item {
    int64_t cluster;
    uint64_t key;
    int64_t row;
};

}  // namespace

std::vector<int64_t> cluster_round_robin(const int64_t* rows, const int64_t* labels, int64_t m, int64_t budget,
                                         uint64_t seed) {
    std::vector<int64_t> out;
    if (m <= 0 || budget <= 0) return out;
    std::vector<Item> items(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) items[i] = Item{labels[i], round_robin_key(seed, rows[i]), rows[i]};
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
        if (a.cluster != b.cluster) return a.cluster < b.cluster;
        if (a.key != b.key) return a.key < b.key;
        return a.row < b.row;
    });
    // Segments [start, start + count) per cluster, ordered by (count, cluster id).
    struct Segment {
        int64_t count, cluster, start;
    };
    std::vector<Segment> seg;
    for (int64_t i = 0; i < m;) {
        int64_t j = i;
        while (j < m && items[j].cluster == items[i].cluster) ++j;
        seg.push_back(Segment{j - i, items[i].cluster, i});
        i = j;
    }
    std::sort(seg.begin(), seg.end(), [](const Segment& a, const Segment& b) {
        return a.count < b.count || (a.count == b.count && a.cluster < b.cluster);
    });
    const int64_t take = std::min(budget, m);
    out.reserve(static_cast<size_t>(take));
    // Round r visits the clusters with more than r candidates: a suffix of the sorted segments.
    size_t first = 0;
    for (int64_t r = 0; static_cast<int64_t>(out.size()) < take; ++r) {
        while (first < seg.size() && seg[first].count <= r) ++first;
        for (size_t c = first; c < seg.size() && static_cast<int64_t>(out.size()) < take; ++c)
            out.push_back(items[seg[c].start + r].row);
    }
    return out;
}

}  // namespace alscale
