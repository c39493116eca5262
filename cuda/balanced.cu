#include "balanced.cuh"

#include <algorithm>
#include <string>

#include "balanced.hpp"  // the CPU BalancedState serves the classes
#include "rowmath.cuh"
#include "serve.cuh"

namespace alscale {
namespace gpu {
namespace {

constexpr unsigned long long kAcceptAll = ~0ull;  // bound of a class whose buffer is not full
constexpr unsigned long long kRejectAll = 0ull;   // below every key (keys of doubles are >= 2^63)
constexpr int kSelectThreads = 256;

// Per-class candidate buffers: class c owns slots [c * slots, (c + 1) * slots).
struct Classes {
    unsigned long long* keys;  // order_key(score)
    int64_t* rows;
    unsigned int* count;
    unsigned long long* bound;  // a candidate enters iff its key <= bound
    const int64_t* capacity;
    int64_t slots;
};

// Offers (key, row) to class c's buffer: it enters when the key passes the class's bound.
__device__ __forceinline__ void offer(const Classes& cls, int64_t c, unsigned long long key, int64_t row) {
    if (key <= cls.bound[c]) {
        const unsigned int slot = atomicAdd(cls.count + c, 1u);
        cls.keys[c * cls.slots + slot] = key;
        cls.rows[c * cls.slots + slot] = row;
    }
}

// One chunk of rows [begin, end): boundary distances and candidates. Lane j of a row's 8 threads
// computes r_c for c = j, j + 8, ... (as the CPU's lane j), the row's min over c by shuffles.
template <class In>
__global__ void __launch_bounds__(kRowThreads) balanced_candidates(DMatrix x, int64_t begin, int64_t end,
                                                                  const uint8_t* mask, const double* inv,
                                                                  Classes cls, unsigned long long* fed,
                                                                  unsigned long long* first_bad) {
    using T = typename RowType<In>::type;
    unsigned long long my_fed = 0;
    for_each_row<In, false>(x, begin, end, mask, first_bad, [&](int64_t i, bool go, const RowMax<T>& mx, int lane) {
        if (go && lane == 0) ++my_fed;
        const int64_t p = mx.arg;
        const double mn = boundary_min<In>(x, i, go, mx, inv, lane, [&](int64_t c, double a) {
            if (c != p) offer(cls, c, order_key(a), i);
        });
        if (go && lane == 0) offer(cls, p, order_key(mn), i);  // the predicted class: its nearest boundary
    });
    for (int o = 16; o > 0; o /= 2) my_fed += __shfl_down_sync(0xffffffffu, my_fed, o);
    if (threadIdx.x % 32 == 0 && my_fed) atomicAdd(fed, my_fed);
}

// The value of the digit (8 bits at `shift`) where the `need`-th smallest entry lies, among the
// entries matching `prefix` on `mask`; subtracts the entries in smaller digits from need.
template <class Get>
__device__ unsigned long long select_digit(unsigned int count, Get get, unsigned long long prefix,
                                           unsigned long long mask, int shift, unsigned long long& need,
                                           unsigned int* hist, unsigned int& in_digit) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (unsigned int j = threadIdx.x; j < count; j += blockDim.x) {
        bool ok;
        const unsigned long long v = get(j, ok);
        if (ok && (v & mask) == prefix) atomicAdd(hist + ((v >> shift) & 0xff), 1u);
    }
    __syncthreads();
    __shared__ unsigned long long digit, left;
    __shared__ unsigned int same;
    if (threadIdx.x == 0) {
        unsigned long long acc = 0, d = 255;
        for (unsigned int b = 0; b < 256; ++b) {
            if (acc + hist[b] >= need) {
                d = b;
                break;
            }
            acc += hist[b];
        }
        digit = d;
        left = need - acc;
        same = hist[d];
    }
    __syncthreads();
    need = left;
    in_digit = same;
    const unsigned long long d = digit;
    __syncthreads();
    return d;
}

// One block per class: if the class holds more than `capacity` candidates, keeps exactly the
// capacity smallest by (key, row) (radix select on the key, then on the row among equal keys) and
// sets the bound to the largest kept key. A class that just filled up gets its bound too.
__global__ void __launch_bounds__(kSelectThreads) cut_classes(Classes cls, unsigned long long* scratch_keys,
                                                             int64_t* scratch_rows, int64_t scratch_slots) {
    __shared__ unsigned int hist[256];
    __shared__ unsigned int kept;
    __shared__ unsigned long long top;
    const int64_t c = blockIdx.x;
    const int64_t cap = cls.capacity[c];
    const unsigned int count = cls.count[c];
    if (cap == 0 || count < cap) return;
    const unsigned long long* keys = cls.keys + c * cls.slots;
    const int64_t* rows = cls.rows + c * cls.slots;
    if (count == cap) {
        if (cls.bound[c] != kAcceptAll) return;  // already cut: the bound stands
        if (threadIdx.x == 0) top = 0;
        __syncthreads();
        unsigned long long m = 0;
        for (unsigned int j = threadIdx.x; j < count; j += blockDim.x) m = keys[j] > m ? keys[j] : m;
        atomicMax(&top, m);
        __syncthreads();
        if (threadIdx.x == 0) cls.bound[c] = top;
        return;
    }
    // The cap-th smallest key K, then the rows among those equal to K.
    unsigned long long need = static_cast<unsigned long long>(cap), prefix = 0, mask = 0;
    auto key_of = [&](unsigned int j, bool& ok) {
        ok = true;
        return keys[j];
    };
    unsigned int equal = 0;  // entries with key == kth (the last digit's bucket)
    for (int shift = 56; shift >= 0; shift -= 8) {
        const unsigned long long d = select_digit(count, key_of, prefix, mask, shift, need, hist, equal);
        prefix |= d << shift;
        mask |= 0xffull << shift;
    }
    const unsigned long long kth = prefix;
    // need = how many of the entries with key == kth are kept: the smallest rows among them.
    int64_t last_row = INT64_MAX;  // the largest kept row with key == kth (all of them by default)
    if (need < equal) {
        unsigned long long row_prefix = 0, row_mask = 0;
        unsigned int unused = 0;
        auto row_of = [&](unsigned int j, bool& ok) {
            ok = keys[j] == kth;
            return static_cast<unsigned long long>(rows[j]);
        };
        for (int shift = 56; shift >= 0; shift -= 8) {
            const unsigned long long d = select_digit(count, row_of, row_prefix, row_mask, shift, need, hist, unused);
            row_prefix |= d << shift;
            row_mask |= 0xffull << shift;
        }
        last_row = static_cast<int64_t>(row_prefix);
    }
    if (threadIdx.x == 0) kept = 0;
    __syncthreads();
    unsigned long long* sk = scratch_keys + c * scratch_slots;
    int64_t* sr = scratch_rows + c * scratch_slots;
    for (unsigned int j = threadIdx.x; j < count; j += blockDim.x) {
        const unsigned long long k = keys[j];
        if (k < kth || (k == kth && rows[j] <= last_row)) {
            const unsigned int at = atomicAdd(&kept, 1u);
            sk[at] = k;
            sr[at] = rows[j];
        }
    }
    __syncthreads();
    unsigned long long* dk = cls.keys + c * cls.slots;
    int64_t* dr = cls.rows + c * cls.slots;
    for (unsigned int j = threadIdx.x; j < kept; j += blockDim.x) {
        dk[j] = sk[j];
        dr[j] = sr[j];
    }
    if (threadIdx.x == 0) {
        cls.count[c] = kept;  // == cap
        cls.bound[c] = kth;
    }
}

__global__ void mark_rows(const int64_t* rows, int64_t count, uint8_t* mask) {
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < count;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x)
        mask[rows[j]] = 1;
}

// Candidate memory: about 2^25 slots (512 MiB) unless the capacities alone need more.
constexpr int64_t kSlotBudget = int64_t{1} << 25;

}  // namespace

