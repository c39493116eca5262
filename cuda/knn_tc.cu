#include "knn_tc.cuh"

#include <cuda_bf16.h>
#include <mma.h>

#include "knn.cuh"

// Why our own WMMA kernel and not cuBLAS + a filter kernel (METHOD.md "two numbers first";
// BENCHMARKS.md has the table). The GEMM of an n-point graph is 2 n^2 d flops: 1M x 128 is
// 2.6e14 (0.33 s at the H200's ~790 TFLOP/s bf16 measured here, 0.66 s at TF32's half rate),
// 9M x 64 is 1.0e16 (13 s bf16, 26 s TF32). A library GEMM must write its n x n similarities
// to memory and a filter kernel read them back: 2 x 4 n^2 bytes = 8 TB at 1M (1.9 s at 4.3
// TB/s, the 2 s target spent on traffic alone) and 648 TB at 9M (150 s against a 60 s
// target), even blocked. Fused, the similarities never leave the multiprocessor: the kernel
// reads the rounded points ((n / kBM) passes over an n x d matrix of 2 or 4 bytes, from L2 for
// the most part) and writes n k results. So the filter has to live in the GEMM's epilogue,
// which cuBLAS does not offer; WMMA (mma.sync, sm_80+) needs no new runtime dependency.
//
// One block owns kBM = 64 query rows and streams every point in tiles of kBN = 128:
//   1. S = A B^T for the 64 x 128 tile on tensor cores (8 warps, each 16 rows x 64 columns),
//      operands staged through shared memory 128 bytes of dimensions at a time;
//   2. the epilogue keeps, per query row, every point with s^ >= tau in a list of `cap`
//      candidates (shared memory). When a list fills, the row's k-th largest s^ in it gives
//      tau = max(tau, RD(kth - 2 E_i)) and the list is compacted (E_i <= eps: the row's own
//      bound, from the norm of its actual rounding error, csrc/knn_bound.hpp knn_row_bound);
//      a row whose list stays three-quarters full after that is handed to the exact kernel
//      (fallback) instead;
//   3. after the last tile each warp re-ranks its rows' candidates: the float32 dot product
//      summed over the dimensions in order with separate multiply and add roundings (csrc/
//      knn.cpp's arithmetic, as cuda/knn.cu), then the top k by (s desc, row asc).
// Correctness of 2 (csrc/knn_bound.hpp): tau never exceeds the row's final k-th largest s^ minus
// 2 E_i (a k-th largest over a subset of the points is at most the k-th largest over all), so
// the list always holds the exact top k; the re-rank then gives the CPU's graph bit for bit,
// whatever the atomics' order: the candidate set may differ between runs, the result cannot.
//
// Bounds and overflow: n <= 2^31 - 129 (rows and candidates as int; tile and element offsets
// in int64), cap <= 256 and counts <= cap + kBN; every tile row read lies in the zero-padded
// n_pad x d_pad copy, so no load is out of bounds; columns j >= n are skipped by the epilogue.

