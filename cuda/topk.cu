#include "topk.cuh"

#include <cub/device/device_radix_sort.cuh>

namespace alscale {
namespace gpu {
namespace {

// Sort keys: the (key, row) order of the CPU (csrc/topk.hpp Candidate) is the order of
// (order_key(sign * score), row); excluded rows get the largest key and sort last. The rows go in
// ascending, and the radix sort is stable, so equal keys stay in row order: ties to the smaller row.
__global__ void topk_keys(const double* scores, int64_t n, const uint8_t* exclude, bool largest,
                          unsigned long long* keys, int64_t* rows, unsigned long long* available) {
    unsigned long long mine = 0;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const bool out = exclude && exclude[i];
        const double s = largest ? -scores[i] : scores[i];
        keys[i] = out ? ~0ull : order_key(s);
        rows[i] = i;
        mine += out ? 0 : 1;
    }
    for (int o = 16; o > 0; o /= 2) mine += __shfl_down_sync(0xffffffffu, mine, o);
    if ((threadIdx.x & 31) == 0 && mine) atomicAdd(available, mine);
}

}  // namespace

int64_t select_topk(const double* scores, int64_t n, int64_t k, const uint8_t* exclude, bool largest,
                    int64_t* out, cudaStream_t stream) {
    if (k <= 0 || n <= 0) return 0;
    if (n > INT32_MAX) throw std::invalid_argument("the GPU top-k handles at most 2^31 - 1 rows at once");
    Buffer<unsigned long long> keys(n, stream), sorted_keys(n, stream), available(1, stream);
    Buffer<int64_t> rows(n, stream), sorted_rows(n, stream);
    available.zero();
    topk_keys<<<static_cast<unsigned>(blocks_for(n, 256, 4096)), 256, 0, stream>>>(
        scores, n, exclude, largest, keys.get(), rows.get(), available.get());
    ALSCALE_CUDA_LAUNCHED("topk_keys");
    size_t temp_bytes = 0;
    ALSCALE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys.get(), sorted_keys.get(), rows.get(),
                                                       sorted_rows.get(), static_cast<int>(n), 0, 64, stream));
    Buffer<char> temp(static_cast<int64_t>(temp_bytes), stream);
    ALSCALE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys.get(), sorted_keys.get(), rows.get(),
                                                       sorted_rows.get(), static_cast<int>(n), 0, 64, stream));
    unsigned long long avail = 0;
    to_host(&avail, available.get(), 1, stream);
    sync(stream);
    const int64_t count = std::min<int64_t>(k, static_cast<int64_t>(avail));
    if (count > 0)
        ALSCALE_CUDA_CHECK(cudaMemcpyAsync(out, sorted_rows.get(), sizeof(int64_t) * static_cast<size_t>(count),
                                           cudaMemcpyDeviceToDevice, stream));
    return count;  // the temporaries are freed in stream order after the copy
}

}  // namespace gpu
}  // namespace alscale
