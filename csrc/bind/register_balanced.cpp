// alscale._core: BASE in one call and its streaming state.
#include "balanced.hpp"
#include "bind/arrays.hpp"

namespace alscale::bind {

namespace {

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

// select_balanced over a numpy matrix, without the GIL.
std::vector<int64_t> one_shot(const py::array& logits, bool bf16, int64_t budget, const std::optional<U8Array>& exclude,
                              const py::object& inv, int num_threads, int64_t sample_stride, SampledPass* info) {
    const Matrix x = matrix_view(logits, bf16);
    const uint8_t* ex = mask_of(exclude, x.rows);
    F64Array hold;
    const HeadNorms in = head_of(inv, x.cols, hold);
    return nogil([&] { return select_balanced(x, budget, ex, in, num_threads, sample_stride, info); });
}

}  // namespace

void register_balanced(py::module_& m) {
    m.attr("SAMPLE_STRIDE") = kSampleStride;
    m.def(
        "select_balanced",
        [](const py::array& logits, bool bf16, int64_t budget, const std::optional<U8Array>& exclude,
           const py::object& inv, int num_threads, int64_t sample_stride) {
            return to_numpy(one_shot(logits, bf16, budget, exclude, inv, num_threads, sample_stride, nullptr));
        },
        py::arg("logits"), py::arg("bf16"), py::arg("budget"), py::arg("exclude"), py::arg("inv_norm"),
        py::arg("num_threads") = 0, py::arg("sample_stride") = kSampleStride);
    m.def(
        "select_balanced_sampled_pass",
        [](const py::array& logits, bool bf16, int64_t budget, const std::optional<U8Array>& exclude,
           const py::object& inv, int num_threads, int64_t sample_stride) {
            SampledPass info;
            auto idx = one_shot(logits, bf16, budget, exclude, inv, num_threads, sample_stride, &info);
            return py::make_tuple(to_numpy(std::move(idx)), info.sampled, info.held);
        },
        "select_balanced, and whether its first pass sampled ceilings and whether they held (tests)",
        py::arg("logits"), py::arg("bf16"), py::arg("budget"), py::arg("exclude"), py::arg("inv_norm"),
        py::arg("num_threads"), py::arg("sample_stride"));

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
                nogil([&] { s.update(x, ids, ex, in, num_threads); });
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
}

}  // namespace alscale::bind
