// Bayesian (MC-dropout) scores: one pass over T Monte-Carlo samples of an (N, C) pool's logits
// or probabilities, accumulating per row the sum of the samples' probabilities and of their
// entropies — what BALD and the MC-averaged margin / confidence / entropy need.
//
// Two ways in, bit for bit the same result: an McState fed one (N, C) sample at a time (memory
// N x C sums, never T x N x C), or mc_scores over the T samples at once, row by row (memory a
// row per thread). Arithmetic in the kernels' precision: float for 16/32-bit samples, double for
// float64 ones (the first sample decides a state's precision). Each row's sums are taken over
// the samples in order, and within a row in 64-byte blocks (element c in lane c % 16 for float,
// c % 8 for double, the lanes combined in a fixed tree), so the result never depends on the
// thread count or the instruction set (AVX-512, AVX2, the baseline: the same bits).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"

namespace alscale {

// The per-row scores of MC samples, with q = mean over samples of the probabilities:
// bald = max(0, H[q] - mean H[p_t]) (the mutual information; rounding below 0 gives 0), and exactly
// 0 for a row whose samples are all the same, bit for bit (one sample, or a model without dropout):
// the samples agree, so there is nothing to learn about the model, whatever the rounding;
// margin = q(1) - q(2), confidence = max q, entropy = H[q], expected_entropy = mean H[p_t].
enum class McScore : int { bald = 0, margin = 1, confidence = 2, entropy = 3, expected_entropy = 4 };

// Samples given as probabilities are refused unless every value is finite and >= 0 and each
// row sums to 1 within this tolerance.
constexpr double kSumTolerance = 1e-3;

class McState {
public:
    // f64: accumulate in double (float64 samples), else in float.
    McState(int64_t rows, int64_t classes, bool f64);
    // Adds one (rows x classes) sample (logits, or probabilities when probabilities is set).
    // Throws std::invalid_argument naming the first bad row; the sums are then incomplete and
    // every later add or scores throws too (start a new state).
    void add(const Matrix& sample, bool probabilities, int num_threads);
    // out[i] = the score of row i over the samples added so far (at least one).
    void scores(McScore kind, double* out, int num_threads) const;
    int64_t rows() const { return rows_; }
    int64_t classes() const { return classes_; }
    int64_t samples() const { return samples_; }
    bool f64() const { return f64_; }

private:
    void check_usable() const;
    int64_t rows_, classes_, samples_ = 0;
    bool f64_, broken_ = false;
    std::unique_ptr<float[]> accf_;  // per row and class: the sum of the samples' probabilities
    std::unique_ptr<double[]> accd_;
    std::vector<double> entropy_;  // sum over samples of H[p_t], per row
    std::vector<uint64_t> hash_;   // per row: the first sample's row fingerprint
    std::vector<uint8_t> same_;    // per row: every sample so far had the first one's fingerprint
};

// The scores of T samples given at once (samples[t] a rows x classes view each), fused: each
// row's T sample rows are read, softmaxed and summed in a per-thread buffer, then scored. Equal
// bit for bit to an McState fed samples[0], samples[1], ... in that order (the state tells equal
// rows by a 64-bit fingerprint, this by their values: they could differ only on a fingerprint
// collision, for which a row's BALD would read 0).
void mc_scores(const std::vector<Matrix>& samples, bool probabilities, bool f64, McScore kind, double* out,
               int num_threads);

// BatchBALD's joint entropy term for each candidate x_i (Kirsch et al. 2019): with `configs` the
// M x K matrix P[m, k] = prod over the batch so far of p_k(y_b = yhat_{m,b}) (row-major) and
// probs the candidates' K x C probabilities (n x K x C, row-major),
//     out[i] = -sum_m weight[m] sum_c J log J,   J[m, c] = (1/K) sum_k P[m, k] p_k(c | x_i)
// (0 log 0 = 0): the exact joint entropy when the configurations are all of them (weight 1),
// the importance-sampling estimate when they are drawn from the joint (weight 1 / (M p(m))).
// Sums in a fixed order: the result never depends on the thread count.
void joint_entropy(const double* configs, const double* weight, int64_t m, int64_t k, const double* probs,
                   int64_t n, int64_t classes, double* out, int num_threads);

}  // namespace alscale
