// BASE's serving step on the device (issue 12): the classes served in index order from their
// candidate buffers, exactly as csrc/balanced.cpp's BalancedState::advance() serves them, so that
// only the picks leave the device. The specification, emulated on the host and checked against
// the CPU's select_balanced, is tests/test_serve_spec.py; this file implements it step by step:
//   1. compact: class c's candidates (min(count[c], capacity[c]) of them in its strided buffer,
//      already cut to the capacity smallest by cut_classes) packed densely at offsets[c];
//   2. sort: every class's candidates by (key, row): two stable CUB segmented sorts, by row and
//      then by key (LSD order), so equal keys stay in row order (ties to the smaller row);
//   3. walk: one block walks the classes start..C-1 in order; class c reads its sorted candidates
//      a tile at a time, a block-wide exclusive scan places the free ones (row not taken), the
//      first q_c - got are written to the output at the class's offset and marked taken;
//   4. a class whose candidates run out before its quota is the first starved class: the walk
//      stops there and reports it (the host then runs the next pass as the CPU's state does).
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

// What the walk reports (device memory, read once per pass by the host).
struct ServeStatus {
    long long starved;  // the first class that ran short, or -1 (every class served)
    long long picked;   // picks written by this pass (classes before `starved` when it is >= 0)
};

// The candidate buffers as balanced.cu keeps them: class c owns slots [c * slots, c * slots +
// count[c]) of keys/rows (count[c] <= capacity[c] after the last cut).
struct ClassBuffers {
    const unsigned long long* keys;
    const int64_t* rows;
    const unsigned int* count;
    const int64_t* capacity;
    int64_t slots;
};

// Serves classes start..C-1 from the buffers. budget: the budget of this pass; clip: take
// min(budget, *fed) instead (the first pass: the budget clipped to the rows fed, read on the device).
// out: the picks of this pass are written from out[0]; taken: n device bytes, zeroed here (rows of
// this pass's picks; earlier passes' rows are masked out of the candidates). total_capacity: the
// sum of the capacities (the compact arrays' size). Everything is enqueued on `stream`; nothing
// waits: *status is valid once the stream reaches this point.
void serve_classes(const ClassBuffers& buffers, int64_t classes, int64_t start, int64_t budget, bool clip,
                   const unsigned long long* fed, int64_t n, int64_t total_capacity, int64_t* out,
                   ServeStatus* status, cudaStream_t stream);

}  // namespace gpu
}  // namespace alscale
