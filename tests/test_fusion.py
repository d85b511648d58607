"""Run fusion on two tiny runs whose fused scores were worked out by hand.

Run A ranks a1 a2 s a3 (scores 4 3 2 1); run B ranks s a1 b1 (scores 10 6 2) and alone
answers q2. a2 and a3 are only in A, b1 only in B: they must still be fused.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twotower.errors import TwoTowerError
from twotower.retrieval.fusion import fuse, fuse_query, min_max, rrf, weighted
from twotower.params import HybridParams, section_from_dict


def run_frame(rows):
    return pd.DataFrame(rows, columns=["qid", "pid", "rank", "score"])


RUN_A = run_frame([("q1", "a1", 1, 4.0), ("q1", "a2", 2, 3.0), ("q1", "s", 3, 2.0), ("q1", "a3", 4, 1.0)])
RUN_B = run_frame([("q1", "s", 1, 10.0), ("q1", "a1", 2, 6.0), ("q1", "b1", 3, 2.0), ("q2", "b2", 1, 0.5)])


def order(run, qid="q1"):
    part = run[run["qid"] == qid]
    assert part["rank"].tolist() == list(range(1, len(part) + 1))
    return part["pid"].tolist()


def scores(run, qid="q1"):
    return dict(zip(run.loc[run["qid"] == qid, "pid"], run.loc[run["qid"] == qid, "score"]))


def test_rrf_worked_out_by_hand():
    fused = rrf(RUN_A, RUN_B, k=60)
    assert order(fused) == ["a1", "s", "a2", "b1", "a3"]
    assert scores(fused) == pytest.approx({"a1": 1 / 61 + 1 / 62, "s": 1 / 63 + 1 / 61, "a2": 1 / 62,
                                           "b1": 1 / 63, "a3": 1 / 64})
    assert order(fused, "q2") == ["b2"] and scores(fused, "q2") == pytest.approx({"b2": 1 / 61})


def test_rrf_takes_ranks_from_scores_not_row_order_or_rank_column():
    shuffled = RUN_A.sample(frac=1, random_state=0).assign(rank=[9, 9, 9, 9])
    pd.testing.assert_frame_equal(rrf(shuffled, RUN_B), rrf(RUN_A, RUN_B))


def test_rrf_k_changes_the_balance():
    fused = rrf(RUN_A, RUN_B, k=0)
    assert scores(fused) == pytest.approx({"a1": 1 + 1 / 2, "s": 1 / 3 + 1, "a2": 1 / 2, "b1": 1 / 3, "a3": 1 / 4})


def test_weighted_half_and_half_worked_out_by_hand():
    """min-max: A a1 1, a2 2/3, s 1/3, a3 0; B s 1, a1 1/2, b1 0; a passage absent from a run gets 0."""
    fused = weighted(RUN_A, RUN_B, weight=0.5)
    assert scores(fused) == pytest.approx({"a1": 0.75, "s": 2 / 3, "a2": 1 / 3, "a3": 0.0, "b1": 0.0})
    assert order(fused) == ["a1", "s", "a2", "a3", "b1"]
    assert order(fused, "q2") == ["b2"]


def test_weight_one_is_first_runs_order_and_zero_the_seconds():
    assert order(weighted(RUN_A, RUN_B, weight=1.0)) == ["a1", "a2", "s", "a3", "b1"]
    assert order(weighted(RUN_A, RUN_B, weight=0.0)) == ["s", "a1", "b1", "a2", "a3"]


def test_weighted_leans_towards_the_heavier_run():
    assert order(weighted(RUN_A, RUN_B, weight=0.8))[0] == "a1"
    assert order(weighted(RUN_A, RUN_B, weight=0.2))[0] == "s"


def test_min_max_per_query_and_constant_scores():
    run = run_frame([("q1", "x", 1, 5.0), ("q1", "y", 2, 1.0), ("q2", "z", 1, 7.0), ("q2", "w", 2, 7.0)])
    assert min_max(run, "score").tolist() == [1.0, 0.0, 1.0, 1.0]


def test_depth_cuts_each_query():
    fused = rrf(RUN_A, RUN_B, k=60, depth=2)
    assert order(fused) == ["a1", "s"] and order(fused, "q2") == ["b2"]


def test_fuse_follows_params():
    pd.testing.assert_frame_equal(fuse(RUN_A, RUN_B, HybridParams(method="rrf", rrf_k=10)), rrf(RUN_A, RUN_B, 10))
    pd.testing.assert_frame_equal(fuse(RUN_A, RUN_B, HybridParams(method="weighted", weight=0.7)),
                                  weighted(RUN_A, RUN_B, 0.7))


def test_duplicate_passage_in_a_run_is_an_error():
    doubled = pd.concat([RUN_A, RUN_A.head(1)])
    with pytest.raises(TwoTowerError, match="twice for query q1"):
        rrf(doubled, RUN_B)


@pytest.mark.parametrize("name,value", [("method", "sum"), ("rrf_k", -1), ("rrf_k", 60.5),
                                        ("weight", 1.5), ("weight", "0.5"), ("depth", 10)])
def test_bad_hybrid_params_fail_naming_param_and_value(name, value):
    with pytest.raises(TwoTowerError, match=rf"^hybrid\.{name}: {value!r} is not "):
        section_from_dict("hybrid", {name: value})


def _one_query_run(draw_pids, draw_scores):
    return pd.DataFrame({"qid": "q", "pid": draw_pids, "score": draw_scores})


@settings(max_examples=300, deadline=None)
@given(data=st.data(), method=st.sampled_from(["weighted", "rrf"]),
       weight=st.sampled_from([0.0, 0.3, 0.5, 0.6, 1.0]), depth=st.integers(1, 12))
def test_fuse_query_gives_the_rows_fuse_gives(data, method, weight, depth):
    pool = [f"p{i}" for i in range(12)]
    pids_a = data.draw(st.lists(st.sampled_from(pool), unique=True, max_size=10))
    pids_b = data.draw(st.lists(st.sampled_from(pool), unique=True, max_size=10))
    scores = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.25])  # few values: many ties
    scores_a = data.draw(st.lists(scores, min_size=len(pids_a), max_size=len(pids_a)))
    scores_b = data.draw(st.lists(scores, min_size=len(pids_b), max_size=len(pids_b)))
    params = dataclasses.replace(HybridParams(method=method, weight=weight), depth=depth)  # a cut inside the runs
    expected = fuse(_one_query_run(pids_a, scores_a), _one_query_run(pids_b, scores_b), params)
    pids, fused = fuse_query(np.array(pids_a, dtype=object), np.array(scores_a), np.array(pids_b, dtype=object),
                             np.array(scores_b), params)
    assert pids.tolist() == expected["pid"].tolist()
    np.testing.assert_allclose(fused, expected["score"].to_numpy(), rtol=1e-12)
    rank = {pid: i for i, pid in enumerate(sorted(pool))}  # integers in pid order, as a server passes them
    keys, fused_keys = fuse_query(np.array([rank[p] for p in pids_a], dtype=np.int64), np.array(scores_a),
                                  np.array([rank[p] for p in pids_b], dtype=np.int64), np.array(scores_b), params)
    assert [sorted(pool)[key] for key in keys] == pids.tolist()
    np.testing.assert_array_equal(fused_keys, fused)