namespace alscale {
namespace gpu {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBM = 64;                     // query rows per block
constexpr int kBN = 128;                    // points per tile
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;       // 256
constexpr int kStageBytes = 128;            // dimensions per stage: 128 bytes of each row
constexpr int kPadBytes = 16;               // row padding in shared memory (bank conflicts)
constexpr int kLdS = kBN + 4;               // float row stride of the similarity tile
constexpr int kTileBytes = kBM * kLdS * 4;  // 33,792 >= the operand stages (192 x 144 = 27,648)
static_assert((kBM + kBN) * (kStageBytes + kPadBytes) <= kTileBytes, "operand stages alias the tile");
static_assert(kBM * 4 == kThreads, "the epilogue gives each query row 4 threads");
constexpr int kMaxCap = 256;

// The two operand formats. The points are rounded once (round_points); loads then see exact
// bf16 / TF32 values, so the hardware's own conversion (truncation for TF32) never applies.
// bf16 / TF32 WMMA exist from sm_80: device code for older targets (a CUDAARCHS=75 build) gets
// the storage types only, and kernels that trap. knn_tc never launches them: it checks the device
// (compute capability >= 8) and that the loaded kernel image itself is sm_80+ code (a CUDAARCHS=75
// build JIT-compiles its compute_75 PTX on an H200, and that image holds the trapping versions).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define ALSCALE_KNN_TC_MMA 1
#else
#define ALSCALE_KNN_TC_MMA 0
#endif
struct Bf16 {
    using Store = __nv_bfloat16;
#if ALSCALE_KNN_TC_MMA
    static constexpr KnnPrecision kPrecision = KnnPrecision::bf16;
    static constexpr int kK = 16;
    using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
    using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
    using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
    __device__ static Store round(float v) { return __float2bfloat16_rn(v); }  // RNE: u = 2^-8
#endif
};
struct Tf32 {
    using Store = float;
#if ALSCALE_KNN_TC_MMA
    static constexpr KnnPrecision kPrecision = KnnPrecision::tf32;
    static constexpr int kK = 8;
    using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
    using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
    using Acc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
    __device__ static Store round(float v) { return wmma::__float_to_tf32(v); }  // cvt.rna: u = 2^-11
#endif
};

// xr (n_pad x d_pad) = the points rounded to the operand format, zero padded.
template <class P>
__global__ void round_points(const float* __restrict__ x, int64_t n, int64_t d, int64_t n_pad, int64_t d_pad,
                             typename P::Store* __restrict__ xr) {
#if !ALSCALE_KNN_TC_MMA
    __trap();
#else
    const int64_t total = n_pad * d_pad;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = e / d_pad, c = e % d_pad;
        xr[e] = P::round(r < n && c < d ? x[r * d + c] : 0.0f);
    }
#endif
}

// rho[i] >= ||r(x_i) - x_i|| (csrc/knn_bound.hpp knn_rounding_norm), one warp per row, and
// rho_max_bits = the largest rho's bits (non-negative floats order as their unsigned bits).
template <class P>
__global__ void rounding_norms(const float* __restrict__ x, int64_t n, int64_t d, float* __restrict__ rho,
                               unsigned* rho_max_bits) {
#if ALSCALE_KNN_TC_MMA
    const int lane = threadIdx.x % 32;
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
    for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; i < n; i += warps) {
        double ss = 0.0;
        for (int64_t q = lane; q < d; q += 32) {
            const float v = x[i * d + q];
            const double e = static_cast<double>(static_cast<float>(P::round(v))) - static_cast<double>(v);  // exact
            ss = __dadd_rn(ss, __dmul_rn(e, e));  // exact square; the sum's rounding is in the bound
        }
        for (int o = 16; o > 0; o /= 2) ss = __dadd_rn(ss, __shfl_xor_sync(0xffffffffu, ss, o));
        if (lane == 0) {
            const float r = knn_rounding_norm(ss, d);
            rho[i] = r;
            atomicMax(rho_max_bits, __float_as_uint(r));
        }
    }
#else
    __trap();
#endif
}

// two_eps[i] = 2 E_i = 2 knn_row_bound(rho_i, rho_max) in place of rho_i (a doubling: exact).
template <class P>
__global__ void row_bounds(float* __restrict__ rho_then_two_eps, int64_t n, int64_t d, const unsigned* rho_max_bits) {
#if ALSCALE_KNN_TC_MMA
    const float rho_max = __uint_as_float(*rho_max_bits);
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        rho_then_two_eps[i] = 2.0f * knn_row_bound(rho_then_two_eps[i], rho_max, d, P::kPrecision);
#else
    __trap();
#endif
}

#if ALSCALE_KNN_TC_MMA  // used only by the MMA kernel
__device__ __forceinline__ bool better(float s, int r, float ts, int tr) { return s > ts || (s == ts && r < tr); }

