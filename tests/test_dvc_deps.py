"""dvc.yaml: each stage depends on every project module its script runs, so that DVC reruns
the stage when any of that code changes, and on no module it does not run.

A stage's script is the `python -m stages.X` of its cmd; the modules are those it imports,
directly or through other project modules, found by reading the sources (imports inside
functions count: they run when the function does). `twotower/__init__.py` is left out: it
only re-exports `Searcher` lazily. A new stage in dvc.yaml is checked without changes here.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"twotower": ROOT / "src" / "twotower", "stages": ROOT / "stages"}
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """`twotower.x.y` (or `stages.x`) -> its source file; for `twotower.x.y.member`, the file
    of `twotower.x.y`; None for anything else. A package resolves to None: its `__init__.py`
    holds only a docstring (`test_subpackage_inits_hold_only_a_docstring`)."""
    package, *parts = name.split(".")
    if package not in PACKAGES:
        return None
    for end in range(len(parts), 0, -1):
        path = PACKAGES[package].joinpath(*parts[:end - 1], parts[end - 1] + ".py")
        if path.is_file():
            return path
    return None


def imported_names(path: Path) -> set[str]:
    """Every dotted name `path` imports anywhere in its source: `from a.b import c` gives
    `a.b` and `a.b.c` (c may be a module, as in `from twotower.model import distributed`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def imported_files(path: Path) -> set[Path]:
    """The project modules `path` imports anywhere in its source."""
    return {file for file in map(module_file, imported_names(path)) if file is not None}


def files_run_by(script: Path) -> set[Path]:
    """`script` and every project module it imports, directly or not."""
    seen, todo = set(), {script}
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo |= imported_files(path)
    return seen


def stage_code(stage: str) -> set[str]:
    """The source files stage `stage` runs, as paths relative to the repo root."""
    cmd = STAGES[stage]["cmd"]
    cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
    found = re.search(r"-m\s+(stages\.\w+)", cmd)
    assert found, f"dvc.yaml stage {stage!r}: no `python -m stages.<name>` in its cmd {cmd!r}"
    script = module_file(found.group(1))
    assert script is not None, f"dvc.yaml stage {stage!r}: {found.group(1)} has no source file"
    return {path.relative_to(ROOT).as_posix() for path in files_run_by(script)}


def listed_code(stage: str) -> set[str]:
    """The project modules in the stage's deps; a subpackage folder stands for all its modules."""
    listed = set()
    for dep in map(str, STAGES[stage].get("deps", [])):
        if dep.startswith(("src/twotower/", "stages/")):
            path = ROOT / dep
            files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
            listed |= {file.relative_to(ROOT).as_posix() for file in files
                       if file.suffix == ".py" and file.name != "__init__.py"}
    return listed


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_every_module_it_runs(stage):
    missing = sorted(stage_code(stage) - listed_code(stage))
    assert not missing, f"dvc.yaml stage {stage!r} runs but does not list in its deps: {', '.join(missing)}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_no_module_it_does_not_run(stage):
    stale = sorted(listed_code(stage) - stage_code(stage))
    assert not stale, f"dvc.yaml stage {stage!r} lists in its deps but never runs: {', '.join(stale)}"


def test_the_import_graph_is_followed_through_modules_and_functions(tmp_path):
    """cli imports data inside a function, data imports prepared and raw, raw imports
    prepared and errors."""
    files = {path.relative_to(ROOT).as_posix() for path in files_run_by(PACKAGES["twotower"] / "cli.py")}
    assert {"src/twotower/data/prepare.py", "src/twotower/data/raw.py", "src/twotower/data/prepared.py",
            "src/twotower/errors.py", "src/twotower/serve/search.py"} <= files
    assert "src/twotower/__init__.py" not in files


def test_subpackage_inits_hold_only_a_docstring():
    """They run on import but add no code, so leaving them out of deps hides nothing."""
    for init in (ROOT / "src" / "twotower").glob("*/__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), init


def test_a_folder_dep_stands_for_every_module_in_it(monkeypatch):
    stage = {"cmd": "python -m stages.train", "deps": ["src/twotower/retrieval", "stages/train.py"]}
    monkeypatch.setitem(STAGES, "folder_stage", stage)
    listed = listed_code("folder_stage")
    assert {"src/twotower/retrieval/ann.py", "src/twotower/retrieval/dense.py", "stages/train.py"} <= listed
    assert not any(path.endswith("__init__.py") for path in listed)


def test_a_member_import_resolves_to_its_module():
    assert module_file("twotower.retrieval.dense.Split") == ROOT / "src/twotower/retrieval/dense.py"
    assert module_file("twotower.retrieval") is None
    assert module_file("numpy.linalg") is None
