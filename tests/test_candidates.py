import numpy as np
import pandas as pd
import pytest

from twotower.distill.candidates import bm25_candidates, candidate_triplets, teacher_candidates
from twotower.errors import TwoTowerError
from twotower.params import Bm25Params

# Unit vectors at hand-picked angles, so each query's cosine order can be read off.
PASSAGE_VECTORS = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8], [-1.0, 0.0]])
QUERY_VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])
# q0: 1, .8, .6, 0, -.6, -1          -> 0 1 2 3 4 5
# q1: 0, .6, .8, 1, .8, 0            -> 3, (2 4 tie: lower row first), 1, (0 5 tie)
# q2: -.6, 0, .28, .8, 1, .6         -> 4 3 5 2 1 0
TEACHER_ORDER = [[0, 1, 2, 3, 4, 5], [3, 2, 4, 1, 0, 5], [4, 3, 5, 2, 1, 0]]


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_teacher_candidates_in_teacher_score_order(depth):
    rows = teacher_candidates(QUERY_VECTORS, PASSAGE_VECTORS, depth)
    assert rows.shape == (3, depth)
    assert rows.tolist() == [order[:depth] for order in TEACHER_ORDER]


def test_teacher_candidates_deeper_than_the_pool_gives_the_whole_pool():
    rows = teacher_candidates(QUERY_VECTORS.astype(np.float16), PASSAGE_VECTORS.astype(np.float16), 50)
    assert rows.shape == (3, 6)
    assert rows[0].tolist() == TEACHER_ORDER[0]
    assert rows[2].tolist() == TEACHER_ORDER[2]


QIDS = np.array(["qa", "qb", "qc"], dtype=object)
PIDS = ["p0", "p1", "p2", "p3", "p4", "p5"]
RANKED = np.array(TEACHER_ORDER)


@pytest.mark.parametrize("hard", [1, 2, 4])
def test_candidate_triplets_pos_from_the_top_neg_from_the_rest(hard):
    positives, negatives = set(), set()
    for seed in range(30):
        triplets = candidate_triplets(QIDS, PIDS, RANKED, seed, hard=hard)
        assert list(triplets.columns) == ["qid", "pos_pid", "neg_pid"]
        assert list(triplets["qid"]) == ["qa", "qb", "qc"]
        for row, (qid, pos, neg) in zip(RANKED, triplets.itertuples(index=False)):
            top = {PIDS[r] for r in row[:hard]}
            assert pos in top, (qid, pos)
            assert neg in {PIDS[r] for r in row[hard:]}, (qid, neg)
        positives.add(triplets["pos_pid"].iloc[1])
        negatives.add(triplets["neg_pid"].iloc[1])
    # qb's ranking is p3 p2 p4 p1 p0 p5: over 30 seeds every place is drawn.
    assert positives == {PIDS[r] for r in RANKED[1, :hard]}
    assert negatives == {PIDS[r] for r in RANKED[1, hard:]}


def test_candidate_triplets_same_seed_same_pairs_other_seeds_others():
    a = candidate_triplets(QIDS, PIDS, RANKED, seed=5)
    pd.testing.assert_frame_equal(a, candidate_triplets(QIDS, PIDS, RANKED, seed=5))
    others = [candidate_triplets(QIDS, PIDS, RANKED, seed=s) for s in range(6, 16)]
    assert any(not a.equals(o) for o in others)


def test_candidate_triplets_two_columns_pair_the_best_with_the_second():
    ranked = np.array([[2, 0], [5, 4], [1, 3]])
    for seed in range(5):
        triplets = candidate_triplets(QIDS, PIDS, ranked, seed, hard=4)
        assert triplets.to_dict("list") == {"qid": ["qa", "qb", "qc"], "pos_pid": ["p2", "p5", "p1"],
                                            "neg_pid": ["p0", "p4", "p3"]}


@pytest.mark.parametrize("width", [0, 1])
def test_candidate_triplets_need_two_candidates(width):
    with pytest.raises(TwoTowerError, match="train.candidate_depth"):
        candidate_triplets(QIDS, PIDS, RANKED[:, :width], seed=0)


PASSAGES = pd.DataFrame({
    "pid": ["b1", "b2", "b3", "b4", "b5"],
    "text": ["the quick brown fox jumps", "a lazy dog sleeps all day", "the aardvark digs burrows at night",
             "brown bears eat fish", "foxes and dogs are mammals"],
})
QUERIES = pd.DataFrame({"qid": ["r1", "r2", "r3"],
                        "text": ["brown dog", "where does the aardvark live", "zebra"]})


@pytest.mark.parametrize("depth", [1, 3, 5, 10])
def test_bm25_candidates_shape_order_and_no_repeats(depth):
    rows = bm25_candidates(QUERIES, PASSAGES, Bm25Params(), depth)
    width = min(depth, len(PASSAGES))
    assert rows.shape == (3, width)
    assert rows.dtype == np.int64
    for row in rows:
        assert len(set(row.tolist())) == width
        assert set(row.tolist()) <= set(range(len(PASSAGES)))
    # "aardvark" is only in b3 (row 2): it ranks first for r2.
    assert rows[1, 0] == 2
    # r1's words are in b1, b2, b4 and b5 ("dogs" stems to "dog"), each once, with equal idf: the
    # shortest passage after stopwords wins, b5 (3 terms), then b1 and b4 (4, tie to the lower pid),
    # then b2 (5). b3 comes only as filler.
    assert rows[0, :4].tolist() == [4, 0, 3, 1][:width]
    pd.testing.assert_frame_equal(pd.DataFrame(rows), pd.DataFrame(bm25_candidates(QUERIES, PASSAGES, Bm25Params(), depth)))


def test_bm25_candidates_query_with_no_match_is_all_filler():
    rows = bm25_candidates(QUERIES.iloc[[2]], PASSAGES, Bm25Params(), 5)
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]
