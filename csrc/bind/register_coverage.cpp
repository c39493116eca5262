// alscale._core: ProbCover's greedy maximum coverage.
#include "coverage.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_coverage(py::module_& m) {
    m.def(
        "max_coverage",
        [](const I64Array& indptr, const I64Array& members, const U8Array& covered, const U8Array& candidate,
           int64_t budget, int num_threads) {
            if (indptr.ndim() != 1 || indptr.shape(0) < 1) throw std::invalid_argument("indptr must be 1-D, n + 1 long");
            const int64_t n = indptr.shape(0) - 1;
            if (members.ndim() != 1) throw std::invalid_argument("members must be 1-D");
            if (covered.ndim() != 1 || covered.shape(0) != n || candidate.ndim() != 1 || candidate.shape(0) != n)
                throw std::invalid_argument("covered and candidate must have one entry per row");
            if (budget < 0) throw std::invalid_argument("budget must be non-negative");
            const int64_t* ip = indptr.data();
            const int64_t* mp = members.data();
            if (ip[0] != 0 || ip[n] != members.shape(0)) throw std::invalid_argument("indptr must run from 0 to len(members)");
            for (int64_t i = 0; i < n; ++i)
                if (ip[i + 1] < ip[i]) throw std::invalid_argument("indptr must be non-decreasing");
            std::vector<int64_t> seen(static_cast<size_t>(n), -1);
            for (int64_t i = 0; i < n; ++i) {
                for (int64_t j = ip[i]; j < ip[i + 1]; ++j) {
                    if (mp[j] < 0 || mp[j] >= n) throw std::invalid_argument("ball member out of range");
                    if (seen[static_cast<size_t>(mp[j])] == i) throw std::invalid_argument("a ball lists a member twice");
                    seen[static_cast<size_t>(mp[j])] = i;
                }
            }
            py::array_t<uint8_t> cov(n);
            std::copy(covered.data(), covered.data() + n, cov.mutable_data());
            std::vector<int64_t> picks(static_cast<size_t>(std::min(budget, n)));
            int64_t count = 0;
            nogil([&] { count = max_coverage(n, ip, mp, cov.mutable_data(), candidate.data(), static_cast<int64_t>(picks.size()),
                                     picks.data(), num_threads); });
            picks.resize(static_cast<size_t>(count));
            return py::make_tuple(to_numpy(std::move(picks)), cov);
        },
        py::arg("indptr"), py::arg("members"), py::arg("covered"), py::arg("candidate"), py::arg("budget"),
        py::arg("num_threads") = 0);
}

}  // namespace alscale::bind