// What one pass reads back (page-locked; one copy each, one synchronisation).
struct Readback {
    unsigned long long counters[2];  // fed rows, first non-finite row
    ServeStatus serve;
    HeadStatus head;
};

int64_t select_balanced(const DMatrix& x, int64_t budget, const uint8_t* exclude, const double* inv,
                        const HeadStatus* head, int64_t* out, cudaStream_t stream) {
    const int64_t C = x.cols, N = x.rows;
    if (C < 1) throw std::invalid_argument("logits have no classes");
    if (N > INT32_MAX) throw std::invalid_argument("the GPU BASE kernel handles at most 2^31 - 1 rows at once; feed chunks to BalancedSelector");
    if (budget < 0) throw std::invalid_argument("budget must be non-negative");
    // No selection takes more than N rows (advance() serves min(B, available) <= N), so clipping
    // here changes no result, and keeps C x slots (which grows with the budget) from wrapping size_t.
    budget = std::min(budget, N);
    // pass_memory 0: later passes keep the first pass's rule, whose largest capacity (q + the
    // capped extra) bounds the C x slots candidate arrays below; guaranteed classes would let one
    // class's capacity (and so every class's slots) reach 2^23.
    BalancedState state(C, budget, default_extra(C, budget), 0);

    Buffer<uint8_t> mask(N, stream);  // exclude, then also the rows taken by earlier passes
    if (exclude)
        ALSCALE_CUDA_CHECK(cudaMemcpyAsync(mask.get(), exclude, static_cast<size_t>(N), cudaMemcpyDeviceToDevice, stream));
    else
        mask.zero();
    Buffer<unsigned long long> counters(2, stream);  // fed rows, first non-finite row
    Buffer<ServeStatus> serve_status(1, stream);
    // Pinned staging (common.cuh): the read-back, then the bounds and capacities copied up per pass.
    static_assert(sizeof(Readback) % 8 == 0, "the staging arrays after the read-back stay 8-byte aligned");
    char* area = static_cast<char*>(pinned_scratch(sizeof(Readback) + 2 * sizeof(int64_t) * static_cast<size_t>(C)));
    Readback* back = reinterpret_cast<Readback*>(area);
    unsigned long long* stage_bounds = reinterpret_cast<unsigned long long*>(area + sizeof(Readback));
    int64_t* stage_capacity = reinterpret_cast<int64_t*>(area + sizeof(Readback) + sizeof(int64_t) * static_cast<size_t>(C));
    std::vector<int64_t> earlier;  // picks of the passes before the current one (host, rare)

    for (;;) {
        BalancedSnapshot snap = state.snapshot();
        const int64_t cap_max = *std::max_element(snap.capacity.begin(), snap.capacity.end());
        int64_t cap_total = 0;  // <= C * cap_max: the candidate arrays below are larger
        for (const int64_t cap : snap.capacity) cap_total += cap;
        const int64_t chunk = std::max<int64_t>(1024, std::min<int64_t>(N, kSlotBudget / C - cap_max));
        const int64_t slots = cap_max + std::min(chunk, N);
        Buffer<unsigned long long> keys(C * slots, stream), bound(C, stream), scratch_keys(C * std::max<int64_t>(cap_max, 1), stream);
        Buffer<int64_t> rows(C * slots, stream), capacity(C, stream), scratch_rows(C * std::max<int64_t>(cap_max, 1), stream);
        Buffer<unsigned int> count(C, stream);
        count.zero();
        for (int64_t c = 0; c < C; ++c) {
            stage_bounds[c] = snap.capacity[static_cast<size_t>(c)] > 0 ? kAcceptAll : kRejectAll;
            stage_capacity[c] = snap.capacity[static_cast<size_t>(c)];
        }
        to_device(bound.get(), stage_bounds, C, stream);
        to_device(capacity.get(), stage_capacity, C, stream);
        ALSCALE_CUDA_CHECK(cudaMemsetAsync(counters.get(), 0, sizeof(unsigned long long), stream));
        ALSCALE_CUDA_CHECK(cudaMemsetAsync(counters.get() + 1, 0xff, sizeof(unsigned long long), stream));
        const Classes cls{keys.get(), rows.get(), count.get(), bound.get(), capacity.get(), slots};

        // The chunk loop: launches only (no copy, no synchronisation).
        for (int64_t begin = 0; begin < N; begin += chunk) {
            const int64_t end = std::min(N, begin + chunk);
            const unsigned blocks = static_cast<unsigned>(blocks_for(end - begin, kRowsPerBlock, 1 << 16));
            with_input_type(x.dtype, [&](auto in) {
                balanced_candidates<decltype(in)><<<blocks, kRowThreads, 0, stream>>>(
                    x, begin, end, mask.get(), inv, cls, counters.get(), counters.get() + 1);
            });
            ALSCALE_CUDA_LAUNCHED("balanced_candidates");
            if (cap_max > 0) {
                cut_classes<<<static_cast<unsigned>(C), kSelectThreads, 0, stream>>>(cls, scratch_keys.get(), scratch_rows.get(),
                                                                                    std::max<int64_t>(cap_max, 1));
                ALSCALE_CUDA_LAUNCHED("cut_classes");
            }
        }

        // Serve on the device: the picks of this pass go to out after the earlier passes' picks.
        const int64_t at = static_cast<int64_t>(earlier.size());
        const ClassBuffers buffers{keys.get(), rows.get(), count.get(), capacity.get(), slots};
        serve_classes(buffers, C, snap.start_class, snap.budget, snap.pass == 0, counters.get(), N, cap_total, out + at,
                      serve_status.get(), stream);

        to_host(back->counters, counters.get(), 2, stream);
        to_host(&back->serve, serve_status.get(), 1, stream);
        if (head) to_host(&back->head, head, 1, stream);
        sync(stream);  // the pass's own synchronisation (CUB's segmented sort adds two of its own
                       // when there are more than ~300 classes: it reads its group sizes on the host)
        if (head) check_head_status(back->head);
        if (back->counters[1] != ~0ull) throw_non_finite(static_cast<int64_t>(back->counters[1]));
        if (back->serve.starved < 0) {
            if (at > 0) {  // the earlier passes' picks (host) in front of this pass's
                to_device(out, earlier.data(), at, stream);
                sync(stream);  // `earlier` must outlive the copy (a multi-pass call only)
            }
            return at + back->serve.picked;
        }

        // A class ran short (heavy ties): the host sets up the next pass exactly as the CPU's
        // state does, from this pass's candidates (the rare path: copies through pageable memory).
        std::vector<unsigned int> counts(static_cast<size_t>(C));
        to_host(counts.data(), count.get(), C, stream);
        std::vector<unsigned long long> host_keys(static_cast<size_t>(C * std::max<int64_t>(cap_max, 1)));
        std::vector<int64_t> host_rows(host_keys.size());
        if (cap_max > 0) {
            ALSCALE_CUDA_CHECK(cudaMemcpy2DAsync(host_keys.data(), sizeof(unsigned long long) * cap_max, keys.get(),
                                                 sizeof(unsigned long long) * slots, sizeof(unsigned long long) * cap_max,
                                                 static_cast<size_t>(C), cudaMemcpyDeviceToHost, stream));
            ALSCALE_CUDA_CHECK(cudaMemcpy2DAsync(host_rows.data(), sizeof(int64_t) * cap_max, rows.get(), sizeof(int64_t) * slots,
                                                 sizeof(int64_t) * cap_max, static_cast<size_t>(C), cudaMemcpyDeviceToHost, stream));
        }
        sync(stream);
        snap.fed += static_cast<int64_t>(back->counters[0]);
        snap.counts.assign(static_cast<size_t>(C), 0);
        snap.keys.clear();
        snap.rows.clear();
        for (int64_t c = 0; c < C; ++c) {
            const int64_t k = std::min<int64_t>(counts[static_cast<size_t>(c)], snap.capacity[static_cast<size_t>(c)]);
            snap.counts[static_cast<size_t>(c)] = k;
            for (int64_t j = 0; j < k; ++j) {
                snap.keys.push_back(from_order_key(host_keys[static_cast<size_t>(c * cap_max + j)]));
                snap.rows.push_back(host_rows[static_cast<size_t>(c * cap_max + j)]);
            }
        }
        BalancedState next(snap);
        if (next.advance() || next.start_class() != back->serve.starved)
            throw std::logic_error("GPU BASE: the device's serving disagrees with the host's (class " +
                                   std::to_string(back->serve.starved) + " ran short on the device)");
        // Mask the rows taken so far and pass again from that class.
        const BalancedSnapshot after = next.snapshot();
        const int64_t t = static_cast<int64_t>(after.taken.size());
        if (t > 0) {
            Buffer<int64_t> taken_dev(t, stream);
            to_device(taken_dev.get(), after.taken.data(), t, stream);
            mark_rows<<<static_cast<unsigned>(blocks_for(t, 256, 4096)), 256, 0, stream>>>(taken_dev.get(), t, mask.get());
            ALSCALE_CUDA_LAUNCHED("mark_rows");
            sync(stream);  // `after.taken` (host memory) must outlive the copy
        }
        earlier = after.picks;
        state = std::move(next);
    }
}

}  // namespace gpu
}  // namespace alscale
