#include "graph_hac.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "common.hpp"
#include "hac.hpp"

namespace alscale {
namespace {

// One adjacency entry: a neighbour cluster (its representative) and the total similarity
// Σ s(a, b) between the two clusters. Packed: 12 bytes with 32-bit ids.
template <class Id>
struct __attribute__((packed)) Nb {
    Id id;
    double w;
};

// A cluster's adjacency: arena[off, off + len), sorted by id, inside a slot of cap entries.
template <class Id>
struct Slot {
    int64_t off = 0;
    Id len = 0;
    Id cap = 0;
};

// Heap entry: the best neighbour of lo or of hi (the pair, smaller representative first). It is
// current while one of the two still has the other as its best neighbour at this similarity.
template <class Id>
struct Entry {
    double sim;
    Id lo, hi;
};

// Priority: larger similarity, then the smaller pair (lexicographic).
struct Worse {
    template <class E>
    bool operator()(const E& x, const E& y) const {
        if (x.sim != y.sim) return x.sim < y.sim;
        if (x.lo != y.lo) return x.lo > y.lo;
        return x.hi > y.hi;
    }
};

// The symmetric adjacency of every cluster in one malloc'd arena (realloc resizes it without a
// second copy), and room at its end for the lists that merges make.
template <class Id>
struct Graph {
    std::vector<Slot<Id>> slot;
    Nb<Id>* arena = nullptr;
    int64_t used = 0, capacity = 0;

    Graph() = default;
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    ~Graph() { release(); }

    void release() {
        std::free(arena);
        arena = nullptr;
        used = capacity = 0;
        std::vector<Slot<Id>>().swap(slot);
    }

    Nb<Id>* begin(int64_t a) { return arena + slot[a].off; }
    Nb<Id>* end(int64_t a) { return arena + slot[a].off + slot[a].len; }

    void resize(int64_t entries) {
        void* p = std::realloc(arena, static_cast<size_t>(std::max<int64_t>(entries, 1)) * sizeof(Nb<Id>));
        if (!p) throw std::bad_alloc();
        arena = static_cast<Nb<Id>*>(p);
        capacity = entries;
    }

    // Slides the live lists to the front, in arena order; slots shrink to their lists.
    void compact() {
        std::vector<Id> order;
        for (size_t a = 0; a < slot.size(); ++a)
            if (slot[a].cap > 0) order.push_back(static_cast<Id>(a));
        std::sort(order.begin(), order.end(), [&](Id x, Id y) { return slot[x].off < slot[y].off; });
        int64_t w = 0;
        for (Id a : order) {
            Slot<Id>& s = slot[a];
            std::memmove(arena + w, arena + s.off, static_cast<size_t>(s.len) * sizeof(Nb<Id>));
            s.off = w;
            s.cap = s.len;
            w += s.len;
        }
        used = w;
    }

