"""alscale: fast, exact batch active learning at ImageNet and Open Images scale.

The selection rules of BASE (balanced selection), MASE, margin / confidence / entropy
uncertainty sampling, Cluster-Margin (with exact and graph average-linkage HAC), random sampling
and the Coreset and BADGE baselines, on numpy arrays or torch tensors, in compiled kernels;
and the active-learning loop that compares them (`alscale run`).
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "alscale's compiled module alscale._core is missing or broken. Install the package with "
        "`pip install .` (or `pip install --no-build-isolation -ve .` for development) from the "
        f"repository root so that scikit-build-core compiles it. Original error: {err}"
    ) from err

from .selection import (
    boundary_scores,
    confidence_scores,
    entropy_scores,
    margin_scores,
    select_balanced,
    select_boundary,
    select_confidence,
    select_entropy,
    select_margin,
    select_random,
)

from .cluster_margin import select_cluster_margin
from .hac import Clustering, ComponentsWarning, hac_average, hac_average_graph
from .knn import KnnGraph, RecallWarning, knn_graph
from .diversity import select_badge, select_coreset
from .streaming import BalancedSelector
from .pool import chunked, logits_from_embeddings
from .distributed import shard_rows
from .project import ActiveLearner
from .bayesian import (MCScores, SamplesWarning, bald_scores, mc_confidence_scores, mc_entropy_scores, mc_margin_scores,
                       select_bald, select_batchbald, select_power, select_power_entropy, select_power_margin,
                       select_powerbald)

__version__ = getattr(_core, "__version__", "0.0.0")


def _gpu_visible() -> bool:
    """Whether this machine shows an NVIDIA GPU, without importing torch (only asked when the
    GPU build is missing, to decide whether that deserves a warning)."""
    import os
    import sys

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # pragma: no cover - a broken torch install
            return False
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus")) > 0
    except OSError:
        return False


from ._backend.device import CUDA_IMPORT_ERROR as _CUDA_IMPORT_ERROR, HAS_CUDA

if not HAS_CUDA and _gpu_visible():
    import warnings

    warnings.warn(
        "alscale was built without its CUDA kernels (alscale._cuda), so CUDA tensors are refused; "
        "reinstall from source on a machine with the CUDA toolkit (nvcc) to build them "
        f"({_CUDA_IMPORT_ERROR})",
        UserWarning,
        stacklevel=2,
    )

__all__ = [
    "HAS_CUDA",
    "BalancedSelector",
    "Clustering",
    "ComponentsWarning",
    "KnnGraph",
    "RecallWarning",
    "boundary_scores",
    "chunked",
    "confidence_scores",
    "entropy_scores",
    "hac_average",
    "hac_average_graph",
    "knn_graph",
    "logits_from_embeddings",
    "margin_scores",
    "select_badge",
    "select_balanced",
    "select_boundary",
    "select_cluster_margin",
    "select_confidence",
    "select_coreset",
    "select_entropy",
    "select_margin",
    "select_random",
    "shard_rows",
    "ActiveLearner",
    "MCScores", "SamplesWarning", "bald_scores", "mc_confidence_scores", "mc_entropy_scores", "mc_margin_scores",
    "select_bald",
    "select_batchbald", "select_power", "select_power_entropy", "select_power_margin", "select_powerbald",
]

from .coldstart import probcover_delta, select_probcover, select_typiclust  # noqa: E402  (cold start, issue 14)

__all__ += ["probcover_delta", "select_probcover", "select_typiclust"]
