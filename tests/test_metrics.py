"""IR metrics against values worked out by hand (after sentence-transformers'
test_information_retrieval_evaluator).

Conventions being checked: binary measures count `selected` (relevance >= 2) passages only;
nDCG@10 uses the graded relevance as gain with discount log2(rank + 1) (trec_eval); a judged
query absent from the run scores 0; a query with no selected passage is not judged at all.
"""

from math import log2

import pandas as pd
import pytest

from twotower.evaluation.metrics import evaluate_run, per_query, precision_recall_curve


def qrels_frame(rows):
    """(qid, pid, relevance) triples -> qrels with selected = relevance >= 2."""
    df = pd.DataFrame(rows, columns=["qid", "pid", "relevance"])
    df["selected"] = df["relevance"] >= 2
    return df


def run_frame(ranked: dict):
    """{qid: [pid at rank 1, rank 2, ...]} -> (qid, pid, score) with distinct, falling scores."""
    rows = [(qid, pid, 100.0 - rank) for qid, pids in ranked.items() for rank, pid in enumerate(pids)]
    return pd.DataFrame(rows, columns=["qid", "pid", "score"])


QRELS = qrels_frame([
    ("q1", "d1", 3), ("q1", "d2", 1), ("q1", "d3", 2),
    ("q2", "d4", 2),
    ("q3", "d5", 2), ("q3", "d6", 2), ("q3", "d7", 3),
    ("q4", "d8", 1), ("q4", "d9", 2),
    ("q5", "d10", 3),
    ("q6", "d11", 1),  # no selected passage: not a judged query, must not enter any mean
])

RUN = run_frame({
    "q1": ["d2", "x1", "d1", "x2", "x3", "d3"],
    "q2": ["d4"],
    "q3": ["x4", "d6", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "d5", "d7"],
    "q4": ["d8", "d9", "x13"],
    "q5": ["x14", "d10"],
    "q6": ["d11"],  # would score 1 on nDCG if it were (wrongly) judged
})

# nDCG@10 per judged query, gain = relevance, discount log2(rank + 1), ideal = qrels by relevance:
#   q1: DCG = 1/log2(2) + 3/log2(4) + 2/log2(7);  IDCG = 3 + 2/log2(3) + 1/log2(4)
#   q2: 1
#   q3: DCG = 2/log2(3) (d5, d7 are below 10);    IDCG = 3 + 2/log2(3) + 2/log2(4)
#   q4: DCG = 1 + 2/log2(3);                      IDCG = 2 + 1/log2(3)
#   q5: DCG = 3/log2(3);                          IDCG = 3
NDCG = {
    "q1": (1 + 3 / 2 + 2 / log2(7)) / (3 + 2 / log2(3) + 1 / 2),
    "q2": 1.0,
    "q3": (2 / log2(3)) / (3 + 2 / log2(3) + 1),
    "q4": (1 + 2 / log2(3)) / (2 + 1 / log2(3)),
    "q5": 1 / log2(3),
}


def test_evaluate_run_matches_hand_worked_example():
    # Relevant (selected) ranks per query, and the number of relevant passages:
    #   q1: d1 at 3, d3 at 6 (d2 at 1 is relevance 1: not relevant)  -> 2 relevant
    #   q2: d4 at 1                                                   -> 1 relevant
    #   q3: d6 at 2, d5 at 11, d7 at 12                               -> 3 relevant
    #   q4: d9 at 2 (d8 at 1 is relevance 1)                          -> 1 relevant
    #   q5: d10 at 2                                                  -> 1 relevant
    # Every mean is over the five judged queries q1..q5 (q6 has no selected passage).
    #
    # P@1:   q2 only                                  = 1/5
    # P@5:   one hit in the top 5 for each query:     (5 * 1/5) / 5 = 1/5
    #        (q2 retrieved a single passage; P@5 still divides by 5)
    # P@10:  q1 2/10, q2..q5 1/10 each                = (6/10) / 5 = 3/25
    # MRR@10: 1/3 + 1 + 1/2 + 1/2 + 1/2               = (17/6) / 5 = 17/30
    # R@10:  1 + 1 + 1/3 + 1 + 1                      = (13/3) / 5 = 13/15
    # R@100: every relevant passage is retrieved      = 1
    # AP:    q1 (1/3 + 2/6)/2 = 1/3;  q2 1;  q3 (1/2 + 2/11 + 3/12)/3 = 41/132;  q4 1/2;  q5 1/2
    #        MAP = (44 + 132 + 41 + 66 + 66)/132 / 5  = 349/660
    expected = {
        "P@1": 1 / 5,
        "P@5": 1 / 5,
        "P@10": 3 / 25,
        "MRR@10": 17 / 30,
        "Recall@10": 13 / 15,
        "Recall@100": 1.0,
        "MAP": 349 / 660,
        "nDCG@10": sum(NDCG.values()) / 5,
    }
    found = evaluate_run(RUN, QRELS)
    assert set(found) == set(expected)
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, abs=1e-6), name