    // r's list becomes `joined` (r and o were merged; o's slot is freed): in r's or o's slot when
    // it fits or either ends the arena, else at the end (compacting first when full).
    void place(Id r, Id o, const std::vector<Nb<Id>>& joined) {
        const int64_t len = static_cast<int64_t>(joined.size());
        Slot<Id>& sr = slot[r];
        Slot<Id>& so = slot[o];
        if (len > sr.cap) {
            if (len <= so.cap) {
                std::swap(sr.off, so.off);
                std::swap(sr.cap, so.cap);
            } else if (sr.off + sr.cap == used && sr.off + len <= capacity) {
                used = sr.off + len;
                sr.cap = static_cast<Id>(len);
            } else if (so.off + so.cap == used && so.off + len <= capacity) {
                sr.off = so.off;
                used = so.off + len;
                sr.cap = static_cast<Id>(len);
            } else {
                sr = so = Slot<Id>{};
                if (used + len > capacity) compact();
                if (used + len > capacity) resize(used + len + capacity / 8);  // not reached: merges only shrink the total
                sr.off = used;
                sr.cap = static_cast<Id>(len);
                used += len;
            }
        }
        if (len) std::memcpy(arena + sr.off, joined.data(), static_cast<size_t>(len) * sizeof(Nb<Id>));
        sr.len = static_cast<Id>(len);
        so = Slot<Id>{};
    }
};

// edges(f) calls f(a, b, s) for every given edge (validating it). The lists are filled with
// duplicates in one exact-size arena, then sorted by neighbour and deduplicated in place (the
// largest similarity stays), slid together, and the arena is resized to the result plus 1/8.
template <class Id, class Edges>
void build(int64_t n, const Edges& edges, int threads, Graph<Id>& g) {
    std::vector<int64_t> end(static_cast<size_t>(n) + 1, 0);
    edges([&](int64_t a, int64_t b, float s) {
        if (a == b || !(s > 0.0f)) return;
        ++end[a + 1];
        ++end[b + 1];
    });
    for (int64_t i = 0; i < n; ++i) end[i + 1] += end[i];
    g.resize(end[n]);
    edges([&](int64_t a, int64_t b, float s) {
        if (a == b || !(s > 0.0f)) return;
        g.arena[end[a]++] = Nb<Id>{static_cast<Id>(b), static_cast<double>(s)};
        g.arena[end[b]++] = Nb<Id>{static_cast<Id>(a), static_cast<double>(s)};
    });
    // now end[i] is where list i ends and end[i - 1] where it starts
    g.slot.assign(static_cast<size_t>(n), Slot<Id>{});
    ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1024)
    for (int64_t i = 0; i < n; ++i)
        errors.run([&] {
            Nb<Id>* b = g.arena + (i ? end[i - 1] : 0);
            Nb<Id>* e = g.arena + end[i];
            std::sort(b, e, [](const Nb<Id>& x, const Nb<Id>& y) {
                return x.id < y.id || (x.id == y.id && x.w > y.w);
            });
            // the largest of duplicates stays (first after the sort)
            e = std::unique(b, e, [](const Nb<Id>& x, const Nb<Id>& y) { return x.id == y.id; });
            g.slot[i].len = g.slot[i].cap = static_cast<Id>(e - b);
        });
    errors.rethrow();
    int64_t w = 0;
    for (int64_t i = 0; i < n; ++i) {
        Slot<Id>& s = g.slot[i];
        std::memmove(g.arena + w, g.arena + (i ? end[i - 1] : 0), static_cast<size_t>(s.len) * sizeof(Nb<Id>));
        s.off = w;
        w += s.len;
    }
    std::vector<int64_t>().swap(end);
    g.used = w;
    g.resize(w + std::max<int64_t>(w / 8, 16));
}

// Index of id in the sorted list [b, e), or of where it would go.
template <class Id>
Nb<Id>* find(Nb<Id>* b, Nb<Id>* e, Id id) {
    return std::lower_bound(b, e, id, [](const Nb<Id>& x, Id v) { return x.id < v; });
}

template <class Id>
struct CompactMerge {
    Id a, b;  // the union is held in a (the smaller representative)
    double height;
};

// The merge loop on the adjacency (freed before the linkage is made).
template <class Id>
std::vector<double> merge_all(int64_t n, Graph<Id>& g) {
    std::vector<Id> size(static_cast<size_t>(n), 1);  // 0: merged into another cluster
    std::vector<double> bsim(static_cast<size_t>(n), -1.0);
    std::vector<Id> bnb(static_cast<size_t>(n), -1);
    std::vector<Entry<Id>> heap;
    // Lazy invalidation leaves stale entries; past this many the heap is rebuilt from the
    // current best neighbours (which alone decide the merges), so it stays within 1.5 n.
    const size_t limit = static_cast<size_t>(n + n / 2 + 16);
    heap.reserve(limit);
    auto rebuild = [&] {
        heap.clear();
        for (int64_t a = 0; a < n; ++a)
            if (size[a] && bnb[a] >= 0) heap.push_back(Entry<Id>{bsim[a], std::min<Id>(a, bnb[a]), std::max<Id>(a, bnb[a])});
        std::make_heap(heap.begin(), heap.end(), Worse{});
    };
    auto push = [&](Id a) {
        if (bnb[a] < 0) return;
        if (heap.size() >= limit) return rebuild();  // a's entry is among the rebuilt ones
        heap.push_back(Entry<Id>{bsim[a], std::min(a, bnb[a]), std::max(a, bnb[a])});
        std::push_heap(heap.begin(), heap.end(), Worse{});
    };
    auto current = [&](const Entry<Id>& t) {
        return (size[t.lo] && bnb[t.lo] == t.hi && bsim[t.lo] == t.sim) ||
               (size[t.hi] && bnb[t.hi] == t.lo && bsim[t.hi] == t.sim);
    };
    auto rescan = [&](Id a) {
        double bs = -1.0;
        Id bn = -1;
        const double sa = static_cast<double>(size[a]);
        for (const Nb<Id>* e = g.begin(a); e != g.end(a); ++e) {
            const Id id = e->id;
            const double sim = e->w / (sa * static_cast<double>(size[id]));
            if (sim > bs || (sim == bs && id < bn)) {
                bs = sim;
                bn = id;
            }
        }
        bsim[a] = bs;
        bnb[a] = bn;
        push(a);
    };
    for (int64_t i = 0; i < n; ++i) rescan(static_cast<Id>(i));

    std::vector<CompactMerge<Id>> merges;
    merges.reserve(static_cast<size_t>(n - 1));
    std::vector<Nb<Id>> joined;
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), Worse{});
        const Entry<Id> top = heap.back();
        heap.pop_back();
        if (!current(top)) continue;  // stale
        const Id r = top.lo, o = top.hi;  // the union keeps the smaller representative
        // Similarities above 1 (float rounding of duplicate points' cosine, or a graph's own
        // values) would give negative heights, which scipy refuses: a height is at least 0.
        merges.push_back(CompactMerge<Id>{r, o, std::max(0.0, 1.0 - top.sim)});
        // Joined adjacency: sorted merge of both lists without each other, weights added.
        joined.clear();
        const Nb<Id>*ar = g.begin(r), *re = g.end(r), *ao = g.begin(o), *oe = g.end(o);
        while (ar != re || ao != oe) {
            if (ar != re && ar->id == o) { ++ar; continue; }
            if (ao != oe && ao->id == r) { ++ao; continue; }
            if (ao == oe || (ar != re && ar->id < ao->id)) {
                joined.push_back(*ar++);
            } else if (ar == re || ao->id < ar->id) {
                joined.push_back(*ao++);
            } else {
                joined.push_back(Nb<Id>{ar->id, ar->w + ao->w});
                ++ar;
                ++ao;
            }
        }
        g.place(r, o, joined);
        size[r] += size[o];
        size[o] = 0;
        // Neighbours: drop o, (re)set r; their best changes only if it was r or o, or r now beats it.
        const double sr = static_cast<double>(size[r]);
        for (const Nb<Id>* e = g.begin(r); e != g.end(r); ++e) {
            const Id k = e->id;
            const double w = e->w;
            Slot<Id>& sk = g.slot[k];
            Nb<Id>* b = g.begin(k);
            Nb<Id>* po = find(b, b + sk.len, o);
            if (po != b + sk.len && po->id == o) {
                std::memmove(po, po + 1, static_cast<size_t>(b + sk.len - po - 1) * sizeof(Nb<Id>));
                --sk.len;
            }
            Nb<Id>* pr = find(b, b + sk.len, r);
            if (pr != b + sk.len && pr->id == r) {
                pr->w = w;
            } else {  // o was erased just now: there is room
                std::memmove(pr + 1, pr, static_cast<size_t>(b + sk.len - pr) * sizeof(Nb<Id>));
                *pr = Nb<Id>{r, w};
                ++sk.len;
            }
            if (bnb[k] == r || bnb[k] == o) {
                rescan(k);
            } else {
                const double sim = w / (static_cast<double>(size[k]) * sr);
                if (sim > bsim[k] || (sim == bsim[k] && r < bnb[k])) {
                    bsim[k] = sim;
                    bnb[k] = r;
                    push(k);
                }
            }
        }
        rescan(r);
    }
    // What the graph does not join: merged at distance 1, in order of representative.
    Id first = -1;
    for (int64_t i = 0; i < n; ++i) {
        if (!size[i]) continue;
        if (first < 0)
            first = static_cast<Id>(i);
        else
            merges.push_back(CompactMerge<Id>{first, static_cast<Id>(i), 1.0});
    }
    // Free the adjacency and the loop's state before the linkage is made.
    g.release();
    std::vector<Entry<Id>>().swap(heap);
    std::vector<double>().swap(bsim);
    std::vector<Id>().swap(bnb);
    std::vector<Id>().swap(size);
    std::vector<Merge> full(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) full[i] = Merge{merges[i].a, merges[i].b, merges[i].a, merges[i].height};
    std::vector<CompactMerge<Id>>().swap(merges);
    return linkage_from_merges(n, std::move(full));
}