// One warp: the row's list (cap entries, all written) is full. tau rises to RD(kth - 2 E_i) and
// the list keeps s^ >= tau, in order; a list that stays over three-quarters full marks the row
// for the exact fallback (tau = +inf: nothing more is inserted).
__device__ void compact(float* s, int* j, int& count, float& tau, int& out_of_room, int cap, int k, float two_eps) {
    const int lane = threadIdx.x & 31;
    float kth = -INFINITY;
    for (int e = lane; e < cap; e += 32) {  // cap is a multiple of 32: every lane runs every round
        const float v = s[e];
        int gt = 0, ge = 0;
        for (int f = 0; f < cap; ++f) {
            const float w = s[f];
            gt += w > v;
            ge += w >= v;
        }
        if (gt < k && ge >= k) kth = v;  // the k-th largest with multiplicity (cap > k: it exists)
    }
    for (int o = 16; o > 0; o /= 2) kth = fmaxf(kth, __shfl_xor_sync(0xffffffffu, kth, o));
    const float t = fmaxf(tau, knn_candidate_threshold(kth, two_eps));
    int kept = 0;
    for (int base = 0; base < cap; base += 32) {
        const int e = base + lane;
        const float v = s[e];
        const int w = j[e];
        const bool keep = v >= t;
        const unsigned ballot = __ballot_sync(0xffffffffu, keep);
        __syncwarp();  // every lane has read its entry before any is overwritten (writes go to <= e)
        if (keep) {
            const int at = kept + __popc(ballot & ((1u << lane) - 1u));
            s[at] = v;
            j[at] = w;
        }
        kept += __popc(ballot);
        __syncwarp();
    }
    if (lane == 0) {
        if (kept > cap - cap / 4) {
            out_of_room = 1;
            tau = INFINITY;
        } else {
            count = kept;
            tau = t;
        }
    }
    __syncwarp();
}
#endif

