// BASE (Balanced Selection) with the pool on the GPU: the GPU twin of csrc/balanced.hpp's
// select_balanced, giving exactly the CPU's indices.
//
// Everything runs on the device, on the caller's stream, with one synchronisation per pass (one
// per call unless heavy ties force another pass): the pool is streamed in chunks; per chunk one
// kernel computes each row's r_c (bit-identical to the CPU) and appends (r_c, row) to class c's
// device buffer when it passes the class's current bound, and a second kernel (one block per
// class) cuts every buffer back to the class's capacity by an exact radix select on (key, row),
// which sets the next bound. After the last chunk each class holds exactly the `capacity`
// smallest (key, row) candidates that the CPU's bounded heap would hold, and cuda/serve.cu serves
// the classes in order on the device (segmented sort, then one block walking the classes with
// taken flags): the picks are written straight into the caller's output. When heavy ties leave a
// class short of candidates (the CPU's "another pass" case) the walk reports that class, the
// candidates go to the host and the CPU's own BalancedState (advance()) sets up the next pass,
// which runs on the device again with the taken rows masked: the same passes as the CPU's state
// with pass_memory 0, so passes_bound() holds for it.
#pragma once

#include <vector>

#include "common.cuh"
#include "head.cuh"

namespace alscale {
namespace gpu {

// exclude: nullptr or logits.rows device bytes (non-zero: skip); inv_norm: device C x C inverse
// norms or nullptr (plain gap); head: the device status of cuda/head.cu's head_inverse_norms
// that filled inv_norm (checked after the call's sync, before anything else), or nullptr.
// out: device int64, at least min(budget, logits.rows) entries. Returns how many picks were
// written (min(budget, rows not excluded)). Throws std::invalid_argument on a bad weight or
// NaN/inf logits (first row), as the CPU does.
int64_t select_balanced(const DMatrix& logits, int64_t budget, const uint8_t* exclude, const double* inv_norm,
                        const HeadStatus* head, int64_t* out, cudaStream_t stream);

}  // namespace gpu
}  // namespace alscale
