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
    """`twotower.x` or `stages.x` -> its source file, or None for anything else."""
    package, _, module = name.partition(".")
    path = PACKAGES[package] / f"{module.split('.')[0]}.py" if package in PACKAGES and module else None
    return path if path is not None and path.is_file() else None


def imported_files(path: Path) -> set[Path]:
    """The project modules `path` imports anywhere in its source."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from twotower import distributed` names a module; `from twotower.x import y` a member.
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {file for file in map(module_file, names) if file is not None}


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
    deps = {str(dep) for dep in STAGES[stage].get("deps", [])}
    return {dep for dep in deps if dep.startswith(("src/twotower/", "stages/")) and dep.endswith(".py")}


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
    assert {"src/twotower/data.py", "src/twotower/raw.py", "src/twotower/prepared.py",
            "src/twotower/errors.py", "src/twotower/search.py"} <= files
    assert "src/twotower/__init__.py" not in files
