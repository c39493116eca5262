"""The examples in the public docstrings run and print what they say."""

from __future__ import annotations

import doctest

import pytest

import alscale.cluster_margin
import alscale.al.datasets
import alscale.distributed
import alscale.diversity
import alscale.formats
import alscale.hac
import alscale.knn
import alscale.al.loop
import alscale.al.metrics
import alscale.pool
import alscale.selection
import alscale.strategies
import alscale.streaming
import alscale.al.train

MODULES = [alscale.formats, alscale.selection, alscale.streaming, alscale.hac, alscale.knn, alscale.cluster_margin,
           alscale.diversity, alscale.strategies, alscale.al.metrics, alscale.al.datasets, alscale.al.train, alscale.al.loop,
           alscale.pool, alscale.distributed]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- the README and docs/ point only inside the repository, and say what the tree holds ---

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(doc):
    text = doc.read_text()
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        assert not link.startswith(("http://", "https://", "/")), f"{doc.name}: {link} leaves the repository"
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name}: {link} does not exist"
        if anchor:
            assert anchor in _anchors(path), f"{doc.name}: no heading for #{anchor} in {path.name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_cite_nothing_the_reader_does_not_have(doc):
    text = doc.read_text()
    assert "DESIGN.md" not in text and "/work/shared" not in text, doc.name
    assert not re.search(r"pip install alscale\b|pip install ['\"]?alscale\[", text), \
        f"{doc.name}: alscale is not on PyPI; install from the checkout (pip install .) or a wheel"


def test_readme_has_two_set_up_commands_and_the_ci_one_installs_the_test_extra():
    text = (ROOT / "README.md").read_text()
    setups = [b for b in _blocks(text, "bash") if "python3 -m venv" in b]
    assert len(setups) == 2, setups
    ci = text.split("<!-- ci:test -->", 1)[1]
    ci_block = _blocks(ci, "bash")[0]
    assert ci_block == setups[1]
    assert 'pip install ".[test]"' in ci_block and "python -m pytest" in ci_block
    assert 'pip install ".[al]"' in setups[0] and "alscale run" in setups[0]


def test_readme_layout_matches_the_tree():
    text = (ROOT / "README.md").read_text()
    layout = _blocks(text.split("## Layout", 1)[1], "")[0]
    named: dict[Path, set[str]] = {}
    folder = ROOT
    for line in layout.splitlines():
        first = line.split()[0] if line.strip() and not line.startswith(" ") else None
        if first and first.endswith("/"):
            folder = ROOT / first
            assert folder.is_dir(), first
        rest = line[len(first):] if first else line
        for name in re.findall(r"(?<![\w/.])(\w+\.(?:py|md|toml)|\w+/)(?=[\s,)]|$)", rest):
            named.setdefault(folder, set()).add(name)
            assert (folder / name).exists() or (ROOT / name).exists(), \
                f"the README's layout names {name} in {folder.relative_to(ROOT)}/"
    for package in ("python/alscale", "python/alscale/al"):
        modules = {p.name for p in (ROOT / package).glob("*.py") if not p.name.startswith("_")}
        modules |= {p.name + "/" for p in (ROOT / package).iterdir() if p.is_dir() and not p.name.startswith("_")}
        missing = modules - named.get(ROOT / (package + "/"), set()) - {"al/"}  # al/ has its own line
        assert not missing, f"the README's layout does not name {sorted(missing)} in {package}/"


def test_readme_python_examples_name_what_exists():
    import alscale

    code = "\n".join(_blocks((ROOT / "README.md").read_text(), "python"))
    for module, names in re.findall(r"^from (alscale[\w.]*) import (.+)$", code, flags=re.M):
        mod = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(mod, name), f"from {module} import {name}"
    for name in set(re.findall(r"\balscale\.(\w+)", code)):
        assert hasattr(alscale, name), f"alscale.{name}"
