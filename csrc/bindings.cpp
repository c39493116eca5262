// The only PYBIND11_MODULE: the module's attributes and the kernels' enums, then one register_*
// per op file (csrc/bind/register_*.cpp; the shared views and nogil() in csrc/bind/arrays.hpp).
#include "balanced.hpp"
#include "bind/arrays.hpp"
#include "bind/register.hpp"
#include "hac.hpp"
#include "multilabel.hpp"
#include "scoring.hpp"

namespace py = pybind11;
using namespace alscale;

PYBIND11_MODULE(_core, m) {
    m.doc() = "alscale compiled kernels (private; use the alscale package)";
#ifdef ALSCALE_VERSION
    m.attr("__version__") = ALSCALE_VERSION;
#endif
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
    m.def("max_threads", [] { return thread_count(0); });
    // The kernels' enums, shared with Python (never copied there as magic numbers).
    py::enum_<Uncertainty>(m, "Uncertainty", "softmax uncertainty scores")
        .value("margin", Uncertainty::margin)
        .value("confidence", Uncertainty::confidence)
        .value("entropy", Uncertainty::entropy);
    py::enum_<Reduction>(m, "Reduction", "multi-label reductions over the classes (min: the most uncertain class)")
        .value("mean", Reduction::mean)
        .value("min", Reduction::min);
    py::enum_<DType>(m, "DType", "element types of logits matrices (bf16: bfloat16 bits)")
        .value("f16", DType::f16)
        .value("bf16", DType::bf16)
        .value("f32", DType::f32)
        .value("f64", DType::f64);
    py::enum_<HacMetric>(m, "Metric", "distances of exact average-linkage HAC")
        .value("euclidean", HacMetric::euclidean)
        .value("sqeuclidean", HacMetric::sqeuclidean)
        .value("cosine", HacMetric::cosine);
    m.def("default_extra", &default_extra, py::arg("num_classes"), py::arg("budget"));

    bind::register_scoring(m);
    bind::register_head(m);
    bind::register_topk(m);
    bind::register_balanced(m);
    bind::register_hac(m);
    bind::register_knn(m);
    bind::register_knn_lists(m);
    bind::register_cluster_margin(m);
    bind::register_diversity(m);
    bind::register_coverage(m);
    bind::register_bayes(m);
}
