"""End to end: real `dvc repro`, `dvc exp run` and `dvc metrics diff` on tiny MS MARCO data
in a throwaway git repo (pyserini-style integration check)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.pipeline.project import TINY_PARAMS, commit, make_project, run
from twotower.evaluation.metrics import METRIC_NAMES, evaluate_run
from twotower.model.towers import load_model
from twotower.text.tokenizers import TokenArrays

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, dvc_cache):
    """A copy of the project wired to tiny data, in a fresh git repo, after one `dvc repro`
    (stages an earlier project of the session ran alike come from DVC's run cache;
    `test_forced_rerun_is_bit_identical` runs every one of them here)."""
    repo = make_project(tmp_path_factory.mktemp("project"), cache=dvc_cache)
    run(["dvc", "repro"], repo)
    commit(repo, "baseline")
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
    for path in ("data/prepared/test/qrels.parquet", "data/prepared/real/queries.parquet", "data/tokens/vocab.txt",
                 "data/tokens/tokenizer.json", "data/tokens/term_weights.npy", "data/triplets/train.parquet",
                 "data/teacher/pieces.npy", "data/teacher/real/queries.npy", "data/teacher_index/embeddings.npy",
                 "models/model.pt", "data/index/embeddings.npy", "plots/eval/precision_recall.png",
                 "plots/eval/precision_recall.csv", "dvc.lock"):
        assert (project / path).is_file(), path
    assert any((project / "plots" / "train").rglob("*.tsv"))
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert set(metrics) == set(METRIC_NAMES)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_compare_scores_our_systems_as_their_stages_do_and_adds_no_metric(project):
    scores = json.loads((project / "plots" / "compare" / "scores.json").read_text())
    for system, stage_metrics in (("twotower", "eval"), ("bm25", "bm25"), ("hybrid", "hybrid")):
        assert scores[system] == json.loads((project / "metrics" / f"{stage_metrics}.json").read_text())
    shown = run(["dvc", "metrics", "show", "--json"], project)
    assert "metrics/eval.json" in shown and "compare" not in shown


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
    assert ckpt["tokenizer_json"] == (project / "data" / "tokens" / "tokenizer.json").read_text()
    params = yaml.safe_load((project / "params.yaml").read_text())["model"]
    assert (model.cfg.rnn_type, model.cfg.hidden_dim) == (params["rnn_type"], params["hidden_dim"])


def test_the_default_model_searches_the_teachers_passage_vectors(project):
    """`model.passage_encoder: teacher`: no passage tower; embed_corpus takes the vectors that
    teacher_passages made, and the query tower was first taught on the real queries."""
    model, ckpt = load_model(project / "models" / "model.pt")
    assert model.teacher_passages and model.passage_encoder is None
    assert ckpt["teacher"]["model"] == "minilm"
    index = np.load(project / "data" / "index" / "embeddings.npy")
    np.testing.assert_array_equal(index, np.load(project / "data" / "teacher_index" / "embeddings.npy"))
    assert index.shape == (len(pd.read_parquet(project / "data" / "prepared" / "test" / "passages.parquet")), 384)
    assert len(pd.read_parquet(project / "data" / "prepared" / "real" / "queries.parquet")) > 0
    curve = pd.read_csv(project / "plots" / "train" / "train" / "loss.tsv", sep="\t")
    params = yaml.safe_load((project / "params.yaml").read_text())["train"]
    assert len(curve) == params["query_epochs"] + params["epochs"]  # the real-query phase, then the labelled one


def test_second_repro_does_nothing(project):
    out = run(["dvc", "repro"], project)
    assert "Running stage" not in out
    assert "up to date" in out.lower() or "didn't change" in out.lower()


def lock_outs(repo) -> dict:
    """{(stage, path): md5} of every output dvc.lock records."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {(name, out["path"]): out["md5"] for name, stage in stages.items() for out in stage.get("outs", [])}


def test_forced_rerun_is_bit_identical(project):
    """Same code, params and data on CPU: every stage rerun from scratch reproduces each
    metrics file byte for byte and every output's hash (model, index, runs, plots)."""
    metrics = {p.name: p.read_bytes() for p in sorted((project / "metrics").glob("*.json"))}
    outs = lock_outs(project)
    assert set(metrics) == {"teacher.json", "train.json", "eval.json", "bm25.json", "hybrid.json"}
    assert ("teacher", "data/teacher") in outs
    assert ("train", "models/model.pt") in outs

    out = run(["dvc", "repro", "-f"], project)
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert {p.name: p.read_bytes() for p in sorted((project / "metrics").glob("*.json"))} == metrics
    assert lock_outs(project) == outs
    assert run(["git", "status", "--porcelain"], project) == ""


