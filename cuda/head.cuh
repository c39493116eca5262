// The head's inverse norms 1 / ||w_p - w_c|| computed on the device (issue 12) with the CPU's
// arithmetic (csrc/head.hpp pair_inverse_norm, csrc/lanedot.hpp lane order, and the power-of-two
// shift of python/alscale/_backend/arrays.py norms_of), so that a selection with W on the device
// is bit-identical to the CPU's and W never goes through host memory.
//
// The result is the C x C float64 table the row kernels read. It is kept for every C the device
// holds comfortably (C = 20,000: 3.2 GB of an H200's 141 GB; the CPU switches to the pair form
// from 8,192 classes because host RAM is scarcer); the bf16 lower-bound + exact-pair form of
// csrc/head.hpp PairNorms is not ported yet (see BENCHMARKS.md, issue 12).
#pragma once

#include "common.cuh"

namespace alscale {
namespace gpu {

// What the checks found (device memory; the caller reads it once, with its final sync).
struct HeadStatus {
    unsigned long long first_bad;  // the first row of W with NaN or inf, or ~0
    unsigned long long nonzero;    // 1 if any entry of W is not 0
    unsigned long long top;        // bits of max |w| (a non-negative double: bit order = value order)
    long long shift;               // scores are r * 2^shift (0 unless the head leaves float64's range)
};

// Fills inv (device, C x C float64, row-major) from w (device, C x D, any float dtype and strides):
// the values of csrc/head.cpp inverse_norms on the float64 weight, scaled as norms_of scales them,
// +inf on the diagonal and for equal rows. Enqueued on `stream`; nothing waits.
void head_inverse_norms(const DMatrix& w, double* inv, HeadStatus* status, cudaStream_t stream);

// Throws std::invalid_argument with the CPU path's message (arrays.check_weight) for a weight with
// NaN/inf or all zeros; call after the stream reached the kernels' end (status on the host).
void check_head_status(const HeadStatus& status);

}  // namespace gpu
}  // namespace alscale
