#include "serve.cuh"

#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

namespace alscale {
namespace gpu {
namespace {

constexpr int kWalkThreads = 256;  // one tile of the walk: a candidate per thread
constexpr int kScanThreads = 256;  // 1024 spills the 64-bit block scan (64 registers a thread)

// offsets[c] = sum of min(count, capacity) of the classes before c (offsets[C] = their total),
// one block scanning C entries a tile at a time. The total is at most the sum of the capacities
// (the caller's int64 total_capacity): no overflow.
__global__ void __launch_bounds__(kScanThreads) class_offsets(ClassBuffers b, int64_t classes, int64_t* offsets) {
    using Scan = cub::BlockScan<long long, kScanThreads>;
    __shared__ typename Scan::TempStorage temp;
    long long carry = 0;
    for (int64_t base = 0; base < classes; base += kScanThreads) {
        const int64_t c = base + threadIdx.x;
        const long long k = c < classes ? static_cast<long long>(min(static_cast<int64_t>(b.count[c]), b.capacity[c])) : 0;
        long long at, tile_total;
        Scan(temp).ExclusiveSum(k, at, tile_total);
        if (c < classes) offsets[c] = carry + at;
        carry += tile_total;
        __syncthreads();  // temp is reused by the next tile
    }
    if (threadIdx.x == 0) offsets[classes] = carry;
}

// One block per class: its candidates packed at offsets[c].
__global__ void compact_classes(ClassBuffers b, const int64_t* offsets, unsigned long long* keys, int64_t* rows) {
    const int64_t c = blockIdx.x;
    const int64_t begin = offsets[c], k = offsets[c + 1] - begin;
    const unsigned long long* sk = b.keys + c * b.slots;
    const int64_t* sr = b.rows + c * b.slots;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
        keys[begin + j] = sk[j];
        rows[begin + j] = sr[j];
    }
}

__device__ __forceinline__ int64_t quota_of(int64_t c, int64_t budget, int64_t classes) {
    return budget / classes + (c < budget % classes ? 1 : 0);
}

// Step 3 and 4 (see serve.cuh), one block. Every quantity that steers the loops (q, got, picked,
// the tile bounds) is uniform across the block: each comes from the scan's block aggregate or from
// values every thread reads alike, so every thread takes every __syncthreads. Rows are distinct
// within a class (a row is offered once per class and pass), so the threads of a tile never pick
// the same row; a row taken by an earlier class or tile is seen as taken after the
// __syncthreads that ends that tile (block-scope visibility of global writes).
__global__ void __launch_bounds__(kWalkThreads) walk_classes(const int64_t* rows, const int64_t* offsets, int64_t classes,
                                                            int64_t start, int64_t budget, bool clip,
                                                            const unsigned long long* fed, uint8_t* taken, int64_t* out,
                                                            ServeStatus* status) {
    using Scan = cub::BlockScan<int, kWalkThreads>;
    __shared__ typename Scan::TempStorage temp;
    if (clip) budget = min(budget, static_cast<int64_t>(*fed));  // fed <= rows < 2^31
    int64_t picked = 0;
    for (int64_t c = start; c < classes; ++c) {
        const int64_t q = quota_of(c, budget, classes);
        if (q == 0) continue;
        const int64_t begin = offsets[c], end = offsets[c + 1];
        int64_t got = 0;
        for (int64_t base = begin; base < end && got < q; base += kWalkThreads) {
            const int64_t j = base + threadIdx.x;
            const int64_t row = j < end ? rows[j] : -1;
            const int free = (row >= 0 && !taken[row]) ? 1 : 0;
            int place, tile_free;
            Scan(temp).ExclusiveSum(free, place, tile_free);
            if (free && place < q - got) {
                out[picked + got + place] = row;  // picked + got + place < budget <= the output's size
                taken[row] = 1;
            }
            got += min(static_cast<int64_t>(tile_free), q - got);
            __syncthreads();  // the tile's taken marks are visible, temp may be reused
        }
        if (got < q) {  // ran short: stop, the host passes again from class c
            if (threadIdx.x == 0) {
                status->starved = c;
                status->picked = picked;
            }
            return;
        }
        picked += q;
    }
    if (threadIdx.x == 0) {
        status->starved = -1;
        status->picked = picked;
    }
}

// cub::DeviceSegmentedSort::StableSortPairs with its temporary storage (queried, then run).
template <class K, class V>
void segmented_sort(const K* keys_in, K* keys_out, const V* values_in, V* values_out, int64_t items, int64_t segments,
                    const int64_t* offsets, cudaStream_t stream) {
    size_t bytes = 0;
    ALSCALE_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(nullptr, bytes, keys_in, keys_out, values_in, values_out,
                                                                 items, segments, offsets, offsets + 1, stream));
    Buffer<char> temp(static_cast<int64_t>(bytes), stream);
    ALSCALE_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(temp.get(), bytes, keys_in, keys_out, values_in,
                                                                 values_out, items, segments, offsets, offsets + 1, stream));
}

}  // namespace

void serve_classes(const ClassBuffers& b, int64_t classes, int64_t start, int64_t budget, bool clip,
                   const unsigned long long* fed, int64_t n, int64_t total_capacity, int64_t* out, ServeStatus* status,
                   cudaStream_t stream) {
    if (classes < 1 || classes > INT32_MAX) throw std::invalid_argument("serve_classes: bad number of classes");
    Buffer<uint8_t> taken(n, stream);
    taken.zero();
    Buffer<int64_t> offsets(classes + 1, stream);
    class_offsets<<<1, kScanThreads, 0, stream>>>(b, classes, offsets.get());
    ALSCALE_CUDA_LAUNCHED("class_offsets");
    // The compact arrays hold at most total_capacity candidates (the items between offsets[C]
    // and total_capacity lie in no segment: the sorts leave them alone). Two pairs of buffers:
    // (keys, rows) -> sorted by row into (keys2, rows2) -> sorted by key back into (keys, rows).
    const int64_t items = total_capacity > 0 ? total_capacity : 1;
    Buffer<unsigned long long> keys(items, stream), keys2(items, stream);
    Buffer<int64_t> rows(items, stream), rows2(items, stream);
    compact_classes<<<static_cast<unsigned>(classes), 256, 0, stream>>>(b, offsets.get(), keys.get(), rows.get());
    ALSCALE_CUDA_LAUNCHED("compact_classes");
    if (total_capacity > 0) {
        segmented_sort(rows.get(), rows2.get(), keys.get(), keys2.get(), items, classes, offsets.get(), stream);
        segmented_sort(keys2.get(), keys.get(), rows2.get(), rows.get(), items, classes, offsets.get(), stream);
    }
    walk_classes<<<1, kWalkThreads, 0, stream>>>(rows.get(), offsets.get(), classes, start, budget, clip, fed, taken.get(),
                                                 out, status);
    ALSCALE_CUDA_LAUNCHED("walk_classes");
    // The buffers are freed in stream order, after the walk.
}

}  // namespace gpu
}  // namespace alscale
