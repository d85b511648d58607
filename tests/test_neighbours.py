from dataclasses import replace

import pandas as pd

from twotower.params import Bm25Params
from twotower.retrieval.bm25 import bm25_run
from twotower.retrieval.neighbours import nearest_passages

COLLECTION = pd.DataFrame({"pid": ["c1", "c2", "c3", "c4", "c5", "c6"],
                           "text": ["apple pie recipe", "car engine oil", "apple orchard", "weather today",
                                    "engine repair", "apple car"]})


def test_nearest_passages_are_each_querys_bm25_top_rank_major_and_unique():
    queries = pd.DataFrame({"qid": ["a", "b"], "text": ["apple", "engine"]})
    near = nearest_passages(queries, COLLECTION, 2, Bm25Params())
    top = {qid: list(run["pid"]) for qid, run in bm25_run(queries, COLLECTION, replace(Bm25Params(), depth=2))
           .groupby("qid")}
    # Rank-major: a's first, b's first, a's second, b's second; each passage once.
    expected = list(dict.fromkeys([top["a"][0], top["b"][0], top["a"][1], top["b"][1]]))
    assert list(near["pid"]) == expected and len(expected) == 4
    assert set(near["pid"]) <= {"c1", "c3", "c6", "c2", "c5"}  # never a passage with no query word
    assert list(near["text"]) == list(COLLECTION.set_index("pid").loc[expected, "text"])
    assert list(nearest_passages(queries, COLLECTION, 1, Bm25Params())["pid"]) == expected[:2]
    assert nearest_passages(queries, COLLECTION, 0, Bm25Params()).empty
    assert list(nearest_passages(queries, COLLECTION, 10, Bm25Params())["pid"])[:4] == expected
