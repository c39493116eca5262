#include "graph_hac.hpp"

#include <algorithm>
#include <queue>
#include <stdexcept>

#include "common.hpp"
#include "hac.hpp"

namespace alscale {
namespace {

struct Nb {
    int64_t id;  // neighbour cluster (its representative)
    double w;    // total similarity Σ s(a, b) between the two clusters
};

struct Best {
    double sim = -1.0;
    int64_t nb = -1;
};

// Heap entry: the best neighbour of cluster `a` as of version `ver` of a.
struct Entry {
    double sim;
    int64_t lo, hi;  // the pair, smaller representative first
    int64_t a;
    uint64_t ver;
};

// Priority: larger similarity, then the smaller pair (lexicographic).
struct Worse {
    bool operator()(const Entry& x, const Entry& y) const {
        if (x.sim != y.sim) return x.sim < y.sim;
        if (x.lo != y.lo) return x.lo > y.lo;
        return x.hi > y.hi;
    }
};

// Symmetric adjacency lists sorted by neighbour, one entry per neighbour (largest similarity),
// built in place (no second copy of the edges: memory is one Nb per directed edge at most).
std::vector<std::vector<Nb>> build_adjacency(int64_t n, const int64_t* u, const int64_t* v, const float* s,
                                             int64_t edges, int threads) {
    std::vector<int64_t> degree(static_cast<size_t>(n), 0);
    for (int64_t e = 0; e < edges; ++e) {
        if (u[e] < 0 || u[e] >= n || v[e] < 0 || v[e] >= n) throw std::invalid_argument("graph edge out of range");
        if (u[e] == v[e] || !(s[e] > 0.0f)) continue;
        ++degree[u[e]];
        ++degree[v[e]];
    }
    std::vector<std::vector<Nb>> adj(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) adj[i].reserve(static_cast<size_t>(degree[i]));
    std::vector<int64_t>().swap(degree);
    for (int64_t e = 0; e < edges; ++e) {
        if (u[e] == v[e] || !(s[e] > 0.0f)) continue;
        adj[u[e]].push_back(Nb{v[e], static_cast<double>(s[e])});
        adj[v[e]].push_back(Nb{u[e], static_cast<double>(s[e])});
    }
    ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1024)
    for (int64_t i = 0; i < n; ++i)
        errors.run([&] {
            auto& a = adj[i];
            std::sort(a.begin(), a.end(), [](const Nb& x, const Nb& y) { return x.id < y.id || (x.id == y.id && x.w > y.w); });
            a.erase(std::unique(a.begin(), a.end(), [](const Nb& x, const Nb& y) { return x.id == y.id; }), a.end());
            a.shrink_to_fit();  // the largest of duplicates stays (first after the sort)
        });
    errors.rethrow();
    return adj;
}

}  // namespace

std::vector<double> hac_average_graph(int64_t n, const int64_t* u, const int64_t* v, const float* s, int64_t edges,
                                      int num_threads) {
    if (n < 2) throw std::invalid_argument("hierarchical clustering needs at least 2 points");
    auto adj = build_adjacency(n, u, v, s, edges, thread_count(num_threads));
    std::vector<double> size(static_cast<size_t>(n), 1.0);
    std::vector<uint8_t> alive(static_cast<size_t>(n), 1);
    std::vector<Best> best(static_cast<size_t>(n));
    std::vector<uint64_t> version(static_cast<size_t>(n), 0);
    std::priority_queue<Entry, std::vector<Entry>, Worse> heap;

    auto better = [](double sim, int64_t id, const Best& b) { return sim > b.sim || (sim == b.sim && id < b.nb); };
    auto push = [&](int64_t a) {
        const Best& b = best[a];
        if (b.nb >= 0) heap.push(Entry{b.sim, std::min(a, b.nb), std::max(a, b.nb), a, version[a]});
    };
    auto rescan = [&](int64_t a) {
        Best b;
        for (const Nb& e : adj[a]) {
            const double sim = e.w / (size[a] * size[e.id]);
            if (better(sim, e.id, b)) b = Best{sim, e.id};
        }
        best[a] = b;
        ++version[a];
        push(a);
    };
    for (int64_t i = 0; i < n; ++i) rescan(i);

    std::vector<Merge> merges;
    merges.reserve(static_cast<size_t>(n - 1));
    std::vector<Nb> joined;
    while (!heap.empty()) {
        const Entry top = heap.top();
        heap.pop();
        if (!alive[top.a] || version[top.a] != top.ver) continue;  // stale
        const int64_t r = top.lo, o = top.hi;  // the union keeps the smaller representative
        // Similarities above 1 (float rounding of duplicate points' cosine, or a graph's own
        // values) would give negative heights, which scipy refuses: a height is at least 0.
        merges.push_back(Merge{r, o, r, std::max(0.0, 1.0 - top.sim)});
        // Joined adjacency: sorted merge of both lists without each other, weights added.
        joined.clear();
        const auto& ar = adj[r];
        const auto& ao = adj[o];
        size_t i = 0, j = 0;
        while (i < ar.size() || j < ao.size()) {
            if (i < ar.size() && ar[i].id == o) { ++i; continue; }
            if (j < ao.size() && ao[j].id == r) { ++j; continue; }
            if (j == ao.size() || (i < ar.size() && ar[i].id < ao[j].id)) {
                joined.push_back(ar[i++]);
            } else if (i == ar.size() || ao[j].id < ar[i].id) {
                joined.push_back(ao[j++]);
            } else {
                joined.push_back(Nb{ar[i].id, ar[i].w + ao[j].w});
                ++i;
                ++j;
            }
        }
        adj[r].swap(joined);
        std::vector<Nb>().swap(adj[o]);
        alive[o] = 0;
        size[r] += size[o];
        // Neighbours: drop o, (re)set r; their best changes only if it was r or o, or r now beats it.
        for (const Nb& e : adj[r]) {
            auto& ak = adj[e.id];
            auto po = std::lower_bound(ak.begin(), ak.end(), o, [](const Nb& x, int64_t id) { return x.id < id; });
            if (po != ak.end() && po->id == o) ak.erase(po);
            auto pr = std::lower_bound(ak.begin(), ak.end(), r, [](const Nb& x, int64_t id) { return x.id < id; });
            if (pr != ak.end() && pr->id == r)
                pr->w = e.w;
            else
                ak.insert(pr, Nb{r, e.w});
            Best& bk = best[e.id];
            if (bk.nb == r || bk.nb == o) {
                rescan(e.id);
            } else {
                const double sim = e.w / (size[e.id] * size[r]);
                if (better(sim, r, bk)) {
                    bk = Best{sim, r};
                    ++version[e.id];
                    push(e.id);
                }
            }
        }
        ++version[o];
        rescan(r);
    }
    // What the graph does not join: merged at distance 1, in order of representative.
    int64_t first = -1;
    for (int64_t i = 0; i < n; ++i) {
        if (!alive[i]) continue;
        if (first < 0)
            first = i;
        else
            merges.push_back(Merge{first, i, first, 1.0});
    }
    return linkage_from_merges(n, std::move(merges));
}

}  // namespace alscale