template <class P>
__global__ void __launch_bounds__(kThreads) knn_tc_kernel(const typename P::Store* __restrict__ xr, int64_t d_pad,
                                                          const float* __restrict__ x, int n, int d, int k, int cap,
                                                          const float* __restrict__ row_two_eps, int64_t* indices,
                                                          float* similarities, int* fallback, int* fallback_count) {
#if !ALSCALE_KNN_TC_MMA
    __trap();  // bf16 / TF32 WMMA need sm_80; knn_tc never launches this below (it checks the device)
#else
    using Store = typename P::Store;
    constexpr int kVec = 16 / static_cast<int>(sizeof(Store));                  // elements per 16-byte load
    constexpr int kBK = kStageBytes / static_cast<int>(sizeof(Store));          // dimensions per stage
    constexpr int kLd = (kStageBytes + kPadBytes) / static_cast<int>(sizeof(Store));  // 72 bf16 / 36 float
    extern __shared__ __align__(128) unsigned char smem[];
    Store* stage = reinterpret_cast<Store*>(smem);  // kBM query rows, then kBN point rows, kLd apart
    float* tile = reinterpret_cast<float*>(smem);   // the same bytes, once the MMAs of a tile are done
    float* cand_s = reinterpret_cast<float*>(smem + kTileBytes);
    int* cand_j = reinterpret_cast<int*>(cand_s + kBM * cap);
    int* count = cand_j + kBM * cap;
    float* tau = reinterpret_cast<float*>(count + kBM);
    int* out_of_room = reinterpret_cast<int*>(tau + kBM);
    float* two_eps = reinterpret_cast<float*>(out_of_room + kBM);  // 2 E_i per row (an exact doubling)

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kBM;
    for (int r = tid; r < kBM; r += kThreads) {
        count[r] = 0;
        tau[r] = -INFINITY;
        out_of_room[r] = 0;
        two_eps[r] = i0 + r < n ? row_two_eps[i0 + r] : 0.0f;  // rows past n insert nothing
    }
    const int wr = warp / 2, wc = warp % 2;          // MMA: rows wr*16.., columns wc*64..
    const int fr = tid / 4, fsub = tid % 4;          // epilogue: row fr, columns fsub + 4m
    const int64_t fi = i0 + fr;
    __syncthreads();

    for (int64_t j0 = 0; j0 < n; j0 += kBN) {
        typename P::Acc acc[4];
#pragma unroll
        for (int f = 0; f < 4; ++f) wmma::fill_fragment(acc[f], 0.0f);
        for (int64_t k0 = 0; k0 < d_pad; k0 += kBK) {
            // 16-byte loads of rows i0.. (query) and j0.. (points): all < n_pad, 16-byte aligned
            // (d_pad is a multiple of kBK, and cudaMallocAsync aligns to 256 bytes).
            for (int e = tid; e < (kBM + kBN) * (kStageBytes / 16); e += kThreads) {
                const int row = e / (kStageBytes / 16), chunk = e % (kStageBytes / 16);
                const int64_t g = row < kBM ? i0 + row : j0 + (row - kBM);
                *reinterpret_cast<uint4*>(stage + row * kLd + chunk * kVec) =
                    __ldg(reinterpret_cast<const uint4*>(xr + g * d_pad + k0 + chunk * kVec));
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < kBK; kk += P::kK) {
                typename P::FragA a;
                wmma::load_matrix_sync(a, stage + (wr * 16) * kLd + kk, kLd);
#pragma unroll
                for (int f = 0; f < 4; ++f) {
                    typename P::FragB b;  // column c of B = point row c of the stage: col_major
                    wmma::load_matrix_sync(b, stage + (kBM + wc * 64 + f * 16) * kLd + kk, kLd);
                    wmma::mma_sync(acc[f], a, b, acc[f]);
                }
            }
            __syncthreads();  // the stage is read before the next load (or the tile store) overwrites it
        }
#pragma unroll
        for (int f = 0; f < 4; ++f)
            wmma::store_matrix_sync(tile + (wr * 16) * kLdS + wc * 64 + f * 16, acc[f], kLdS, wmma::mem_row_major);
        __syncthreads();

        // Epilogue: each of the row's 4 threads takes 32 columns; rounds until every value is
        // inserted or filtered, compacting the lists that filled in between.
        unsigned todo = 0xffffffffu;
        for (;;) {
            const float t = tau[fr];
#pragma unroll
            for (int m = 0; m < 32; ++m) {
                const unsigned bit = 1u << m;
                if (!(todo & bit)) continue;
                const int64_t jj = j0 + fsub + 4 * m;
                const float v = tile[fr * kLdS + fsub + 4 * m];
                if (fi >= n || jj >= n || jj == fi || !(v >= t)) {
                    todo &= ~bit;
                    continue;
                }
                const int slot = atomicAdd(&count[fr], 1);  // <= cap + kBN: no int overflow
                if (slot < cap) {
                    cand_s[fr * cap + slot] = v;
                    cand_j[fr * cap + slot] = static_cast<int>(jj);
                    todo &= ~bit;
                }
            }
            if (!__syncthreads_or(todo != 0u)) break;  // also: every read of `tile` is done
            for (int r = warp; r < kBM; r += kWarps)
                if (count[r] >= cap && !out_of_room[r])
                    compact(cand_s + r * cap, cand_j + r * cap, count[r], tau[r], out_of_room[r], cap, k, two_eps[r]);
            __syncthreads();
        }
    }

    // Re-rank: a warp per row; exact similarities lane by lane, then each candidate's rank.
    for (int r = warp; r < kBM; r += kWarps) {
        const int64_t i = i0 + r;
        if (i >= n) continue;
        const int m = min(count[r], cap);
        if (out_of_room[r] || m < k) {  // m < k cannot happen (n - 1 >= k points pass); kept as a guard
            if (lane == 0) fallback[atomicAdd(fallback_count, 1)] = static_cast<int>(i);
            continue;
        }
        float* s = cand_s + r * cap;
        const int* w = cand_j + r * cap;
        const float* xi = x + i * d;
        for (int e = lane; e < m; e += 32) {
            const float* xj = x + static_cast<int64_t>(w[e]) * d;
            float a = 0.0f;
            for (int q = 0; q < d; ++q) a = __fadd_rn(a, __fmul_rn(__ldg(xi + q), __ldg(xj + q)));  // the CPU's order
            s[e] = a;
        }
        __syncwarp();
        for (int e = lane; e < m; e += 32) {
            const float v = s[e];
            const int c = w[e];
            int rank = 0;
            for (int f = 0; f < m; ++f) rank += better(s[f], w[f], v, c);
            if (rank < k) {
                indices[i * k + rank] = c;
                similarities[i * k + rank] = v;
            }
        }
        __syncwarp();
    }
#endif
}

size_t smem_bytes(int64_t cap) { return kTileBytes + static_cast<size_t>(kBM) * cap * 8 + kBM * 16; }

