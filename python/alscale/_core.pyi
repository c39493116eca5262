"""Type stubs for the compiled module alscale._core (private: use the alscale package)."""

from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str
openmp: bool

def max_threads() -> int: ...
def default_extra(num_classes: int, budget: int) -> int: ...
def uncertainty_scores(logits: npt.NDArray[Any], bf16: bool, kind: int, num_threads: int = 0) -> npt.NDArray[np.float64]: ...
def multilabel_scores(
    logits: npt.NDArray[Any], bf16: bool, kind: int, reduction: int, num_threads: int = 0
) -> npt.NDArray[np.float64]: ...
def boundary_scores(
    logits: npt.NDArray[Any], bf16: bool, inv_norm: npt.NDArray[np.float64] | PairNorms | None, num_threads: int = 0
) -> npt.NDArray[np.float64]: ...
def select_topk(
    scores: npt.NDArray[np.float64], k: int, exclude: npt.NDArray[np.uint8] | None, largest: bool, num_threads: int = 0
) -> npt.NDArray[np.int64]: ...
def select_balanced(
    logits: npt.NDArray[Any],
    bf16: bool,
    budget: int,
    exclude: npt.NDArray[np.uint8] | None,
    inv_norm: npt.NDArray[np.float64] | PairNorms | None,
    num_threads: int = 0,
) -> npt.NDArray[np.int64]: ...
def hac_average_exact(
    x: npt.NDArray[np.float32], metric: int, threshold: float, n_clusters: int, num_threads: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def hac_average_graph(
    n: int,
    u: npt.NDArray[np.int64],
    v: npt.NDArray[np.int64],
    s: npt.NDArray[np.float32],
    threshold: float,
    n_clusters: int,
    num_threads: int = 0,
    wide_ids: bool = False,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def hac_average_knn_graph(
    idx: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    sim: npt.NDArray[np.float32],
    threshold: float,
    n_clusters: int,
    num_threads: int = 0,
    wide_ids: bool = False,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def knn_exact(
    x: npt.NDArray[np.float32], k: int, num_threads: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def cluster_round_robin(
    rows: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], budget: int, seed: int
) -> npt.NDArray[np.int64]: ...
def topk_ranked(
    scores: npt.NDArray[np.float64],
    k: int,
    exclude: npt.NDArray[np.uint8] | None,
    largest: bool,
    ids: npt.NDArray[np.int64] | None,
    offset: int,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def merge_ranked(
    keys: npt.NDArray[np.float64], ids: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...

def select_coreset(
    embeddings: npt.NDArray[Any],
    centers: npt.NDArray[np.int64],
    exclude: npt.NDArray[np.uint8] | None,
    budget: int,
    num_threads: int = 0,
) -> npt.NDArray[np.int64]: ...
def select_badge(
    logits: npt.NDArray[Any],
    bf16: bool,
    embeddings: npt.NDArray[Any],
    exclude: npt.NDArray[np.uint8] | None,
    budget: int,
    uniforms: npt.NDArray[np.float64],
    num_threads: int = 0,
) -> npt.NDArray[np.int64]: ...

class PairNorms:
    def __init__(self, weight: npt.NDArray[np.float64], num_threads: int = 0) -> None: ...
    @property
    def classes(self) -> int: ...
    @property
    def weight(self) -> npt.NDArray[np.float64]: ...
    def exact(self, p: int, c: int) -> float: ...
    def lower_row(self, p: int) -> npt.NDArray[np.float64]: ...

class BalancedState:
    def __init__(self, num_classes: int, budget: int, extra: int, pass_memory: int = ...) -> None: ...
    def update(
        self,
        logits: npt.NDArray[Any],
        bf16: bool,
        row_offset: int,
        row_ids: npt.NDArray[np.int64] | None,
        exclude: npt.NDArray[np.uint8] | None,
        inv_norm: npt.NDArray[np.float64] | PairNorms | None,
        num_threads: int = 0,
    ) -> None: ...
    def merge(self, other: BalancedState) -> None: ...
    def advance(self) -> bool: ...
    @property
    def done(self) -> bool: ...
    @property
    def pass_index(self) -> int: ...
    @property
    def start_class(self) -> int: ...
    def passes_bound(self) -> int: ...
    @property
    def num_classes(self) -> int: ...
    def result(self) -> npt.NDArray[np.int64]: ...
    def snapshot(self) -> dict[str, Any]: ...
    @staticmethod
    def from_snapshot(state: dict[str, Any]) -> BalancedState: ...
def max_coverage(
    indptr: npt.NDArray[np.int64],
    members: npt.NDArray[np.int64],
    covered: npt.NDArray[np.uint8],
    candidate: npt.NDArray[np.uint8],
    budget: int,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]: ...

class McScore:
    bald: McScore
    margin: McScore
    confidence: McScore
    entropy: McScore
    expected_entropy: McScore

class McState:
    def __init__(self, rows: int, classes: int, f64: bool) -> None: ...
    def add(self, sample: npt.NDArray[Any], bf16: bool, probabilities: bool, num_threads: int = 0) -> None: ...
    def scores(self, kind: McScore, num_threads: int = 0) -> npt.NDArray[np.float64]: ...
    @property
    def rows(self) -> int: ...
    @property
    def classes(self) -> int: ...
    @property
    def samples(self) -> int: ...
    @property
    def f64(self) -> bool: ...

def mc_scores(
    samples: list[npt.NDArray[Any]], bf16: bool, probabilities: bool, f64: bool, kind: McScore, num_threads: int = 0
) -> npt.NDArray[np.float64]: ...
def joint_entropy(
    configs: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    probs: npt.NDArray[np.float64],
    num_threads: int = 0,
) -> npt.NDArray[np.float64]: ...
def knn_cells(
    x: npt.NDArray[np.float32],
    k: int,
    cell_start: npt.NDArray[np.int64],
    cell_rows: npt.NDArray[np.int64],
    probe_start: npt.NDArray[np.int64],
    probes: npt.NDArray[np.int64],
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def knn_candidate_bound(d: int, precision: str) -> float: ...
def knn_row_bound(rho: float, rho_max: float, d: int, precision: str) -> float: ...
def knn_rounding_norm(ss: float, d: int) -> float: ...
