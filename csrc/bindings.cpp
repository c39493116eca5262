// The only pybind11 file: turns numpy buffers into kernel views, releases the GIL around every
// kernel and hands results back as numpy arrays. Validation with friendly messages lives in the
// Python layer (alscale/_backend/arrays.py); the checks here only keep bad calls from crashing.
#include <optional>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "badge.hpp"
#include "bayes.hpp"
#include "balanced.hpp"
#include "cluster_margin.hpp"
#include "coreset.hpp"
#include "coverage.hpp"
#include "graph_hac.hpp"
#include "head.hpp"
#include "hac.hpp"
#include "knn.hpp"
#include "knn_bound.hpp"
#include "multilabel.hpp"
#include "scoring.hpp"
#include "topk.hpp"

namespace py = pybind11;
using namespace alscale;

namespace {

template <class T>
py::array_t<T> to_numpy_copy(const std::vector<T>& v);

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Z (as an (n-1, 4) array) and the flat labels at the cut.
py::tuple linkage_and_labels(std::vector<double>&& z, int64_t n, double threshold, int64_t n_clusters) {
    std::vector<int64_t> labels;
    {
        py::gil_scoped_release nogil;
        labels = labels_from_linkage(z.data(), n, threshold, n_clusters);
    }
    py::array_t<double> za({static_cast<py::ssize_t>(n - 1), static_cast<py::ssize_t>(4)});
    std::copy(z.begin(), z.end(), za.mutable_data());
    return py::make_tuple(za, to_numpy_copy(labels));
}

// (keys, ids, positions) of ranked candidates, as three arrays.
py::tuple ranked_arrays(const std::vector<Ranked>& best) {
    const auto m = static_cast<py::ssize_t>(best.size());
    py::array_t<double> keys(m);
    py::array_t<int64_t> ids(m), pos(m);
    for (py::ssize_t i = 0; i < m; ++i) {
        keys.mutable_data()[i] = best[static_cast<size_t>(i)].key;
        ids.mutable_data()[i] = best[static_cast<size_t>(i)].id;
        pos.mutable_data()[i] = best[static_cast<size_t>(i)].pos;
    }
    return py::make_tuple(keys, ids, pos);
}

const float* points_of(const F32Array& x) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D");
    return x.data();
}

// A 2-D float16/float32/float64 array (or int16/uint16 holding bfloat16 bits when bf16 is set).
Matrix matrix_view(const py::array& a, bool bf16) {
    if (a.ndim() != 2) throw std::invalid_argument("logits must be 2-D");
    Matrix m;
    m.data = static_cast<const char*>(a.data());
    m.rows = a.shape(0);
    m.cols = a.shape(1);
    m.row_stride = a.strides(0);
    m.col_stride = a.strides(1);
    const char kind = a.dtype().kind();
    const auto size = a.itemsize();
    if (bf16 && (kind == 'i' || kind == 'u') && size == 2)
        m.dtype = DType::bf16;
    else if (!bf16 && kind == 'f' && size == 2)
        m.dtype = DType::f16;
    else if (!bf16 && kind == 'f' && size == 4)
        m.dtype = DType::f32;
    else if (!bf16 && kind == 'f' && size == 8)
        m.dtype = DType::f64;
    else
        throw py::type_error("logits must be float16, bfloat16, float32 or float64");
    return m;
}

// The head argument of a kernel: None (no weight), a C x C float64 table, or a PairNorms. `hold`
// keeps a converted table alive for the call.
HeadNorms head_of(const py::object& inv, int64_t classes, F64Array& hold) {
    if (inv.is_none()) return {};
    if (py::isinstance<PairNorms>(inv)) {
        const PairNorms& pairs = inv.cast<const PairNorms&>();
        if (pairs.classes() != classes)
            throw std::invalid_argument("the head has " + std::to_string(pairs.classes()) + " classes but the logits have " +
                                        std::to_string(classes));
        return {nullptr, &pairs};
    }
    hold = inv.cast<F64Array>();
    if (hold.ndim() != 2 || hold.shape(0) != classes || hold.shape(1) != classes)
        throw std::invalid_argument("inverse norms must be C x C");
    return {hold.data(), nullptr};
}