template <class P>
int64_t run(const float* x, int64_t n, int64_t d, int64_t k, int64_t cap, int64_t* indices, float* similarities,
            cudaStream_t stream) {
    using Store = typename P::Store;
    const int64_t bk = kStageBytes / static_cast<int64_t>(sizeof(Store));
    const int64_t d_pad = (d + bk - 1) / bk * bk, n_pad = (n + kBN - 1) / kBN * kBN;
    Buffer<Store> xr(n_pad * d_pad, stream);
    round_points<P><<<static_cast<unsigned>(blocks_for(n_pad * d_pad, 256, 65536)), 256, 0, stream>>>(
        x, n, d, n_pad, d_pad, xr.get());
    ALSCALE_CUDA_LAUNCHED("round_points");
    Buffer<float> rho(n, stream);
    Buffer<unsigned> rho_max(1, stream);
    rho_max.zero();  // the bits of +0.0f
    rounding_norms<P><<<static_cast<unsigned>(blocks_for(n * 32, 256, 65536)), 256, 0, stream>>>(x, n, d, rho.get(),
                                                                                                rho_max.get());
    ALSCALE_CUDA_LAUNCHED("rounding_norms");
    row_bounds<P><<<static_cast<unsigned>(blocks_for(n, 256, 65536)), 256, 0, stream>>>(rho.get(), n, d, rho_max.get());
    ALSCALE_CUDA_LAUNCHED("row_bounds");
    Buffer<int> fallback(n, stream), fallback_count(1, stream);
    fallback_count.zero();
    const size_t smem = smem_bytes(cap);
    ALSCALE_CUDA_CHECK(cudaFuncSetAttribute(knn_tc_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const unsigned blocks = static_cast<unsigned>((n + kBM - 1) / kBM);  // <= 2^25
    knn_tc_kernel<P><<<blocks, kThreads, smem, stream>>>(xr.get(), d_pad, x, static_cast<int>(n), static_cast<int>(d),
                                                         static_cast<int>(k), static_cast<int>(cap), rho.get(), indices,
                                                         similarities, fallback.get(), fallback_count.get());
    ALSCALE_CUDA_LAUNCHED("knn_tc_kernel");
    int rows = 0;
    to_host(&rows, fallback_count.get(), 1, stream);
    sync(stream);
    if (rows > 0) knn_exact_rows(x, n, d, k, fallback.get(), rows, indices, similarities, stream);
    return rows;
}

}  // namespace

int64_t knn_tc_capacity(int64_t k) {
    const int64_t want = (4 * k + 31) / 32 * 32;
    return want < 128 ? 128 : (want > kMaxCap ? kMaxCap : want);
}

int64_t knn_tc(const float* x, int64_t n, int64_t d, int64_t k, KnnPrecision precision, int64_t* indices,
               float* similarities, cudaStream_t stream) {
    if (k < 1 || k >= n) throw std::invalid_argument("knn needs 1 <= k < n");
    if (k > kKnnMaxK) throw std::invalid_argument("the GPU kNN keeps at most " + std::to_string(kKnnMaxK) + " neighbours per row");
    if (n > INT32_MAX - 128) throw std::invalid_argument("the GPU kNN handles at most 2^31 - 129 points");
    if (d < 1) throw std::invalid_argument("points have no features");
    if (d > kKnnBoundMaxDims)
        throw std::invalid_argument("the tensor-core kNN handles at most " + std::to_string(kKnnBoundMaxDims) + " dimensions");
    if (precision != KnnPrecision::bf16 && precision != KnnPrecision::tf32)
        throw std::invalid_argument("unknown kNN precision code");
    int device = 0, major = 0, optin = 0;
    ALSCALE_CUDA_CHECK(cudaGetDevice(&device));
    ALSCALE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    ALSCALE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    // The list must hold k candidates and leave room to insert: cap >= k + 32 (cap - cap/4 > k).
    int64_t cap = knn_tc_capacity(k);
    while (cap > k + 32 && smem_bytes(cap) > static_cast<size_t>(optin)) cap -= 32;
    cudaFuncAttributes fa{};
    if (precision == KnnPrecision::bf16)
        ALSCALE_CUDA_CHECK(cudaFuncGetAttributes(&fa, knn_tc_kernel<Bf16>));
    else
        ALSCALE_CUDA_CHECK(cudaFuncGetAttributes(&fa, knn_tc_kernel<Tf32>));
    const bool mma_image = fa.ptxVersion >= 80 && fa.binaryVersion >= 80;
    if (major < 8 || !mma_image || smem_bytes(cap) > static_cast<size_t>(optin) || cap - cap / 4 <= k) {
        knn_exact(x, n, d, k, indices, similarities, stream);  // no bf16/TF32 MMA or too little shared memory
        return n;
    }
    return precision == KnnPrecision::bf16 ? run<Bf16>(x, n, d, k, cap, indices, similarities, stream)
                                           : run<Tf32>(x, n, d, k, cap, indices, similarities, stream);
}

}  // namespace gpu
}  // namespace alscale
