// alscale._core: Bayesian scores of MC samples (BALD, BatchBALD joint entropy).
#include "bayes.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_bayes(py::module_& m) {
    // Bayesian (MC-dropout) scores: csrc/bayes.hpp.
    py::enum_<McScore>(m, "McScore", "scores of MC samples")
        .value("bald", McScore::bald)
        .value("margin", McScore::margin)
        .value("confidence", McScore::confidence)
        .value("entropy", McScore::entropy)
        .value("expected_entropy", McScore::expected_entropy);
    py::class_<McState>(m, "McState")
        .def(py::init<int64_t, int64_t, bool>(), py::arg("rows"), py::arg("classes"), py::arg("f64"))
        .def(
            "add",
            [](McState& s, const py::array& sample, bool bf16, bool probabilities, int num_threads) {
                const Matrix x = matrix_view(sample, bf16);
                nogil([&] { s.add(x, probabilities, num_threads); });
            },
            py::arg("sample"), py::arg("bf16"), py::arg("probabilities"), py::arg("num_threads") = 0)
        .def(
            "scores",
            [](const McState& s, McScore kind, int num_threads) {
                py::array_t<double> out(static_cast<py::ssize_t>(s.rows()));
                double* o = out.mutable_data();
                nogil([&] { s.scores(kind, o, num_threads); });
                return out;
            },
            py::arg("kind"), py::arg("num_threads") = 0)
        .def_property_readonly("rows", &McState::rows)
        .def_property_readonly("classes", &McState::classes)
        .def_property_readonly("samples", &McState::samples)
        .def_property_readonly("f64", &McState::f64);

    m.def(
        "mc_scores",
        [](const py::list& samples, bool bf16, bool probabilities, bool f64, McScore kind, int num_threads) {
            std::vector<py::array> keep;  // the views stay alive while the kernel reads them
            std::vector<Matrix> views;
            for (const auto& item : samples) {
                if (!py::isinstance<py::array>(item)) throw py::type_error("MC samples must be numpy arrays");
                keep.push_back(py::reinterpret_borrow<py::array>(item));
                views.push_back(matrix_view(keep.back(), bf16));
            }
            if (views.empty()) throw std::invalid_argument("no MC sample given");
            py::array_t<double> out(static_cast<py::ssize_t>(views[0].rows));
            double* o = out.mutable_data();
            nogil([&] { mc_scores(views, probabilities, f64, kind, o, num_threads); });
            return out;
        },
        py::arg("samples"), py::arg("bf16"), py::arg("probabilities"), py::arg("f64"), py::arg("kind"),
        py::arg("num_threads") = 0);

    m.def(
        "joint_entropy",
        [](const F64Array& configs, const F64Array& weight, const F64Array& probs, int num_threads) {
            if (configs.ndim() != 2 || weight.ndim() != 1 || weight.shape(0) != configs.shape(0))
                throw std::invalid_argument("configs must be M x K and weight of length M");
            if (probs.ndim() != 3 || probs.shape(1) != configs.shape(1))
                throw std::invalid_argument("probs must be n x K x C with the configs' K");
            const int64_t n = probs.shape(0);
            py::array_t<double> out(static_cast<py::ssize_t>(n));
            double* o = out.mutable_data();
            nogil([&] { joint_entropy(configs.data(), weight.data(), configs.shape(0), configs.shape(1), probs.data(), n,
                              probs.shape(2), o, num_threads); });
            return out;
        },
        py::arg("configs"), py::arg("weight"), py::arg("probs"), py::arg("num_threads") = 0);
}

}  // namespace alscale::bind
