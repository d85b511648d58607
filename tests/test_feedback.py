"""Vector pseudo-relevance feedback (`twotower.retrieval.feedback`), the `feedback` params,
and how the ranking stages and index folders carry it."""

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from tests.tiny_index import WORDS, make_model, write_collection
from tests.tiny_index import build_index as build_folder
from twotower.errors import TwoTowerError
from twotower.params import Bm25Params, EvalParams, FeedbackParams, HybridParams, section_from_dict
from twotower.serve.collection import open_source
from twotower.serve.indexer import build_index_folder
from twotower.serve.search import FEEDBACK_PROBES, Searcher
from twotower.retrieval.ann import build_index, search
from twotower.retrieval.dense import top_k
from twotower.retrieval.feedback import expand


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


PASSAGES = unit(np.random.default_rng(0).normal(size=(50, 8)))
QUERIES = unit(np.random.default_rng(1).normal(size=(6, 8)))


def exact(queries, k):
    return top_k(queries, PASSAGES, k)


def test_each_query_moves_toward_the_mean_of_its_first_passages():
    expanded = expand(QUERIES, exact, lambda rows: PASSAGES[rows], FeedbackParams(depth=3, weight=1.5))
    for query, got in zip(QUERIES, expanded):
        first = np.argsort(-(PASSAGES @ query), kind="stable")[:3]
        wanted = query + 1.5 * PASSAGES[first].mean(axis=0)
        np.testing.assert_allclose(got, wanted / np.linalg.norm(wanted), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(expanded, axis=1), 1.0, atol=1e-6)
    assert expanded.dtype == np.float32  # a float64 query makes a search convert the whole passage matrix


@pytest.mark.parametrize("params", [FeedbackParams(depth=0), FeedbackParams(depth=2, weight=0.0)])
def test_no_depth_or_no_weight_leaves_the_queries_alone(params):
    def never(*_):
        raise AssertionError("searched without feedback")

    np.testing.assert_array_equal(expand(QUERIES, never, never, params), QUERIES)


def test_feedback_can_reorder_the_results():
    """The query lies 10 degrees from `a`, `b` 15 degrees from the query on its far side and
    `c` 22 on the near side, 12 from `a`: with `a` added four times over, the query turns
    almost onto `a`, and `c` passes `b`."""
    angles = np.radians([0, 25, -12])
    passages = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    query = np.array([[np.cos(np.radians(10)), np.sin(np.radians(10))]], dtype=np.float32)
    before = top_k(query, passages, 3)[1][0].tolist()
    after_vector = expand(query, lambda q, k: top_k(q, passages, k), lambda rows: passages[rows],
                          FeedbackParams(depth=1, weight=4.0))
    after = top_k(after_vector, passages, 3)[1][0].tolist()
    assert before == [0, 1, 2] and after == [0, 2, 1]


def test_rows_an_index_did_not_find_are_not_averaged():
    def partial(queries, k):  # the first query found one passage, the second none
        rows = np.full((len(queries), k), -1)
        rows[0, 0] = 7
        return np.zeros(rows.shape, dtype=np.float32), rows

    expanded = expand(QUERIES[:2], partial, lambda rows: PASSAGES[rows], FeedbackParams(depth=4, weight=1.0))
    wanted = QUERIES[0] + PASSAGES[7]
    np.testing.assert_allclose(expanded[0], wanted / np.linalg.norm(wanted), atol=1e-6)
    np.testing.assert_allclose(expanded[1], QUERIES[1], atol=1e-7)


def test_a_faiss_index_expands_as_exact_search_does():
    index = build_index(PASSAGES, "exact")
    params = FeedbackParams(depth=2, weight=2.0)
    np.testing.assert_allclose(expand(QUERIES, lambda q, k: search(index, q, k), lambda rows: PASSAGES[rows], params),
                               expand(QUERIES, exact, lambda rows: PASSAGES[rows], params), atol=1e-6)


@pytest.mark.parametrize("values, bad", [
    ({"depth": -1}, "feedback.depth"), ({"depth": 101}, "feedback.depth"), ({"depth": 1.5}, "feedback.depth"),
    ({"depth": True}, "feedback.depth"), ({"weight": -0.5}, "feedback.weight"),
    ({"weight": float("nan")}, "feedback.weight"), ({"weight": float("inf")}, "feedback.weight"),
    ({"weight": "2"}, "feedback.weight"), ({"depht": 2}, "did you mean depth"),
])
def test_bad_feedback_params_are_named(values, bad):
    with pytest.raises(TwoTowerError, match=bad):
        section_from_dict("feedback", values)


def test_an_index_folder_records_feedback_and_an_older_one_searches_without(tmp_path):
    build_folder(tmp_path)
    folder = tmp_path / "index"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["feedback"] == asdict(FeedbackParams())
    assert Searcher.from_index(folder, device="cpu").feedback == FeedbackParams()
    del manifest["feedback"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert Searcher.from_index(folder, device="cpu").feedback == FeedbackParams(depth=0)
    manifest["feedback"] = {"depth": -1, "weight": 8.0}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TwoTowerError, match="feedback.depth"):
        Searcher.from_index(folder, device="cpu")


def test_an_ivf_folders_feedback_search_visits_a_quarter_of_its_cells(tmp_path):
    """The feedback needs only a query's first passages, which the nearest cells hold; the
    search that answers still visits every cell the index was calibrated for."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"id": [f"p{i}" for i in range(800)],
                          "text": [" ".join(rng.choice(WORDS, 4)) for _ in range(800)]})
    make_model(tmp_path / "model.pt")
    write_collection(table, tmp_path / "c.parquet", "parquet")
    build_index_folder([open_source(tmp_path / "c.parquet")], tmp_path / "index", tmp_path / "model.pt",
                       device="cpu", kind="ivf", eval_params=EvalParams(ivf_nlist=16), nprobe=12,
                       bm25_params=Bm25Params(), hybrid_params=HybridParams(), show_progress=False,
                       log=lambda line: None)
    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    assert searcher.faiss_index.nprobe == 12 and "nprobe" not in searcher.dense_search.keywords
    assert searcher.feedback_search.keywords["nprobe"] == 12 // FEEDBACK_PROBES
    assert len(searcher.search("flea dog", 5)) == 5

    exact = Searcher.from_index(build_folder(tmp_path / "exact"), device="cpu")
    assert exact.feedback_search.keywords["nprobe"] is None
