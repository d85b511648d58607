from collections import Counter

import pandas as pd
import pytest

from twotower.data.prepare import read_split
from twotower.errors import TwoTowerError
from twotower.data.triplets import build_triplets

QRELS = pd.DataFrame(
    [
        ("q1", "p1", 2, True), ("q1", "p2", 1, False), ("q1", "p3", 0, False), ("q1", "p4", 0, False),
        ("q2", "p5", 3, True), ("q2", "p6", 2, True), ("q2", "p7", 0, False),
        ("q3", "p8", 2, True),                      # no judged non-relevant passage: no hard candidates
        ("q4", "p9", 1, False),                     # no selected passage: no triplets at all
    ],
    columns=["qid", "pid", "relevance", "selected"],
)
PIDS = [f"p{i}" for i in range(1, 21)]
MODES = ["random", "hard", "mixed"]


def not_negatives(qrels):
    related = qrels[qrels["selected"] | (qrels["relevance"] > 0)]
    return related.groupby("qid")["pid"].agg(set).to_dict()


def assert_valid(triplets, qrels):
    positives = qrels[qrels["selected"]].groupby("qid")["pid"].agg(set).to_dict()
    excluded = not_negatives(qrels)
    for qid, pos, neg in triplets.itertuples(index=False):
        assert pos in positives[qid]
        assert neg not in excluded[qid], (qid, neg)


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_triplets_other_seed_others(mode):
    a = build_triplets(QRELS, PIDS, mode, per_query=16, seed=3)
    b = build_triplets(QRELS, PIDS, mode, per_query=16, seed=3)
    c = build_triplets(QRELS, PIDS, mode, per_query=16, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


@pytest.mark.parametrize("mode", MODES)
def test_never_a_relevant_negative(mode):
    triplets = build_triplets(QRELS, PIDS, mode, per_query=50, seed=0)
    assert list(triplets.columns) == ["qid", "pos_pid", "neg_pid"]
    assert_valid(triplets, QRELS)


@pytest.mark.parametrize("mode", MODES)
def test_never_a_relevant_negative_on_tiny_data(tiny_raw, mode):
    train = read_split(tiny_raw, "train")
    triplets = build_triplets(train.qrels, train.passages["pid"], mode, per_query=8, seed=1)
    assert len(triplets) == 8 * len(train.queries)
    assert_valid(triplets, train.qrels)


def test_per_query_count_and_positive_cycling():
    triplets = build_triplets(QRELS, PIDS, "random", per_query=4, seed=0)
    assert triplets.groupby("qid").size().to_dict() == {"q1": 4, "q2": 4, "q3": 4}
    # q2's two positives are cycled through: each used twice.
    assert Counter(triplets.loc[triplets["qid"] == "q2", "pos_pid"]) == {"p5": 2, "p6": 2}


def test_hard_negatives_are_the_querys_own_non_relevant_passages():
    stats = Counter()
    triplets = build_triplets(QRELS, PIDS, "hard", per_query=20, seed=0, stats=stats)
    negs = triplets.groupby("qid")["neg_pid"].agg(set).to_dict()
    assert negs["q1"] == {"p3", "p4"}
    assert negs["q2"] == {"p7"}
    # q3 has no hard candidates: it falls back to random negatives, and says so.
    assert negs["q3"].isdisjoint({"p8"})
    assert stats["hard negatives"] == 40
    assert stats["random negatives (query had no hard candidates)"] == 20


def test_mixed_alternates_hard_and_random():
    stats = Counter()
    triplets = build_triplets(QRELS[QRELS["qid"] == "q1"], PIDS, "mixed", per_query=10, seed=0, stats=stats)
    assert stats["hard negatives"] == 5 and stats["random negatives"] == 5
    assert set(triplets["neg_pid"].iloc[::2]) <= {"p3", "p4"}


def test_invalid_mode():
    with pytest.raises(TwoTowerError, match="triplets.negatives: 'semi' is not one of random, hard, bm25, mixed"):
        build_triplets(QRELS, PIDS, "semi", per_query=2, seed=0)


def test_every_passage_relevant_is_an_error():
    with pytest.raises(TwoTowerError, match="no negatives"):
        build_triplets(QRELS, ["p1", "p2"], "random", per_query=2, seed=0)


def test_bm25_negatives_come_from_the_candidates_minus_relevant_passages():
    qids = sorted(set(QRELS["qid"]))
    relevant = set(QRELS.loc[QRELS["selected"] | (QRELS["relevance"] > 0), ["qid", "pid"]].itertuples(index=False))
    candidates = {q: list(PIDS) for q in qids}
    triplets = build_triplets(QRELS, PIDS, "bm25", per_query=6, seed=0, bm25_candidates=candidates)
    assert len(triplets) > 0
    for qid, _, neg in triplets.itertuples(index=False):
        assert (qid, neg) not in relevant
    only_first = {q: [PIDS[-1]] for q in qids}
    triplets = build_triplets(QRELS, PIDS, "bm25", per_query=4, seed=0, bm25_candidates=only_first)
    usable = [q for q in qids if (q, PIDS[-1]) not in relevant]
    assert set(triplets.loc[triplets["qid"].isin(usable), "neg_pid"]) == {PIDS[-1]}
