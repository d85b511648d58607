"""The package's folders are its architecture: each layer imports only from the layers before
it, so a module's folder says what it may use and what a change to it can break.

    top level   errors, files, devices, params, param_checks, param_rules (cli is the entry
                point: it sits on top of everything)
    data        raw MS MARCO -> prepared tables, triplets, runs
    text        tokenizers, vocabulary, token arrays, GloVe
    evaluation  metrics over runs, comparison, charts
    retrieval   dense top-k, faiss, shards, BM25, fusion
    distill     the teacher and what is derived from it
    model       towers, losses, training
    serve       search your own documents: Searcher, index folders, the server
"""

import re
from pathlib import Path

import pytest

from tests.test_dvc_deps import imported_names

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "twotower"
LAYERS = ["", "data", "text", "evaluation", "retrieval", "distill", "model", "serve"]
ENTRY_POINTS = {"cli.py", "__init__.py"}


def layer_of(module: str) -> str:
    """`twotower.retrieval.ann` -> "retrieval"; `twotower.params` -> "" (the top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else ""


def imported_modules(path: Path) -> set[str]:
    return {name for name in imported_names(path) if name.startswith("twotower.")}


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path.relative_to(PACKAGE).as_posix() not in ENTRY_POINTS)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_a_module_imports_only_from_its_own_layer_or_those_before_it(path):
    own = path.relative_to(PACKAGE).parts[0] if len(path.relative_to(PACKAGE).parts) > 1 else ""
    later = {name for name in imported_modules(path) if LAYERS.index(layer_of(name)) > LAYERS.index(own)}
    assert not later, f"{path.relative_to(PACKAGE)} (layer {own or 'top'}) imports from a later layer: {sorted(later)}"


def test_every_module_sits_in_a_known_layer():
    folders = {path.parent.name for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE}
    assert folders == set(LAYERS[1:])


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    module = tmp_path / "ann.py"
    module.write_text("from twotower.serve.search import Searcher\nfrom twotower.errors import TwoTowerError\n")
    upward = {name for name in imported_modules(module) if LAYERS.index(layer_of(name)) > LAYERS.index("retrieval")}
    assert upward == {"twotower.serve.search", "twotower.serve.search.Searcher"}


def readme_module_map() -> dict[str, set[str]]:
    """The README's *Layout* block as {folder ("" for the top level): names listed for it}.
    A folder's entry starts with `  name/` and runs until the next entry or the block's end."""
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    block = section.split("```")[1].splitlines()
    entries, current = {}, None
    for line in block:
        start = re.match(r"^  (\w+)/\s", line)
        if start:
            current = start.group(1)
        elif re.match(r"^  \w", line):
            current = ""  # a top-level line: its module names, then what they do
        elif not line.startswith("    "):
            current = None  # stages/, tests/, ... outside the package
        if current is not None:
            entries.setdefault(current, set()).update(re.findall(r"[a-z_0-9]+", line))
    return entries


def test_the_readmes_module_map_lists_every_module_under_its_folder():
    listed = readme_module_map()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if path.name == "__init__.py":
            continue
        folder = relative.parts[0] if len(relative.parts) > 1 else ""
        assert path.stem in listed.get(folder, set()), f"README's Layout does not list {relative} under {folder or 'the top level'}"
    assert set(listed) - {""} == set(LAYERS[1:])
