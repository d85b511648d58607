"""The streamed BM25 build against bm25s' own `BM25.index`: the same score matrix, so the
same scores, for every BM25 variant; and saving, loading and top rows."""

import bm25s
import numpy as np
import pytest

from twotower import TwoTowerError

from twotower.retrieval import bm25_index
from twotower.retrieval.bm25 import tokenize
from twotower.params import Bm25Params

TEXTS = ["the flea life cycle: egg, larva, pupa, adult flea",
         "fleas on a dog and a cat",
         "bread recipe for the oven",
         "the the the",  # only stopwords: no terms at all
         "a bank loan and its interest rate, the interest paid on a loan",
         "river bank erosion after rain",
         "cycle of water: rain, river, sea, cloud, rain",
         "dog food recipe with rice"]
QUERIES = ["flea life cycle", "bank interest", "rain river", "recipe", "dog", "unknownword"]


def batches(texts, size):
    return (texts[i: i + size] for i in range(0, len(texts), size))


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
@pytest.mark.parametrize("chunk_docs", [1, 3, 100])
def test_score_matrix_equals_bm25s_own_build(method, chunk_docs):
    params = Bm25Params(method=method)
    ours = bm25_index.build(batches(TEXTS, 3), params, chunk_docs=chunk_docs)
    vocab = {term: i for term, i in ours.vocab_dict.items() if term != ""}
    ids = [[vocab[t] for t in doc] for doc in tokenize(TEXTS, params, return_ids=False)]
    theirs = bm25s.BM25(k1=params.k1, b=params.b, method=method)
    theirs.index(bm25s.tokenization.Tokenized(ids=ids, vocab=dict(vocab)), show_progress=False)
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(ours.scores[name], theirs.scores[name], err_msg=name)
    assert ours.scores["num_docs"] == theirs.scores["num_docs"] == len(TEXTS)
    assert ours.vocab_dict == theirs.vocab_dict
    if method in ("bm25l", "bm25+"):
        np.testing.assert_array_equal(ours.nonoccurrence_array, theirs.nonoccurrence_array)


def test_scores_equal_bm25s_from_plain_tokens():
    params = Bm25Params()
    ours = bm25_index.build(batches(TEXTS, 2), params)
    theirs = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
    theirs.index(tokenize(TEXTS, params), show_progress=False)
    for query in QUERIES[:-1]:
        terms = tokenize([query], params, return_ids=False)[0]
        np.testing.assert_allclose(ours.get_scores(ours.get_tokens_ids(terms)),
                                   theirs.get_scores(theirs.get_tokens_ids(terms)), rtol=1e-6)


def test_top_rows_saved_and_loaded(tmp_path):
    params = Bm25Params()
    bm25_index.save(bm25_index.build(batches(TEXTS, 4), params), tmp_path / "bm25")
    index = bm25_index.load(tmp_path / "bm25", rows=len(TEXTS))
    scores, rows = bm25_index.top_rows(index, "flea life cycle", params, 3)
    assert rows.tolist() == [0, 1, 6]  # flea twice, life, cycle; "fleas" (stem flea) in a short text; cycle
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)
    assert bm25_index.top_rows(index, "unknownword", params, 3)[1].tolist() == []
    assert bm25_index.top_rows(index, "the", params, 3)[1].tolist() == []
    with pytest.raises(TwoTowerError, match="covers 8 passages, not 9"):
        bm25_index.load(tmp_path / "bm25", rows=9)


def test_ties_go_to_the_lower_row():
    params = Bm25Params()
    index = bm25_index.build([["oven bread", "oven bread", "oven bread"]], params)
    assert bm25_index.top_rows(index, "oven", params, 2)[1].tolist() == [0, 1]


def test_no_passages_is_an_error():
    with pytest.raises(TwoTowerError, match="no passages"):
        bm25_index.build(iter([]), Bm25Params())
