"""One strategy layer: the loop's way of calling a strategy (chunk sources of logits, MC samples
as a list of T passes, a Generator) and a labelling project's (whole arrays or memmaps read in
chunks, the labeled ids from labels.csv, an int seed recorded in the history) give the same picks
for every registered strategy, with the same options and inputs."""

from __future__ import annotations

import numpy as np
import pytest

from alscale import ActiveLearner, strategies
from alscale.strategies import PoolView, get

ORACLES = {"balanced-random"}  # they read the true labels: simulations only, refused by a project


class Chunks:
    """A re-iterable chunk source, as the loop hands the pool's logits (TorchTrainer.logits)."""

    def __init__(self, x, step):
        self.x, self.step, self.shape = x, step, x.shape

    def __iter__(self):
        return (self.x[s : s + self.step] for s in range(0, self.x.shape[0], self.step))


def _inputs(seed, n=240, c=5, d=8, t=4):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((c, d)).astype(np.float32)
    x = (z @ w.T + rng.standard_normal((n, c))).astype(np.float32)
    mc = (x[None] + 0.7 * rng.standard_normal((t, n, c))).astype(np.float32)
    taught = rng.choice(n, size=25, replace=False)
    return x, z, w, mc, taught, rng.integers(0, c, taught.size)


@pytest.mark.parametrize("name", sorted(set(strategies.available()) - ORACLES))
@pytest.mark.parametrize("seed_kind", ["int", "generator"])
def test_the_loop_and_a_project_pick_the_same_rows(tmp_path, name, seed_kind):
    x, z, w, mc, taught, labels = _inputs(3)
    cls = strategies.get_class(name)
    mcs = "mc_samples" in cls.needs
    np.save(tmp_path / "logits.npy", mc if mcs else x)
    np.save(tmp_path / "emb.npy", z)
    on_disk = np.load(tmp_path / "logits.npy", mmap_mode="r")
    emb = np.load(tmp_path / "emb.npy", mmap_mode="r")
    options = {"n_clusters": 12} if name == "cluster-margin" else {}
    learner = ActiveLearner(tmp_path / "p", strategy=name, options=options, pool_size=x.shape[0], num_classes=x.shape[1])
    learner.teach(taught, labels)
    seed = 11 if seed_kind == "int" else None
    budget = 17
    labeled = np.zeros(x.shape[0], bool)
    labeled[taught] = True
    chunks = x if cls.logits_in_memory else Chunks(x, 64)  # the loop hands BADGE one array
    loop_view = PoolView(labeled=labeled, logits=None if mcs else chunks, embeddings=z, weight=w,
                         num_classes=x.shape[1], mc_samples=[m for m in mc] if mcs else None)
    if seed_kind == "int":
        by_loop = get(name, **options).select(loop_view, budget, 11)
        by_project = learner.query(on_disk, budget, embeddings=emb, weight=w, seed=seed)
    else:  # a Generator, as the loop passes: the project's strategy object with the same one
        by_loop = get(name, **options).select(loop_view, budget, np.random.default_rng([5, 1, 2]))
        project_view = PoolView(labeled=labeled, logits=None if mcs else on_disk, embeddings=emb, weight=w,
                                num_classes=x.shape[1], mc_samples=on_disk if mcs else None)
        by_project = get(name, **options).select(project_view, budget, np.random.default_rng([5, 1, 2]))
    by_loop, by_project = np.asarray(by_loop), np.asarray(by_project)
    assert by_project.tolist() == by_loop.tolist()
    assert by_project.size == budget and not labeled[by_project].any() and np.unique(by_project).size == budget


def test_every_strategy_declares_known_needs_and_documented_options():
    for name in strategies.available():
        cls = strategies.get_class(name)
        assert cls.needs <= strategies.NEEDS, name
        assert cls.summary() != "(no description)", name
        s = get(name)
        assert set(s.options()) <= set(cls.option_defaults()), (name, s.options())
        with pytest.raises(ValueError, match=f"strategy {name!r} has no option"):
            get(name, no_such_option=1)


def test_query_help_and_run_list_name_the_same_strategies():
    from alscale.cli import build_parser

    text = build_parser(application=False)._subparsers._group_actions[0].choices["query"].format_help()
    for line in strategies.describe(options=True):
        assert line.split()[0] in text
    assert [line.split()[0] for line in strategies.describe()] == strategies.available()


def test_a_strategy_typo_names_the_closest_one():
    with pytest.raises(ValueError, match="did you mean 'cluster-margin'"):
        strategies.get_class("cluster-margni")


def test_query_options_that_are_malformed_or_unknown_are_one_error_line_and_record_nothing(tmp_path):
    """``alscale query --option``: not NAME=VALUE (argparse, exit 2), or a name the strategy does
    not take (one ``error:`` line naming the strategy's options); the project is unchanged."""
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32))
    run = lambda *a: subprocess.run([sys.executable, "-m", "alscale", *map(str, a)], capture_output=True, text=True)
    assert run("init", "--project", tmp_path / "p", "--pool-size", 20, "--classes", "a,b,c").returncode == 0
    before = (tmp_path / "p" / "project.json").read_bytes()
    base = ("query", "--project", tmp_path / "p", "--logits", tmp_path / "x.npy", "--strategy", "margin",
            "--budget", 3)
    bad = run(*base, "--option", "delta")
    assert bad.returncode == 2 and "must be NAME=VALUE" in bad.stderr
    unknown = run(*base, "--option", "delta=0.4")
    lines = unknown.stderr.strip().splitlines()
    assert unknown.returncode != 0 and len(lines) == 1 and "not an option of the strategy 'margin'" in lines[0]
    assert "multilabel" in lines[0] and unknown.stdout == ""
    assert (tmp_path / "p" / "project.json").read_bytes() == before


def test_multilabel_strategy_options_are_checked():
    for name in ("margin", "confidence", "entropy", "cluster-margin"):
        with pytest.raises(ValueError, match="reduction must be 'mean' or 'min'"):
            get(name, multilabel=True, reduction="max")
        with pytest.raises(TypeError, match="multilabel must be True or False"):
            get(name, multilabel="yes")
        assert get(name, multilabel=True, reduction="min").options()["reduction"] == "min"
        assert "multilabel" not in get(name).options()
