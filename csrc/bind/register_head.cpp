// alscale._core: the head's inverse pairwise norms (a C x C table, or pair by pair).
#include "head.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

void register_head(py::module_& m) {
    m.def(
        "inverse_norms",
        [](const F64Array& weight, int num_threads) {
            if (weight.ndim() != 2) throw std::invalid_argument("weight must be 2-D");
            const int64_t C = weight.shape(0), D = weight.shape(1);
            py::array_t<double> out({static_cast<py::ssize_t>(C), static_cast<py::ssize_t>(C)});
            double* o = out.mutable_data();
            nogil([&] { inverse_norms(weight.data(), C, D, o, num_threads); });
            return out;
        },
        py::arg("weight"), py::arg("num_threads") = 0);

    py::class_<PairNorms>(m, "PairNorms")
        .def(py::init([](const F64Array& weight, int num_threads) {
                 if (weight.ndim() != 2) throw std::invalid_argument("weight must be 2-D");
                 return nogil([&] { return PairNorms(weight.data(), weight.shape(0), weight.shape(1), num_threads); });
             }),
             py::arg("weight"), py::arg("num_threads") = 0)
        .def_property_readonly("classes", &PairNorms::classes)
        .def_property_readonly("weight",
                               [](const PairNorms& p) {
                                   py::array_t<double> w({static_cast<py::ssize_t>(p.classes()),
                                                          static_cast<py::ssize_t>(p.dims())});
                                   std::copy(p.weight().begin(), p.weight().end(), w.mutable_data());
                                   return w;
                               })
        .def("exact", &PairNorms::exact, py::arg("p"), py::arg("c"))
        .def("lower_row", [](const PairNorms& p, int64_t row) {
            if (row < 0 || row >= p.classes()) throw py::index_error("no such class");
            py::array_t<double> out(static_cast<py::ssize_t>(p.classes()));
            p.lower_row(row, out.mutable_data());
            return out;
        }, py::arg("p"));
}

}  // namespace alscale::bind