const uint8_t* mask_of(const std::optional<U8Array>& mask, int64_t rows) {
    if (!mask) return nullptr;
    if (mask->ndim() != 1 || mask->shape(0) != rows) throw std::invalid_argument("exclude mask has the wrong length");
    return mask->data();
}

// A C-contiguous 2-D float32/float64 embedding matrix: true for float64.
bool embedding_is_f64(const py::array& z, int64_t rows) {
    if (z.ndim() != 2) throw std::invalid_argument("embeddings must be 2-D");
    if (z.shape(0) != rows) throw std::invalid_argument("embeddings must have one row per pool row");
    if (!(z.flags() & py::array::c_style)) throw std::invalid_argument("embeddings must be C-contiguous");
    const char kind = z.dtype().kind();
    if (kind == 'f' && z.itemsize() == 4) return false;
    if (kind == 'f' && z.itemsize() == 8) return true;
    throw py::type_error("embeddings must be float32 or float64");
}

py::array_t<int64_t> to_numpy(std::vector<int64_t>&& v) {
    auto* heap = new std::vector<int64_t>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
    return py::array_t<int64_t>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

template <class T>
py::array_t<T> to_numpy_copy(const std::vector<T>& v) {
    py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

py::dict snapshot_dict(const BalancedSnapshot& s) {
    py::dict d;
    d["num_classes"] = s.num_classes;
    d["budget"] = s.budget;
    d["extra"] = s.extra;
    d["pass_memory"] = s.pass_memory;
    d["pass"] = s.pass;
    d["start_class"] = s.start_class;
    d["available"] = s.available;
    d["fed"] = s.fed;
    d["done"] = s.done;
    d["capacity"] = to_numpy_copy(s.capacity);
    d["taken"] = to_numpy_copy(s.taken);
    d["picks"] = to_numpy_copy(s.picks);
    d["counts"] = to_numpy_copy(s.counts);
    d["keys"] = to_numpy_copy(s.keys);
    d["rows"] = to_numpy_copy(s.rows);
    return d;
}

template <class T>
std::vector<T> vector_of(const py::dict& d, const char* key) {
    auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(d[key]);
    if (!a || a.ndim() != 1) throw std::invalid_argument(std::string("state entry '") + key + "' must be a 1-D array");
    return std::vector<T>(a.data(), a.data() + a.shape(0));
}

BalancedSnapshot snapshot_from(const py::dict& d) {
    BalancedSnapshot s;
    s.num_classes = d["num_classes"].cast<int64_t>();
    s.budget = d["budget"].cast<int64_t>();
    s.extra = d["extra"].cast<int64_t>();
    // States saved before pass_memory existed had no guaranteed classes in later passes.
    s.pass_memory = d.contains("pass_memory") ? d["pass_memory"].cast<int64_t>() : 0;
    s.pass = d["pass"].cast<int64_t>();
    s.start_class = d["start_class"].cast<int64_t>();
    s.available = d["available"].cast<int64_t>();
    s.fed = d["fed"].cast<int64_t>();
    s.done = d["done"].cast<bool>();
    s.capacity = vector_of<int64_t>(d, "capacity");
    s.taken = vector_of<int64_t>(d, "taken");
    s.picks = vector_of<int64_t>(d, "picks");
    s.counts = vector_of<int64_t>(d, "counts");
    s.keys = vector_of<double>(d, "keys");
    s.rows = vector_of<int64_t>(d, "rows");
    return s;
}

}  // namespace

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

    m.def(
        "uncertainty_scores",
        [](const py::array& logits, bool bf16, Uncertainty kind, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            py::array_t<double> out(static_cast<py::ssize_t>(x.rows));
            double* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                uncertainty_scores(x, kind, o, num_threads);
            }
            return out;
        },
        py::arg("logits"), py::arg("bf16"), py::arg("kind"), py::arg("num_threads") = 0);

    m.def(
        "multilabel_scores",
        [](const py::array& logits, bool bf16, Uncertainty kind, Reduction reduction, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            py::array_t<double> out(static_cast<py::ssize_t>(x.rows));
            double* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                multilabel_scores(x, kind, reduction, o, num_threads);
            }
            return out;
        },
        py::arg("logits"), py::arg("bf16"), py::arg("kind"), py::arg("reduction"), py::arg("num_threads") = 0);

    m.def(
        "inverse_norms",
        [](const F64Array& weight, int num_threads) {
            if (weight.ndim() != 2) throw std::invalid_argument("weight must be 2-D");
            const int64_t C = weight.shape(0), D = weight.shape(1);
            py::array_t<double> out({static_cast<py::ssize_t>(C), static_cast<py::ssize_t>(C)});
            double* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                inverse_norms(weight.data(), C, D, o, num_threads);
            }
            return out;
        },
        py::arg("weight"), py::arg("num_threads") = 0);

    m.def(
        "boundary_scores",
        [](const py::array& logits, bool bf16, const py::object& inv, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            F64Array hold;
            const HeadNorms in = head_of(inv, x.cols, hold);
            py::array_t<double> out(static_cast<py::ssize_t>(x.rows));
            double* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                boundary_scores(x, in, o, num_threads);
            }
            return out;
        },
        py::arg("logits"), py::arg("bf16"), py::arg("inv_norm"), py::arg("num_threads") = 0);

    m.def(
        "select_topk",
        [](const F64Array& scores, int64_t k, const std::optional<U8Array>& exclude, bool largest, int num_threads) {
            if (scores.ndim() != 1) throw std::invalid_argument("scores must be 1-D");
            const int64_t n = scores.shape(0);
            const uint8_t* ex = mask_of(exclude, n);
            std::vector<int64_t> idx;
            {
                py::gil_scoped_release nogil;
                idx = select_topk(scores.data(), n, k, ex, largest, num_threads);
            }
            return to_numpy(std::move(idx));
        },
        py::arg("scores"), py::arg("k"), py::arg("exclude"), py::arg("largest"), py::arg("num_threads") = 0);

    m.def(
        "topk_ranked",
        [](const F64Array& scores, int64_t k, const std::optional<U8Array>& exclude, bool largest,
           const std::optional<I64Array>& ids, int64_t offset, int num_threads) {
            if (scores.ndim() != 1) throw std::invalid_argument("scores must be 1-D");
            const int64_t n = scores.shape(0);
            const uint8_t* ex = mask_of(exclude, n);
            const int64_t* id = nullptr;
            if (ids) {
                if (ids->ndim() != 1 || ids->shape(0) != n) throw std::invalid_argument("ids must match the scores");
                id = ids->data();
            }
            std::vector<Ranked> best;
            {
                py::gil_scoped_release nogil;
                best = topk_ranked(scores.data(), n, k, ex, largest, id, offset, num_threads);
            }
            return ranked_arrays(best);
        },
        py::arg("scores"), py::arg("k"), py::arg("exclude"), py::arg("largest"), py::arg("ids"), py::arg("offset"),
        py::arg("num_threads") = 0);

    m.def(
        "merge_ranked",
        [](const F64Array& keys, const I64Array& ids, int64_t k) {
            if (keys.ndim() != 1 || ids.ndim() != 1 || keys.shape(0) != ids.shape(0))
                throw std::invalid_argument("keys and ids must be 1-D of one length");
            std::vector<Ranked> best;
            {
                py::gil_scoped_release nogil;
                best = merge_ranked(keys.data(), ids.data(), keys.shape(0), k);
            }
            return ranked_arrays(best);
        },
        py::arg("keys"), py::arg("ids"), py::arg("k"));

    m.def(
        "select_balanced",
        [](const py::array& logits, bool bf16, int64_t budget, const std::optional<U8Array>& exclude,
           const py::object& inv, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            const uint8_t* ex = mask_of(exclude, x.rows);
            F64Array hold;
            const HeadNorms in = head_of(inv, x.cols, hold);
            std::vector<int64_t> idx;
            {
                py::gil_scoped_release nogil;
                idx = select_balanced(x, budget, ex, in, num_threads);
            }
            return to_numpy(std::move(idx));
        },
        py::arg("logits"), py::arg("bf16"), py::arg("budget"), py::arg("exclude"), py::arg("inv_norm"),
        py::arg("num_threads") = 0);

    m.def(
        "hac_average_exact",
        [](const F32Array& x, int metric, double threshold, int64_t n_clusters, int num_threads) {
            const float* p = points_of(x);
            if (metric < 0 || metric > 2) throw std::invalid_argument("unknown metric");
            const int64_t n = x.shape(0), d = x.shape(1);
            std::vector<double> z;
            {
                py::gil_scoped_release nogil;
                z = hac_average_exact(p, n, d, static_cast<HacMetric>(metric), num_threads);
            }
            return linkage_and_labels(std::move(z), n, threshold, n_clusters);
        },
        py::arg("x"), py::arg("metric"), py::arg("threshold"), py::arg("n_clusters"), py::arg("num_threads") = 0);

    m.def(
        "hac_average_graph",
        [](int64_t n, const I64Array& u, const I64Array& v, const F32Array& s, double threshold, int64_t n_clusters,
           int num_threads, bool wide_ids) {
            if (u.ndim() != 1 || v.ndim() != 1 || s.ndim() != 1 || u.shape(0) != v.shape(0) ||
                u.shape(0) != s.shape(0))
                throw std::invalid_argument("edge arrays must be 1-D of one length");
            std::vector<double> z;
            {
                py::gil_scoped_release nogil;
                z = hac_average_graph(n, u.data(), v.data(), s.data(), u.shape(0), num_threads, wide_ids);
            }
            return linkage_and_labels(std::move(z), n, threshold, n_clusters);
        },
        py::arg("n"), py::arg("u"), py::arg("v"), py::arg("s"), py::arg("threshold"), py::arg("n_clusters"),
        py::arg("num_threads") = 0, py::arg("wide_ids") = false);

    // The (N, k) kNN form read in place: int64 or int32 neighbours (no copy), float32 similarities.
    auto knn_graph_hac = [](const auto& idx, const F32Array& sim, double threshold, int64_t n_clusters,
                            int num_threads, bool wide_ids) {
        if (idx.ndim() != 2 || sim.ndim() != 2 || idx.shape(0) != sim.shape(0) || idx.shape(1) != sim.shape(1))
            throw std::invalid_argument("indices and similarities must both be (N, k)");
        const int64_t n = idx.shape(0), k = idx.shape(1);
        std::vector<double> z;
        {
            py::gil_scoped_release nogil;
            z = hac_average_knn_graph(n, k, idx.data(), sim.data(), num_threads, wide_ids);
        }
        return linkage_and_labels(std::move(z), n, threshold, n_clusters);
    };
    // int64 registered first: another integer dtype converts to it; int32 is read as it is.
    m.def(
        "hac_average_knn_graph",
        [=](const I64Array& idx, const F32Array& sim, double threshold, int64_t n_clusters, int num_threads,
            bool wide_ids) { return knn_graph_hac(idx, sim, threshold, n_clusters, num_threads, wide_ids); },
        py::arg("idx"), py::arg("sim"), py::arg("threshold"), py::arg("n_clusters"), py::arg("num_threads") = 0,
        py::arg("wide_ids") = false);
    m.def(
        "hac_average_knn_graph",
        [=](const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& idx, const F32Array& sim,
            double threshold, int64_t n_clusters, int num_threads, bool wide_ids) {
            return knn_graph_hac(idx, sim, threshold, n_clusters, num_threads, wide_ids);
        },
        py::arg("idx"), py::arg("sim"), py::arg("threshold"), py::arg("n_clusters"), py::arg("num_threads") = 0,
        py::arg("wide_ids") = false);

    m.def(
        "knn_exact",
        [](const F32Array& x, int64_t k, int num_threads) {
            const float* p = points_of(x);
            const int64_t n = x.shape(0), d = x.shape(1);
            if (k < 1 || k >= n) throw std::invalid_argument("knn needs 1 <= k < n");
            py::array_t<int64_t> idx({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            py::array_t<float> sim({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            int64_t* pi = idx.mutable_data();
            float* ps = sim.mutable_data();
            {
                py::gil_scoped_release nogil;
                knn_exact(p, n, d, k, pi, ps, num_threads);
            }
            return py::make_tuple(idx, sim);
        },
        py::arg("x"), py::arg("k"), py::arg("num_threads") = 0);

    m.def(
        "cluster_round_robin",
        [](const I64Array& rows, const I64Array& labels, int64_t budget, uint64_t seed) {
            if (rows.ndim() != 1 || labels.ndim() != 1 || rows.shape(0) != labels.shape(0))
                throw std::invalid_argument("rows and labels must be 1-D of one length");
            std::vector<int64_t> out;
            {
                py::gil_scoped_release nogil;
                out = cluster_round_robin(rows.data(), labels.data(), rows.shape(0), budget, seed);
            }
            return to_numpy(std::move(out));
        },
        py::arg("rows"), py::arg("labels"), py::arg("budget"), py::arg("seed"));

    m.def(
        "select_coreset",
        [](const py::array& x, const I64Array& centers, const std::optional<U8Array>& exclude, int64_t budget,
           int num_threads) {
            if (x.ndim() != 2) throw std::invalid_argument("embeddings must be 2-D");
            const int64_t n = x.shape(0), d = x.shape(1);
            const bool f64 = embedding_is_f64(x, n);
            if (centers.ndim() != 1) throw std::invalid_argument("centers must be 1-D");
            const int64_t nc = centers.shape(0);
            const int64_t* cs = centers.data();
            for (int64_t k = 0; k < nc; ++k)
                if (cs[k] < 0 || cs[k] >= n) throw std::invalid_argument("center row out of range");
            const uint8_t* ex = mask_of(exclude, n);
            std::vector<int64_t> idx;
            {
                py::gil_scoped_release nogil;
                idx = f64 ? select_coreset(static_cast<const double*>(x.data()), n, d, cs, nc, ex, budget, num_threads)
                          : select_coreset(static_cast<const float*>(x.data()), n, d, cs, nc, ex, budget, num_threads);
            }
            return to_numpy(std::move(idx));
        },
        py::arg("embeddings"), py::arg("centers"), py::arg("exclude"), py::arg("budget"), py::arg("num_threads") = 0);

    m.def(
        "select_badge",
        [](const py::array& logits, bool bf16, const py::array& z, const std::optional<U8Array>& exclude,
           int64_t budget, const F64Array& uniforms, int num_threads) {
            const Matrix x = matrix_view(logits, bf16);
            const bool f64 = embedding_is_f64(z, x.rows);
            const int64_t d = z.shape(1);
            const uint8_t* ex = mask_of(exclude, x.rows);
            if (uniforms.ndim() != 1 || uniforms.shape(0) < budget)
                throw std::invalid_argument("uniforms must hold one value per pick");
            const double* u = uniforms.data();
            std::vector<int64_t> idx;
            {
                py::gil_scoped_release nogil;
                idx = f64 ? select_badge(x, static_cast<const double*>(z.data()), d, ex, budget, u, num_threads)
                          : select_badge(x, static_cast<const float*>(z.data()), d, ex, budget, u, num_threads);
            }
            return to_numpy(std::move(idx));
        },
        py::arg("logits"), py::arg("bf16"), py::arg("embeddings"), py::arg("exclude"), py::arg("budget"),
        py::arg("uniforms"), py::arg("num_threads") = 0);

    py::class_<PairNorms>(m, "PairNorms")
        .def(py::init([](const F64Array& weight, int num_threads) {
                 if (weight.ndim() != 2) throw std::invalid_argument("weight must be 2-D");
                 py::gil_scoped_release nogil;
                 return PairNorms(weight.data(), weight.shape(0), weight.shape(1), num_threads);
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

    py::class_<BalancedState>(m, "BalancedState")
        .def(py::init<int64_t, int64_t, int64_t, int64_t>(), py::arg("num_classes"), py::arg("budget"),
             py::arg("extra"), py::arg("pass_memory") = BalancedState::kPassMemory)
        .def(
            "update",
            [](BalancedState& s, const py::array& logits, bool bf16, int64_t row_offset,
               const std::optional<I64Array>& row_ids, const std::optional<U8Array>& exclude,
               const py::object& inv, int num_threads) {
                const Matrix x = matrix_view(logits, bf16);
                RowIds ids{row_offset, nullptr};
                if (row_ids) {
                    if (row_ids->ndim() != 1 || row_ids->shape(0) != x.rows)
                        throw std::invalid_argument("row_ids must have one entry per logits row");
                    ids.ids = row_ids->data();
                }
                const uint8_t* ex = mask_of(exclude, x.rows);
                F64Array hold;
                const HeadNorms in = head_of(inv, x.cols, hold);
                py::gil_scoped_release nogil;
                s.update(x, ids, ex, in, num_threads);
            },
            py::arg("logits"), py::arg("bf16"), py::arg("row_offset"), py::arg("row_ids"), py::arg("exclude"),
            py::arg("inv_norm"), py::arg("num_threads") = 0)
        .def("merge", &BalancedState::merge, py::arg("other"))
        .def("advance", &BalancedState::advance)
        .def_property_readonly("done", &BalancedState::done)
        .def_property_readonly("pass_index", &BalancedState::pass)
        .def_property_readonly("start_class", &BalancedState::start_class)
        .def("passes_bound", &BalancedState::passes_bound)
        .def_property_readonly("num_classes", &BalancedState::num_classes)
        .def("result", [](const BalancedState& s) { return to_numpy_copy(s.result()); })
        .def("snapshot", [](const BalancedState& s) { return snapshot_dict(s.snapshot()); })
        .def_static("from_snapshot", [](const py::dict& d) { return BalancedState(snapshot_from(d)); });

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
            {
                py::gil_scoped_release nogil;
                count = max_coverage(n, ip, mp, cov.mutable_data(), candidate.data(), static_cast<int64_t>(picks.size()),
                                     picks.data(), num_threads);
            }
            picks.resize(static_cast<size_t>(count));
            return py::make_tuple(to_numpy(std::move(picks)), cov);
        },
        py::arg("indptr"), py::arg("members"), py::arg("covered"), py::arg("candidate"), py::arg("budget"),
        py::arg("num_threads") = 0);
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
                py::gil_scoped_release nogil;
                s.add(x, probabilities, num_threads);
            },
            py::arg("sample"), py::arg("bf16"), py::arg("probabilities"), py::arg("num_threads") = 0)
        .def(
            "scores",
            [](const McState& s, McScore kind, int num_threads) {
                py::array_t<double> out(static_cast<py::ssize_t>(s.rows()));
                double* o = out.mutable_data();
                {
                    py::gil_scoped_release nogil;
                    s.scores(kind, o, num_threads);
                }
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
            {
                py::gil_scoped_release nogil;
                mc_scores(views, probabilities, f64, kind, o, num_threads);
            }
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
            {
                py::gil_scoped_release nogil;
                joint_entropy(configs.data(), weight.data(), configs.shape(0), configs.shape(1), probs.data(), n,
                              probs.shape(2), o, num_threads);
            }
            return out;
        },
        py::arg("configs"), py::arg("weight"), py::arg("probs"), py::arg("num_threads") = 0);

    m.def(
        "knn_cells",
        [](const F32Array& x, int64_t k, const I64Array& cell_start, const I64Array& cell_rows,
           const I64Array& probe_start, const I64Array& probes, int num_threads) {
            const float* p = points_of(x);
            const int64_t n = x.shape(0), d = x.shape(1);
            const int64_t cells = cell_start.ndim() == 1 ? cell_start.shape(0) - 1 : -1;
            if (cells < 1 || cell_rows.ndim() != 1 || cell_rows.shape(0) != n || probe_start.ndim() != 1 ||
                probe_start.shape(0) != cells + 1 || probes.ndim() != 1 || probe_start.data()[0] != 0 ||
                probe_start.data()[cells] != probes.shape(0))
                throw std::invalid_argument("knn_cells needs CSR cells (cells + 1 offsets, n rows) and probes");
            if (k < 1) throw std::invalid_argument("knn needs k >= 1");
            py::array_t<int64_t> idx({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            py::array_t<float> sim({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
            int64_t* pi = idx.mutable_data();
            float* ps = sim.mutable_data();
            {
                py::gil_scoped_release nogil;
                knn_cells(p, n, d, k, cell_start.data(), cell_rows.data(), cells, probe_start.data(), probes.data(),
                          pi, ps, num_threads);
            }
            return py::make_tuple(idx, sim);
        },
        py::arg("x"), py::arg("k"), py::arg("cell_start"), py::arg("cell_rows"), py::arg("probe_start"),
        py::arg("probes"), py::arg("num_threads") = 0);
    m.def(
        "knn_candidate_bound",
        [](int64_t d, const std::string& precision) {
            if (d < 1 || d > kKnnBoundMaxDims)
                throw std::invalid_argument("d must be in [1, " + std::to_string(kKnnBoundMaxDims) + "], got " +
                                            std::to_string(d));
            if (precision != "bf16" && precision != "tf32")
                throw std::invalid_argument("precision must be 'bf16' or 'tf32', got '" + precision + "'");
            return knn_candidate_bound(d, precision == "bf16" ? KnnPrecision::bf16 : KnnPrecision::tf32);
        },
        py::arg("d"), py::arg("precision"),
        "eps (a float32 value) with |s^ - s| <= eps for unit float32 rows of d dimensions: s the CPU kNN "
        "kernel's similarity, s^ the tensor-core GEMM's with operands rounded to precision (csrc/knn_bound.hpp).");
    m.def(
        "knn_row_bound",
        [](double rho, double rho_max, int64_t d, const std::string& precision) {
            if (d < 1 || d > kKnnBoundMaxDims)
                throw std::invalid_argument("d must be in [1, " + std::to_string(kKnnBoundMaxDims) + "], got " +
                                            std::to_string(d));
            if (precision != "bf16" && precision != "tf32")
                throw std::invalid_argument("precision must be 'bf16' or 'tf32', got '" + precision + "'");
            if (!(rho >= 0 && rho_max >= rho && rho_max < 1))
                throw std::invalid_argument("need 0 <= rho <= rho_max < 1 (float32 values)");
            if (static_cast<double>(static_cast<float>(rho)) != rho ||
                static_cast<double>(static_cast<float>(rho_max)) != rho_max)
                throw std::invalid_argument("rho and rho_max must be float32 values");
            return knn_row_bound(static_cast<float>(rho), static_cast<float>(rho_max), d,
                                 precision == "bf16" ? KnnPrecision::bf16 : KnnPrecision::tf32);
        },
        py::arg("rho"), py::arg("rho_max"), py::arg("d"), py::arg("precision"),
        "The per-row bound E (csrc/knn_bound.hpp knn_row_bound) for a row whose rounding error has norm <= rho, "
        "rho_max bounding every row's.");
    m.def(
        "knn_rounding_norm", [](double ss, int64_t d) { return knn_rounding_norm(ss, d); }, py::arg("ss"), py::arg("d"),
        "rho >= ||r(a) - a|| from the float64 sum ss of the d squared rounding differences (rounded up to a float32).");
}
