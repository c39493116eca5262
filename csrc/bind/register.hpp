// One register_* per op file (csrc/bind/register_*.cpp), called by csrc/bindings.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace alscale::bind {

void register_scoring(py::module_& m);
void register_head(py::module_& m);
void register_topk(py::module_& m);
void register_balanced(py::module_& m);
void register_hac(py::module_& m);
void register_knn(py::module_& m);
void register_knn_lists(py::module_& m);
void register_cluster_margin(py::module_& m);
void register_diversity(py::module_& m);
void register_coverage(py::module_& m);
void register_bayes(py::module_& m);

}  // namespace alscale::bind
