"""The wheel: `pip wheel .` builds one whose only hard requirement is numpy, and the numpy API
works from it in a fresh venv that has numpy and nothing else (no torch, tqdm, matplotlib).

The wheel is built once per session (ALSCALE_CUDA=OFF, in a temporary build directory so that
the checkout's own build/ is left alone) with pip's default build isolation, as a user would
build it; the venv gets the wheel with --no-deps plus numpy. About 40 s of CPU on 2 cores, most
of it compiling the C++ kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import reference as ref

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900  # seconds per subprocess: a hung build or install fails the test instead of CI

# Tiny inputs and the results the exact rules give on them (worked out by hand in the comments;
# test_expected_results_follow_the_rules checks them against tests/reference.py).
# BASE with weight=None, r_c = l_p - l_c; a row predicted c scores its smallest r for class c.
LOGITS = [[3, 0, 0], [0, 2, 1], [1, 1.5, 0], [0, 0, 4], [2, 0, 1.8], [0.5, 0, 0]]
# budget 6 = 2 per class. Class 0 scores 3, 2, .5, 4, .2, .5: rows 4, then 2 (tie with 5: smaller
# row). Class 1 over rows 0, 1, 3, 5 scores 3, 1, 4, .5: rows 5, 1. Class 2 over 0, 3: 3, 4.
BALANCED_6 = [4, 2, 5, 1, 0, 3]
BALANCED_3 = [4, 2, 5]
# margin = p(1) - p(2): rows 0 and 2 tie at exactly 0 (smaller row first), then row 3, then row 1.
MARGIN_LOGITS = [[0, 0, 0], [5, 0, 0], [1, 1, 0], [2, 0, 0]]
MARGIN_3 = [0, 2, 3]
MARGIN_3_EXCLUDE_0 = [2, 3, 1]
# Euclidean UPGMA on a line: {0, 1} at 1, {5, 6.5} at 1.5, then mean(5, 6.5, 4, 5.5) = 5.25.
POINTS = [[0.0], [1.0], [5.0], [6.5]]
LINKAGE = [[0, 1, 1.0, 2], [2, 3, 1.5, 2], [4, 5, 5.25, 4]]
HAC_LABELS = [0, 0, 1, 1]

SMOKE = textwrap.dedent(
    f"""
    import importlib.metadata, sys
    import numpy as np
    import alscale

    assert alscale.__file__.startswith(sys.prefix), ("not the installed wheel", alscale.__file__)
    assert "torch" not in sys.modules, "import alscale imported torch"
    assert alscale.HAS_CUDA is False, "built with ALSCALE_CUDA=OFF, yet alscale._cuda imports"
    requires = importlib.metadata.requires("alscale")
    hard = [r for r in requires if "extra ==" not in r]
    assert [r.split(">")[0].split("=")[0].strip() for r in hard] == ["numpy"], requires

    logits = np.array({LOGITS!r})
    assert alscale.select_balanced(logits, 6).tolist() == {BALANCED_6!r}
    assert alscale.select_balanced(logits, 3).tolist() == {BALANCED_3!r}
    margin = np.array({MARGIN_LOGITS!r}, dtype=np.float32)
    assert alscale.select_margin(margin, 3).tolist() == {MARGIN_3!r}
    assert alscale.select_margin(margin, 3, exclude=[0]).tolist() == {MARGIN_3_EXCLUDE_0!r}
    clusters = alscale.hac_average(np.array({POINTS!r}), metric="euclidean", n_clusters=2)
    assert clusters.labels.tolist() == {HAC_LABELS!r}, clusters.labels
    assert clusters.linkage.tolist() == {LINKAGE!r}, clusters.linkage
    selector = alscale.BalancedSelector(3, 6)
    selector.update(logits[3:], row_offset=3)  # chunks in any order
    selector.update(logits[:3], row_offset=0)
    assert selector.advance()
    assert selector.result().tolist() == {BALANCED_6!r}
    assert "torch" not in sys.modules, "the numpy API imported torch"

    for module in ("alscale.al", "alscale.al.loop"):
        try:
            __import__(module)
        except ImportError as err:
            assert "alscale[al]" in str(err), (module, str(err))
        else:
            raise AssertionError(f"import {{module}} worked without torch")
    print("smoke ok")
    """
)


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure, fail the test with its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(kwargs.pop("env", {}))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          **kwargs)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build-dir: pyproject.toml's default (build/{wheel_tag}) is the checkout's own, which an
    # editable install may be using with another pybind11; a fresh one keeps the build clean.
    _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", out / "dist",
          f"--config-settings=build-dir={out / 'build'}"], env={"ALSCALE_CUDA": "OFF"})
    wheels = list((out / "dist").glob("alscale-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel (--no-deps) and numpy, nothing else."""
    where = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", where / "venv"])
    python = where / "venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--no-deps", wheel, "numpy"])
    return python


def test_wheel_metadata_requires_numpy_only(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    hard = [r for r in requires if "extra ==" not in r]
    assert len(hard) == 1 and hard[0].startswith("numpy"), requires
    al = {r.split(";")[0].split(">")[0].strip() for r in requires if 'extra == "al"' in r}
    assert al == {"torch", "tqdm", "matplotlib"}, requires
    assert "alscale = alscale.cli:main" in entry_points
    assert any(n.startswith("alscale/_core.") and n.endswith((".so", ".pyd")) for n in names), names
    assert not any(n.startswith("alscale/_cuda.") and not n.endswith(".pyi") for n in names), names
    assert not any("__pycache__" in n or n.startswith(("tests/", "csrc/", "cuda/")) for n in names), names


def test_wheel_numpy_api_in_a_fresh_venv(venv, tmp_path):
    # -I: no user site, no PYTHONPATH, not the current directory: only what the venv holds.
    proc = _run([venv, "-I", "-c", SMOKE], cwd=tmp_path)
    assert proc.stdout.strip() == "smoke ok"
    # no torch in the venv at all: nothing the smoke test passed could have come from it
    check = subprocess.run([venv, "-I", "-c", "import torch"], capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode != 0


def test_wheel_cli_without_the_al_extra_says_what_to_install(venv, tmp_path):
    proc = subprocess.run([venv.parent / "alscale", "run", "--list"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=TIMEOUT)
    assert proc.returncode != 0
    assert "alscale[al]" in proc.stderr, proc.stderr


def test_import_alscale_imports_no_torch_even_when_installed():
    pytest.importorskip("torch")
    code = "import sys, alscale; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", timeout=TIMEOUT).returncode == 0


def test_expected_results_follow_the_rules():
    """The smoke test's constants are the numpy references' results, not just hand arithmetic."""
    logits = np.array(LOGITS, dtype=np.float64)
    assert ref.select_balanced(logits, 6).tolist() == BALANCED_6
    assert ref.select_balanced(logits, 3).tolist() == BALANCED_3
    margin = np.array(MARGIN_LOGITS, dtype=np.float32)
    assert ref.select_margin(margin, 3).tolist() == MARGIN_3
    assert ref.select_margin(margin, 3, exclude=[0]).tolist() == MARGIN_3_EXCLUDE_0
    z = ref.upgma_float32(np.array(POINTS), "euclidean")
    assert z.tolist() == LINKAGE
    assert ref.flat_labels(z, len(POINTS), n_clusters=2).tolist() == HAC_LABELS
