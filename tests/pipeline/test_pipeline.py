"""End to end: real `dvc repro`, `dvc exp run` and `dvc metrics diff` on tiny MS MARCO data
in a throwaway git repo (pyserini-style integration check)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.tiny_data import make_tiny_msmarco
from twotower.metrics import METRIC_NAMES, evaluate_run
from twotower.model import load_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

TINY_PARAMS = {
    "tokenize": {"max_vocab": 3000, "max_len_passage": 64},
    "triplets": {"per_query": 8},
    "model": {"hidden_dim": 16},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.005},
    "eval": {"depth": 100, "batch_size": 64},
}


def run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project wired to tiny data, in a fresh git repo, after one `dvc repro`."""
    repo = tmp_path_factory.mktemp("project")
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_tiny_msmarco(repo / "data" / "raw", seed=0)
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.name", "twotower tests"], repo)
    run(["git", "config", "user.email", "tests@example.invalid"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    (repo / ".gitignore").write_text("/data/raw/\n__pycache__/\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    return repo


def random_ranker_ndcg(repo, seeds=range(20)):
    """Expected nDCG@10 of shuffling the test corpus, estimated over several shuffles."""
    prepared = repo / "data" / "prepared" / "test"
    queries = pd.read_parquet(prepared / "queries.parquet")
    pids = pd.read_parquet(prepared / "passages.parquet")["pid"].to_numpy()
    qrels = pd.read_parquet(prepared / "qrels.parquet")
    values = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        run = pd.DataFrame([(q, p, s) for q in queries["qid"] for p, s in zip(pids, rng.random(len(pids)))],
                           columns=["qid", "pid", "score"])
        values.append(evaluate_run(run, qrels, names=["nDCG@10"])["nDCG@10"])
    return float(np.mean(values))


def test_repro_writes_every_output(project):
    for path in ("data/prepared/test/qrels.parquet", "data/tokens/vocab.txt", "data/tokens/idf.npy",
                 "data/triplets/train.parquet", "models/model.pt", "data/index/embeddings.npy",
                 "plots/eval/precision_recall.png", "plots/eval/precision_recall.csv", "dvc.lock"):
        assert (project / path).is_file(), path
    assert any((project / "plots" / "train").rglob("*.tsv"))
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert set(metrics) == set(METRIC_NAMES)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_run_file_is_trec_format_and_ranked(project):
    run = pd.read_csv(project / "data" / "runs" / "twotower.trec", sep=" ", header=None,
                      names=["qid", "q0", "pid", "rank", "score", "tag"], dtype={"qid": str, "pid": str})
    assert (run["q0"] == "Q0").all() and (run["tag"] == "twotower").all()
    for _, group in run.groupby("qid"):
        assert list(group["rank"]) == list(range(1, len(group) + 1))
        assert group["score"].is_monotonic_decreasing


def test_trained_model_beats_random_ranker(project):
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert metrics["nDCG@10"] > random_ranker_ndcg(project) + 0.1


def test_model_loads_without_params(project, tmp_path):
    shutil.copy(project / "models" / "model.pt", tmp_path / "model.pt")
    model, ckpt = load_model(tmp_path / "model.pt")
    assert ckpt["vocab"][:2] == ["<pad>", "<unk>"]
    assert model.cfg.rnn_type == "GRU"


def test_second_repro_does_nothing(project):
    out = run(["dvc", "repro"], project)
    assert "Running stage" not in out
    assert "up to date" in out.lower() or "didn't change" in out.lower()


def test_experiment_with_lstm_and_metrics_diff(project):
    run(["dvc", "exp", "run", "-S", "model.rnn_type=LSTM"], project)
    assert yaml.safe_load((project / "params.yaml").read_text())["model"]["rnn_type"] == "LSTM"
    assert load_model(project / "models" / "model.pt")[0].cfg.rnn_type == "LSTM"
    shown = run(["dvc", "exp", "show", "--json"], project)
    assert "LSTM" in shown
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project))
    assert "metrics/eval.json" in diff and "nDCG@10" in diff["metrics/eval.json"]
