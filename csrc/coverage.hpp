// Greedy maximum coverage (ProbCover's selection): each step picks the candidate whose ball
// covers the most points not covered yet, ties to the smaller row; a lazy max-heap keeps the
// gains (they only fall as points get covered), so each step re-counts only stale tops.
#pragma once

#include <cstdint>

namespace alscale {

// Balls in CSR form: the ball of row i is members[indptr[i] .. indptr[i+1]) (distinct rows in
// [0, n), any order). covered (n, in/out): points covered before the first pick (e.g. by the
// labeled rows' balls); every pick's ball is marked covered. candidate (n): rows that may be
// picked. Writes up to `budget` picks to `picks` in pick order and returns how many: it stops
// early when no candidate covers an uncovered point. The result does not depend on num_threads
// (threads only count the initial gains).
int64_t max_coverage(int64_t n, const int64_t* indptr, const int64_t* members, uint8_t* covered,
                     const uint8_t* candidate, int64_t budget, int64_t* picks, int num_threads);

}  // namespace alscale