def test_experiment_with_lstm_and_metrics_diff(project):
    run(["dvc", "exp", "run", "-S", "model.rnn_type=LSTM"], project)
    assert yaml.safe_load((project / "params.yaml").read_text())["model"]["rnn_type"] == "LSTM"
    assert load_model(project / "models" / "model.pt")[0].cfg.rnn_type == "LSTM"
    shown = run(["dvc", "exp", "show", "--json"], project)
    assert "LSTM" in shown
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project))
    assert "metrics/eval.json" in diff and "nDCG@10" in diff["metrics/eval.json"]


def test_experiment_with_an_approximate_index(project):
    """`eval.index: hnsw` reruns only embed_corpus and what follows, writes the faiss index,
    and on a corpus this small (efSearch >= depth) ranks like the exact search."""
    exact = json.loads((project / "metrics" / "eval.json").read_text())
    out = run(["dvc", "exp", "run", "-S", "eval.index=hnsw"], project)
    assert "Running stage 'train'" not in out and "Running stage 'embed_corpus'" in out
    assert (project / "data" / "index" / "faiss.index").is_file()
    approximate = json.loads((project / "metrics" / "eval.json").read_text())
    assert approximate.keys() == exact.keys()
    for name, value in exact.items():
        assert approximate[name] == pytest.approx(value, abs=0.02), name


def test_experiment_with_a_student_passage_tower(project):
    """`model.passage_encoder: student` (with `model.output: student`): the model has its own
    passage tower, which embed_corpus runs over the test passages; teacher_passages writes only
    a manifest, and the teacher's vectors of the training texts are reused, not recomputed."""
    out = run(["dvc", "exp", "run", "-S", "model.output=student", "-S", "model.passage_encoder=student"], project)
    assert "Running stage 'teacher'" not in out and "Running stage 'teacher_passages'" in out
    assert "Running stage 'train'" in out and "Running stage 'embed_corpus'" in out
    manifest = json.loads((project / "data" / "teacher_index" / "manifest.json").read_text())
    assert manifest["encoder"] == "student" and not (project / "data" / "teacher_index" / "embeddings.npy").exists()
    model, _ = load_model(project / "models" / "model.pt")
    assert not model.teacher_passages and model.cfg.output == "student"
    passages = TokenArrays.load(project / "data" / "tokens" / "test", "passages")
    with torch.no_grad():
        expected = model.encode_passages(torch.from_numpy(np.array(passages.ids, dtype=np.int64)),
                                         torch.from_numpy(passages.lengths.astype(np.int64))).numpy()
    index = np.load(project / "data" / "index" / "embeddings.npy")
    assert index.shape == expected.shape == (len(passages), model.cfg.embed_dim)
    np.testing.assert_allclose(index, expected, atol=1e-5)
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert metrics["nDCG@10"] > random_ranker_ndcg(project) + 0.1


def test_subsample_alone_on_hugging_face_files_without_a_collection(tmp_path):
    """Hugging Face ships train/validation/test only: with data.ict_passages the pseudo-query
    passages come from the train split (whose tiny single-sentence passages make no pair, so
    there is no ict split), the held-out validation queries rank their pools alone, and there
    are no real queries."""
    repo = make_project(tmp_path, {"data": {"ict_passages": 4000}})
    (repo / "data" / "raw" / "collection.parquet").unlink()
    (repo / "data" / "raw" / "queries.parquet").unlink()
    out = run(["dvc", "repro", "subsample"], repo)
    assert "note: no collection.parquet in data/raw: the inverse-cloze pairs are made from the train split's" in out
    assert "note: no collection.parquet, so the validation pools have no distractors" in out
    assert "note: no data/raw/queries.parquet: training without real queries" in out
    assert (repo / "data" / "prepared" / "train" / "qrels.parquet").is_file()
    held_out = pd.read_parquet(repo / "data" / "prepared" / "validation" / "queries.parquet")
    assert len(held_out) == TINY_PARAMS["data"]["val_queries"]
    assert not (repo / "data" / "prepared" / "ict").exists() and not (repo / "data" / "prepared" / "real").exists()