def test_names_selects_measures():
    assert set(evaluate_run(RUN, QRELS, names=["P@1", "nDCG@10"])) == {"P@1", "nDCG@10"}


def test_missing_query_counts_as_zero():
    # Same as the hand-worked example with q5 unanswered: its terms become 0 in every sum.
    #   P@1 1/5;  MRR@10 (17/6 - 1/2)/5 = 7/15;  R@10 (13/3 - 1)/5 = 2/3;
    #   MAP (349 - 66)/132/5 = 283/660;  nDCG (sum - q5)/5
    found = evaluate_run(RUN[RUN["qid"] != "q5"], QRELS)
    assert found["P@1"] == pytest.approx(1 / 5, abs=1e-6)
    assert found["MRR@10"] == pytest.approx(7 / 15, abs=1e-6)
    assert found["Recall@10"] == pytest.approx(2 / 3, abs=1e-6)
    assert found["MAP"] == pytest.approx(283 / 660, abs=1e-6)
    assert found["nDCG@10"] == pytest.approx((sum(NDCG.values()) - NDCG["q5"]) / 5, abs=1e-6)


def test_run_with_only_one_of_two_judged_queries_is_halved():
    qrels = qrels_frame([("a", "p1", 2), ("b", "p2", 2)])
    scores = evaluate_run(run_frame({"a": ["p1"]}), qrels, names=["P@1", "MRR@10", "nDCG@10", "MAP"])
    assert scores == pytest.approx({"P@1": 0.5, "MRR@10": 0.5, "nDCG@10": 0.5, "MAP": 0.5})


def test_relevance_one_gives_gain_but_is_not_relevant():
    # Ranks: p1 (relevance 1), p2 (relevance 2).
    # Binary: only p2 is relevant -> P@1 = 0, RR = 1/2, R@10 = 1, AP = 1/2.
    # nDCG: DCG = 1/log2(2) + 2/log2(3); ideal order p2, p1: 2/log2(2) + 1/log2(3).
    qrels = qrels_frame([("q", "p1", 1), ("q", "p2", 2)])
    found = evaluate_run(run_frame({"q": ["p1", "p2"]}), qrels)
    assert found["P@1"] == 0
    assert found["MRR@10"] == pytest.approx(1 / 2)
    assert found["Recall@10"] == pytest.approx(1)
    assert found["MAP"] == pytest.approx(1 / 2)
    assert found["nDCG@10"] == pytest.approx((1 + 2 / log2(3)) / (2 + 1 / log2(3)), abs=1e-6)


def test_per_query_values():
    found = per_query(RUN, QRELS, "P@1").set_index("qid")["P@1"]
    assert found["q2"] == 1
    assert found["q1"] == 0 and found["q3"] == 0 and found["q4"] == 0


def test_precision_recall_curve_hand_worked():
    # a: relevant at ranks 1 and 3 (2 relevant); b: relevant at rank 2 (1 relevant).
    #          P@1  P@2  P@3  P@5        R@1  R@2  R@3  R@5
    #   a      1    1/2  2/3  2/5        1/2  1/2  1    1
    #   b      0    1/2  1/3  1/5        0    1    1    1
    #   mean   1/2  1/2  1/2  3/10       1/4  3/4  1    1
    qrels = qrels_frame([("a", "a1", 2), ("a", "a2", 3), ("b", "b1", 2)])
    run = run_frame({"a": ["a1", "n1", "a2", "n2"], "b": ["n3", "b1", "n4"]})
    curve = precision_recall_curve(run, qrels, ks=(1, 2, 3, 5))
    assert curve["k"].tolist() == [1, 2, 3, 5]
    assert curve["precision"].tolist() == pytest.approx([1 / 2, 1 / 2, 1 / 2, 3 / 10], abs=1e-6)
    assert curve["recall"].tolist() == pytest.approx([1 / 4, 3 / 4, 1, 1], abs=1e-6)