template <class Id, class Edges>
std::vector<double> run(int64_t n, const Edges& edges, int num_threads) {
    Graph<Id> g;
    build(n, edges, thread_count(num_threads), g);
    return merge_all(n, g);
}

// 32-bit cluster ids below 2^31 points (unless wide_ids: tests run the 64-bit kernel on small n).
template <class Edges>
std::vector<double> dispatch(int64_t n, const Edges& edges, int num_threads, bool wide_ids) {
    if (n < 2) throw std::invalid_argument("hierarchical clustering needs at least 2 points");
    if (n <= INT32_MAX && !wide_ids) return run<int32_t>(n, edges, num_threads);
    return run<int64_t>(n, edges, num_threads);
}

template <class I>
std::vector<double> knn_graph(int64_t n, int64_t k, const I* idx, const float* sim, int num_threads, bool wide_ids) {
    if (k < 0) throw std::invalid_argument("k must be >= 0");
    auto edges = [=](auto&& f) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < k; ++j) {
                const int64_t b = static_cast<int64_t>(idx[i * k + j]);
                if (b < -1 || b >= n) throw std::invalid_argument("graph neighbour index out of range");
                if (b >= 0) f(i, b, sim[i * k + j]);
            }
    };
    return dispatch(n, edges, num_threads, wide_ids);
}

}  // namespace

std::vector<double> hac_average_graph(int64_t n, const int64_t* u, const int64_t* v, const float* s, int64_t edges,
                                      int num_threads, bool wide_ids) {
    auto each = [=](auto&& f) {
        for (int64_t e = 0; e < edges; ++e) {
            if (u[e] < 0 || u[e] >= n || v[e] < 0 || v[e] >= n) throw std::invalid_argument("graph edge out of range");
            f(u[e], v[e], s[e]);
        }
    };
    return dispatch(n, each, num_threads, wide_ids);
}

std::vector<double> hac_average_knn_graph(int64_t n, int64_t k, const int64_t* idx, const float* sim,
                                          int num_threads, bool wide_ids) {
    return knn_graph(n, k, idx, sim, num_threads, wide_ids);
}

std::vector<double> hac_average_knn_graph(int64_t n, int64_t k, const int32_t* idx, const float* sim,
                                          int num_threads, bool wide_ids) {
    return knn_graph(n, k, idx, sim, num_threads, wide_ids);
}

}  // namespace alscale
