"""A throwaway copy of the project wired to tiny MS MARCO data, for tests that run real `dvc`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny_data import make_tiny_msmarco

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

N_REAL = 40  # unlabelled real queries in the tiny raw folder's queries.parquet

TINY_PARAMS = {
    # The pipeline's defaults (WordPiece tokens, real-query phase, the teacher's passage vectors,
    # a TREC-style validation split held out of train), sized for the tiny data: 4 of the 24
    # train queries held out over their pools and 20 of the 50 collection passages (first
    # each held-out query's 2 nearest by BM25, kept out of training), the next 20 the real
    # queries' candidates. The tiny collection's passages are single sentences, so
    # they make no inverse-cloze pairs. A small `tokenize.dim` keeps the 30k-piece table light.
    "data": {"ict_passages": 0, "val_queries": 4, "val_distractors": 20, "val_neighbours": 2,
             "candidate_passages": 20},
    "teacher": {"glove_words": 100, "device": "cpu"},
    "tokenize": {"max_vocab": 3000, "max_len_passage": 64, "dim": 32},
    "triplets": {"per_query": 8},
    "model": {"hidden_dim": 16},
    "train": {"epochs": 3, "query_epochs": 2, "candidate_depth": 8, "batch_size": 16, "lr": 0.005,
              "device": "cpu", "ict_epochs": 0},
    "eval": {"depth": 100, "batch_size": 64, "device": "cpu"},
}


def run(cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def make_project(repo: Path, params: dict | None = None, cache: Path | None = None) -> Path:
    """Code, dvc.yaml and params.yaml (TINY_PARAMS, then `params`) over tiny raw data, in a
    fresh git + DVC repo with everything committed; nothing has run yet. With `cache`, the
    repo's DVC cache is that folder (set in the untracked `.dvc/config.local`): projects
    sharing it share DVC's run cache, so a stage one of them ran with the same code, params
    and data is restored in another instead of run again."""
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    for overrides in (TINY_PARAMS, params or {}):
        for section, changes in overrides.items():
            values[section].update(changes)
    (repo / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    make_tiny_msmarco(repo / "data" / "raw", seed=0, n_real=N_REAL)
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.name", "twotower tests"], repo)
    run(["git", "config", "user.email", "tests@example.invalid"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    if cache is not None:
        run(["dvc", "cache", "dir", "--local", str(cache)], repo)
    (repo / ".gitignore").write_text("/data/raw/\n__pycache__/\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    return repo


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)
