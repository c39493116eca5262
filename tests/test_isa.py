"""The AVX2 and baseline kernels must give bit-identical scores, trees and selections."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import sys
import numpy as np
import alscale

rng = np.random.default_rng(5)
out = {}
for c in (1, 3, 8, 13, 100):
    for dt in (np.float16, np.float32, np.float64):
        x = (rng.normal(size=(300, c)) * 4).astype(dt)
        x[::7] = np.round(x[::7])  # some ties
        w = rng.normal(size=(c, 5))
        key = f"{c}-{np.dtype(dt).name}"
        out[key + "-margin"] = alscale.margin_scores(x)
        out[key + "-entropy"] = alscale.entropy_scores(x)
        out[key + "-confidence"] = alscale.confidence_scores(x)
        out[key + "-boundary"] = alscale.boundary_scores(x, weight=w)
        out[key + "-base"] = alscale.select_balanced(x, 40, weight=w)
pts = rng.normal(size=(300, 20)).astype(np.float32)
pts[::9] = np.round(pts[::9])
for metric in ("euclidean", "cosine"):
    out[f"hac-{metric}"] = alscale.hac_average(pts, n_clusters=12, metric=metric).linkage
out["hac-graph"] = alscale.hac_average(pts, n_clusters=12, neighbors=8).linkage
idx, sim = alscale.knn_graph(pts, 7)
out["knn-idx"], out["knn-sim"] = idx, sim
logits = rng.normal(size=(300, 6)).astype(np.float32)
labeled = np.zeros(300, dtype=bool)
labeled[:20] = True
out["coreset"] = alscale.select_coreset(pts, 25, labeled=labeled)
out["badge"] = alscale.select_badge(logits, pts, 25, exclude=labeled, seed=3)
out["cluster-margin"] = alscale.select_cluster_margin(logits, idx[:, 0] % 17, 30, seed=5)
np.savez(sys.argv[1], **out)
"""


def _run(path, isa, script=SCRIPT):
    env = dict(os.environ)
    env.pop("ALSCALE_ISA", None)
    if isa:
        env["ALSCALE_ISA"] = isa
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_baseline_and_dispatched_kernels_are_bit_identical(tmp_path):
    default = _run(tmp_path / "default.npz", None)
    base = _run(tmp_path / "base.npz", "base")
    assert default.keys() == base.keys() and len(default) == 75 + 8
    for key in default:
        assert default[key].dtype == base[key].dtype, key
        # equal as bits: NaN-free, and +inf compares equal to +inf
        assert np.array_equal(default[key], base[key]), key


@pytest.mark.parametrize("n", [0, 1, 7])
def test_isa_env_var_is_read_once_per_process(n):
    # A sanity check that the switch exists: the module imports with it set.
    env = dict(os.environ, ALSCALE_ISA="base")
    code = f"import numpy as np, alscale; print(alscale.select_margin(np.eye(8), {n}).tolist())"
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == str(list(range(n)))


BAYES_SCRIPT = r"""
import sys
import numpy as np
import alscale

rng = np.random.default_rng(8)
out = {}
for t in (1, 2, 5):
    for c in (1, 7, 16, 17, 65, 300):
        for dt in (np.float16, np.float32, np.float64):
            x = (rng.normal(size=(t, 90, c)) * 3).astype(dt)
            x[:, ::6] = np.round(x[:, ::6])  # ties
            for kind in ("bald", "margin", "confidence", "entropy"):
                f = alscale.bald_scores if kind == "bald" else getattr(alscale, f"mc_{kind}_scores")
                out[f"{t}-{c}-{np.dtype(dt).name}-{kind}"] = f(x)
                out[f"{t}-{c}-{np.dtype(dt).name}-{kind}-iterable"] = f(list(x))
np.savez(sys.argv[1], **out)
"""


def _same_bits_on_every_isa(tmp_path, script, count):
    """Runs `script` with the dispatched kernels (AVX-512 where the CPU has it), AVX2 and the
    baseline, and checks that its `count` arrays are the same bytes in all three."""
    runs = {isa: _run(tmp_path / f"{isa}.npz", isa, script) for isa in (None, "avx2", "base")}
    assert len(runs[None]) == count
    for isa in ("avx2", "base"):
        assert runs[isa].keys() == runs[None].keys()
        for key, value in runs[None].items():
            assert value.tobytes() == runs[isa][key].tobytes(), (isa, key)


def test_bayes_kernels_are_bit_identical_on_every_instruction_set(tmp_path):
    """BALD and the MC scores (csrc/bayes.cpp: 16-float / 8-double blocks in lanes of their own)
    give the same bits with AVX-512 (where the CPU has it), AVX2 and the baseline."""
    _same_bits_on_every_isa(tmp_path, BAYES_SCRIPT, 3 * 6 * 3 * 4 * 2)


SCORING_SCRIPT = r"""
import sys
import numpy as np
import alscale

rng = np.random.default_rng(9)
out = {}
for c in (2, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 1000):
    for dt in (np.float16, np.float32, np.float64):
        x = (rng.normal(size=(200, c)) * 4).astype(dt)
        x[::5] = np.round(x[::5])  # ties
        x[1::7] = 0.0
        x[1::7, -1] = -0.0
        x[2::9, ::2] = -np.finfo(dt).max  # gaps below -1e30 (float32, float64), clamped
        for kind in ("margin", "confidence", "entropy"):
            out[f"{c}-{np.dtype(dt).name}-{kind}"] = getattr(alscale, f"{kind}_scores")(x)
        out[f"{c}-{np.dtype(dt).name}-boundary"] = alscale.boundary_scores(x)
        out[f"{c}-{np.dtype(dt).name}-boundary-w"] = alscale.boundary_scores(x, weight=rng.normal(size=(c, 6)))
np.savez(sys.argv[1], **out)
"""


def test_uncertainty_scores_are_bit_identical_on_every_instruction_set(tmp_path):
    """The softmax pass on AVX-512 (two 8-lane blocks per vector, each half added to the lane sums
    in order) and the boundary pass (8 float64 lanes per vector) give AVX2's and the baseline's
    bits, at C around their 16-value steps."""
    _same_bits_on_every_isa(tmp_path, SCORING_SCRIPT, 12 * 3 * 5)
