// Points packed for GEMM-shaped distance tiles (exact HAC distances, exact kNN): blocks of kTileCols
// points transposed to d x kTileCols (zero padded), so a tile of kTileRows query rows streams one
// block with unit stride.
#pragma once

#include <cstdint>
#include <vector>

namespace alscale {

constexpr int64_t kTileCols = 64;  // points per transposed block
constexpr int64_t kTileRows = 4;   // query rows per tile

inline std::vector<float> pack_transposed_blocks(const float* x, int64_t n, int64_t d) {
    const int64_t blocks = (n + kTileCols - 1) / kTileCols;
    std::vector<float> xt(static_cast<size_t>(blocks * d * kTileCols), 0.0f);
    for (int64_t j = 0; j < n; ++j)
        for (int64_t k = 0; k < d; ++k) xt[(j / kTileCols) * d * kTileCols + k * kTileCols + (j % kTileCols)] = x[j * d + k];
    return xt;
}

}  // namespace alscale
