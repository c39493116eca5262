#include "knn.cuh"

namespace alscale {
namespace gpu {
namespace {

// A 128 x 128 tile of dot products per step, 8 x 8 per thread, dimensions staged 8 at a time.
// SIMT float32 with separate __fmul_rn / __fadd_rn (no FMA, no tensor cores): this is what makes
// the graph bit-identical to the CPU's. A tensor-core (TF32 / 3xTF32 via mma) or cuBLAS GEMM would
// be faster but rounds differently; it is to be measured when a GPU is lent (BENCHMARKS.md).
constexpr int kTile = 128;
constexpr int kMicro = 8;
constexpr int kStage = 8;
constexpr int kThreads = (kTile / kMicro) * (kTile / kMicro);  // 256
constexpr int kPending = 16;  // candidates a row may queue per merge round

struct Lists {  // per query row of the block, in dynamic shared memory
    float* sim;  // kTile x k, sorted: larger first, ties smaller row first
    int* row;
};

__device__ __forceinline__ bool better(float s, int r, float ts, int tr) { return s > ts || (s == ts && r < tr); }

// Query rows: rows[0 .. m) (device), or every row (rows == nullptr, m == n); a block takes kTile.
__global__ void __launch_bounds__(kThreads) knn_kernel(const float* __restrict__ x, int n, int d, int k,
                                                       const int* __restrict__ rows, int m, int64_t* indices,
                                                       float* similarities) {
    extern __shared__ unsigned char dyn[];
    Lists lists{reinterpret_cast<float*>(dyn), reinterpret_cast<int*>(dyn + sizeof(float) * kTile * k)};
    __shared__ float As[kStage][kTile];
    __shared__ float Bs[kStage][kTile];
    __shared__ int length[kTile];
    __shared__ float pend_sim[kTile][kPending];
    __shared__ int pend_row[kTile][kPending];
    __shared__ int pend_count[kTile];
    __shared__ int overflow;
    __shared__ int query[kTile];  // the block's query rows, -1 past the end

    const int tid = threadIdx.x, tx = tid % (kTile / kMicro), ty = tid / (kTile / kMicro);
    const int i0 = blockIdx.x * kTile;
    if (tid < kTile) {
        length[tid] = 0;
        pend_count[tid] = 0;
        const int at = i0 + tid;  // i0 + tid < m + kTile <= 2^31 - 1 + 128: checked by the host (m < 2^31 - 128)
        query[tid] = at < m ? (rows ? rows[at] : at) : -1;
    }
    if (tid == 0) overflow = 0;
    __syncthreads();

    for (int j0 = 0; j0 < n; j0 += kTile) {
        float acc[kMicro][kMicro];
#pragma unroll
        for (int a = 0; a < kMicro; ++a)
#pragma unroll
            for (int b = 0; b < kMicro; ++b) acc[a][b] = 0.0f;
        for (int k0 = 0; k0 < d; k0 += kStage) {
            // Stage dimensions k0 .. k0+7 of the 128 query rows and 128 candidate rows (zero padded).
            for (int e = tid; e < kTile * kStage; e += kThreads) {
                const int r = e / kStage, kk = e % kStage;
                const int qi = query[r], cj = j0 + r, dim = k0 + kk;
                As[kk][r] = (qi >= 0 && dim < d) ? x[static_cast<int64_t>(qi) * d + dim] : 0.0f;
                Bs[kk][r] = (cj < n && dim < d) ? x[static_cast<int64_t>(cj) * d + dim] : 0.0f;
            }
            __syncthreads();
            const int stop = min(kStage, d - k0);
            for (int kk = 0; kk < stop; ++kk) {  // dimensions in order: the CPU's summation order
                float a[kMicro], b[kMicro];
#pragma unroll
                for (int m = 0; m < kMicro; ++m) {
                    a[m] = As[kk][ty * kMicro + m];
                    b[m] = Bs[kk][tx * kMicro + m];
                }
#pragma unroll
                for (int r = 0; r < kMicro; ++r)
#pragma unroll
                    for (int c = 0; c < kMicro; ++c) acc[r][c] = __fadd_rn(acc[r][c], __fmul_rn(a[r], b[c]));
            }
            __syncthreads();
        }
        // Fused top-k: queue the values that beat their row's current k-th, merge, repeat while a
        // row's queue overflowed (each round retires at least kPending of its candidates).
        unsigned long long done = 0;  // bit r * 8 + c: value handled
        for (;;) {
#pragma unroll
            for (int r = 0; r < kMicro; ++r) {
                const int lr = ty * kMicro + r, qi = query[lr];
                const int len = length[lr];
                const float ts = len == k ? lists.sim[lr * k + k - 1] : 0.0f;
                const int tr = len == k ? lists.row[lr * k + k - 1] : 0;
#pragma unroll
                for (int c = 0; c < kMicro; ++c) {
                    const unsigned long long bit = 1ull << (r * kMicro + c);
                    if (done & bit) continue;
                    const int cj = j0 + tx * kMicro + c;
                    if (qi < 0 || cj >= n || cj == qi || (len == k && !better(acc[r][c], cj, ts, tr))) {
                        done |= bit;
                        continue;
                    }
                    const int slot = atomicAdd(&pend_count[lr], 1);
                    if (slot < kPending) {
                        pend_sim[lr][slot] = acc[r][c];
                        pend_row[lr][slot] = cj;
                        done |= bit;
                    } else {
                        overflow = 1;
                    }
                }
            }
            __syncthreads();
            if (tid < kTile) {
                const int lr = tid, m = min(pend_count[lr], kPending);
                float* ls = lists.sim + lr * k;
                int* lw = lists.row + lr * k;
                int len = length[lr];
                for (int q = 0; q < m; ++q) {
                    const float s = pend_sim[lr][q];
                    const int w = pend_row[lr][q];
                    int at;
                    if (len < k) {
                        at = len++;
                    } else if (better(s, w, ls[k - 1], lw[k - 1])) {
                        at = k - 1;
                    } else {
                        continue;
                    }
                    while (at > 0 && better(s, w, ls[at - 1], lw[at - 1])) {
                        ls[at] = ls[at - 1];
                        lw[at] = lw[at - 1];
                        --at;
                    }
                    ls[at] = s;
                    lw[at] = w;
                }
                length[lr] = len;
                pend_count[lr] = 0;
            }
            __syncthreads();
            const int again = overflow;
            __syncthreads();
            if (!again) break;
            if (tid == 0) overflow = 0;
            __syncthreads();
        }
    }
    if (tid < kTile && query[tid] >= 0) {
        const int64_t qi = query[tid];
        for (int j = 0; j < k; ++j) {
            indices[qi * k + j] = lists.row[tid * k + j];
            similarities[qi * k + j] = lists.sim[tid * k + j];
        }
    }
}

}  // namespace

void knn_exact_rows(const float* x, int64_t n, int64_t d, int64_t k, const int* rows, int64_t m, int64_t* indices,
                    float* similarities, cudaStream_t stream) {
    if (k < 1 || k >= n) throw std::invalid_argument("knn needs 1 <= k < n");
    if (k > kKnnMaxK) throw std::invalid_argument("the GPU kNN keeps at most " + std::to_string(kKnnMaxK) + " neighbours per row");
    if (n > INT32_MAX - kTile || d > INT32_MAX) throw std::invalid_argument("the GPU kNN handles at most 2^31 - 129 points");
    if (d < 1) throw std::invalid_argument("points have no features");
    if (m < 0 || m > n) throw std::invalid_argument("knn_exact_rows needs 0 <= m <= n query rows");
    if (m == 0) return;
    const size_t smem = static_cast<size_t>(kTile) * static_cast<size_t>(k) * (sizeof(float) + sizeof(int));
    ALSCALE_CUDA_CHECK(cudaFuncSetAttribute(knn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const unsigned blocks = static_cast<unsigned>((m + kTile - 1) / kTile);
    knn_kernel<<<blocks, kThreads, smem, stream>>>(x, static_cast<int>(n), static_cast<int>(d), static_cast<int>(k), rows,
                                                   static_cast<int>(m), indices, similarities);
    ALSCALE_CUDA_LAUNCHED("knn_kernel");
}

void knn_exact(const float* x, int64_t n, int64_t d, int64_t k, int64_t* indices, float* similarities,
               cudaStream_t stream) {
    knn_exact_rows(x, n, d, k, nullptr, n, indices, similarities, stream);
}

}  // namespace gpu
}  // namespace alscale
