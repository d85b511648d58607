"""BM25 baseline on a five-passage corpus small enough to score by hand."""

from math import log

import pandas as pd
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from twotower.retrieval.bm25 import bm25_run, tokenize
from twotower.retrieval.bm25_index import query_terms
from twotower.errors import TwoTowerError
from twotower.params import Bm25Params, section_from_dict

PASSAGES = pd.DataFrame({
    "pid": ["p1", "p2", "p3", "p4", "p5"],
    "text": [
        "the cat sat on the mat",
        "dogs chase cats in the park",
        "cheap flights to lisbon and porto",
        "lisbon is the capital of portugal",
        "a recipe for apple pie",
    ],
})
PLAIN = Bm25Params(k1=1.2, b=0.75, stemmer="none", stopwords="none")


def queries(*texts):
    return pd.DataFrame({"qid": [f"q{i}" for i in range(1, len(texts) + 1)], "text": list(texts)})


def ranked_pids(run, qid="q1"):
    return run.loc[run["qid"] == qid].sort_values("rank")["pid"].tolist()


def test_lexical_match_ranks_first_and_non_matches_are_left_out():
    run = bm25_run(queries("cheap flights to Lisbon"), PASSAGES, Bm25Params())
    assert ranked_pids(run) == ["p3", "p4"]
    assert list(run.columns) == ["qid", "pid", "rank", "score"]
    assert run["rank"].tolist() == [1, 2] and run["score"].is_monotonic_decreasing


def test_score_is_lucene_bm25_worked_out_by_hand():
    """One matching passage (p4, 6 tokens) for a term in 1 of 5 passages; average length 28/5."""
    run = bm25_run(queries("portugal"), PASSAGES, PLAIN)
    idf = log(1 + (5 - 1 + 0.5) / (1 + 0.5))
    expected = idf * 1 / (1 + 1.2 * (1 - 0.75 + 0.75 * 6 / (28 / 5)))
    assert ranked_pids(run) == ["p4"]
    assert run["score"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_stemming_matches_plural_to_singular():
    assert ranked_pids(bm25_run(queries("cat"), PASSAGES, PLAIN)) == ["p1"]
    stemmed = Bm25Params(stemmer="english", stopwords="none")
    assert ranked_pids(bm25_run(queries("cat"), PASSAGES, stemmed)) == ["p1", "p2"]


def test_query_of_only_stopwords_gets_no_rows_but_others_still_answered():
    run = bm25_run(queries("the of and", "apple"), PASSAGES, Bm25Params(stopwords="english"))
    assert set(run["qid"]) == {"q2"} and ranked_pids(run, "q2") == ["p5"]


def test_equal_scores_are_ordered_by_pid_and_depth_cuts():
    passages = pd.DataFrame({"pid": [f"d{i}" for i in (3, 1, 2)], "text": ["same words"] * 3})
    run = bm25_run(queries("words"), passages, Bm25Params(depth=100))
    assert ranked_pids(run) == ["d1", "d2", "d3"]
    many = pd.DataFrame({"pid": [f"d{i:03d}" for i in range(150)], "text": ["same words"] * 150})
    assert len(bm25_run(queries("words"), many, Bm25Params(depth=100))) == 100


def test_same_input_same_run():
    first = bm25_run(queries("lisbon portugal", "cats"), PASSAGES, Bm25Params())
    pd.testing.assert_frame_equal(first, bm25_run(queries("lisbon portugal", "cats"), PASSAGES, Bm25Params()))


@pytest.mark.parametrize("name,value", [("k1", -0.1), ("k1", "1.2"), ("b", 1.5), ("method", "bm26"),
                                        ("stemmer", "porter"), ("stopwords", "french"), ("depth", 10),
                                        ("depth", 100.0)])
def test_bad_params_fail_naming_param_and_value(name, value):
    with pytest.raises(TwoTowerError, match=rf"^bm25\.{name}: {value!r} is not "):
        section_from_dict("bm25", {name: value})


def test_unknown_bm25_param():
    with pytest.raises(TwoTowerError, match=r"^bm25\.k: unknown param"):
        section_from_dict("bm25", {"k": 1.2})


WORDS = ["The", "running", "runs", "of", "flea", "fleas", "a", "I", "café", "naïve", "x2", "HTML5", "don't",
         "is", "and", "e-mail", "日本語", "...", "???", "42", "it's"]


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), max_size=12), seps=st.sampled_from([" ", ", ", "-", "  "]),
       stopwords=st.sampled_from(["english", "none"]), stemmer=st.sampled_from(["english", "none"]))
def test_query_terms_are_what_tokenize_gives_one_text(words, seps, stopwords, stemmer):
    text = seps.join(words)
    params = Bm25Params(stopwords=stopwords, stemmer=stemmer)
    assert query_terms(stopwords, stemmer)(text) == tokenize([text], params, return_ids=False)[0]
