// alscale._core: softmax and multi-label uncertainty scores, distances to the boundaries.
#include "scoring.hpp"
#include "multilabel.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_scoring(py::module_& m) {
    m.def(
        "uncertainty_scores",
        [](const py::array& logits, bool bf16, Uncertainty kind, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            py::array_t<double> out(static_cast<py::ssize_t>(x.rows));
            double* o = out.mutable_data();
            nogil([&] { uncertainty_scores(x, kind, o, num_threads); });
            return out;
        },
        py::arg("logits"), py::arg("bf16"), py::arg("kind"), py::arg("num_threads") = 0);

    m.def(
        "multilabel_scores",
        [](const py::array& logits, bool bf16, Uncertainty kind, Reduction reduction, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            py::array_t<double> out(static_cast<py::ssize_t>(x.rows));
            double* o = out.mutable_data();
            nogil([&] { multilabel_scores(x, kind, reduction, o, num_threads); });
            return out;
        },
        py::arg("logits"), py::arg("bf16"), py::arg("kind"), py::arg("reduction"), py::arg("num_threads") = 0);

    m.def(
        "boundary_scores",
        [](const py::array& logits, bool bf16, const py::object& inv, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            F64Array hold;
            const HeadNorms in = head_of(inv, x.cols, hold);
            py::array_t<double> out(static_cast<py::ssize_t>(x.rows));
            double* o = out.mutable_data();
            nogil([&] { boundary_scores(x, in, o, num_threads); });
            return out;
        },
        py::arg("logits"), py::arg("bf16"), py::arg("inv_norm"), py::arg("num_threads") = 0);
}

}  // namespace alscale::bind
