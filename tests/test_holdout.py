import pandas as pd
import pytest

from twotower.errors import TwoTowerError
from twotower.data.holdout import add_distractors, hold_out, split_collection, trec_set_queries
from twotower.data.prepared import SplitTables

QUERIES = pd.DataFrame({"qid": ["q1", "q2", "q3", "q4", "q5"],
                        "text": ["one", "two", "three", "four", "five"]})
PASSAGES = pd.DataFrame({"pid": [f"p{i}" for i in range(1, 8)],
                         "text": [f"passage {i}" for i in range(1, 8)]})
QRELS = pd.DataFrame(
    [
        ("q1", "p1", 3), ("q1", "p2", 0), ("q1", "p7", 0),   # p7: judged by q1 alone
        ("q2", "p2", 2), ("q2", "p3", 1),
        ("q3", "p3", 0), ("q3", "p4", 2),
        ("q4", "p5", 1), ("q4", "p1", 0),                    # no selected passage: never held out
        ("q5", "p6", 2), ("q5", "p4", 1),                    # p6: judged by q5 alone
    ],
    columns=["qid", "pid", "relevance"],
)
QRELS["selected"] = QRELS["relevance"] >= 2
ELIGIBLE = {"q1", "q2", "q3", "q5"}
ALL_PIDS = set(PASSAGES["pid"])
# Worked out by hand for each query held out alone: (held-out pool, pool left to training).
# A passage leaves training only when no kept query judged it.
ONE_HELD = {
    "q1": ({"p1", "p2", "p7"}, ALL_PIDS - {"p7"}),
    "q2": ({"p2", "p3"}, ALL_PIDS),
    "q3": ({"p3", "p4"}, ALL_PIDS),
    "q5": ({"p4", "p6"}, ALL_PIDS - {"p6"}),
}


def train_split():
    return SplitTables(QUERIES.copy(), PASSAGES.copy(), QRELS.copy())


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_n_eligible_queries_held_out_and_the_rest_kept(n, seed):
    kept, held = hold_out(train_split(), n, seed)
    held_qids, kept_qids = list(held.queries["qid"]), list(kept.queries["qid"])
    assert len(held_qids) == n
    assert set(held_qids) <= ELIGIBLE
    assert set(held_qids).isdisjoint(kept_qids)
    assert sorted(held_qids + kept_qids) == ["q1", "q2", "q3", "q4", "q5"]
    assert "q4" in kept_qids
    # Both keep the original order of the queries.
    assert kept_qids == [q for q in QUERIES["qid"] if q in set(kept_qids)]
    assert held_qids == [q for q in QUERIES["qid"] if q in set(held_qids)]
    assert list(held.queries["text"]) == list(QUERIES.set_index("qid").loc[held_qids, "text"])


@pytest.mark.parametrize("seed", range(8))
def test_qrels_follow_their_queries(seed):
    kept, held = hold_out(train_split(), 2, seed)
    held_qids = set(held.queries["qid"])
    expected_held = QRELS[QRELS["qid"].isin(held_qids)].reset_index(drop=True)
    expected_kept = QRELS[~QRELS["qid"].isin(held_qids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(held.qrels, expected_held)
    pd.testing.assert_frame_equal(kept.qrels, expected_kept)
    assert len(held.qrels) + len(kept.qrels) == len(QRELS)


def test_pools_of_one_held_out_query_worked_out_by_hand():
    seen = set()
    for seed in range(40):
        kept, held = hold_out(train_split(), 1, seed)
        (qid,) = held.queries["qid"]
        seen.add(qid)
        held_pool, kept_pool = ONE_HELD[qid]
        assert list(held.passages["pid"]) == sorted(held_pool, key=lambda p: int(p[1:])), qid
        assert list(kept.passages["pid"]) == sorted(kept_pool, key=lambda p: int(p[1:])), qid
        # Texts travel with their pids.
        assert list(held.passages["text"]) == [f"passage {p[1:]}" for p in held.passages["pid"]]
    # Over 40 seeds every eligible query gets held out at some point, and q4 (nothing selected) never.
    assert seen == ELIGIBLE


def test_a_passage_judged_by_a_kept_and_a_held_query_is_in_both_pools():
    # p2 is judged by q1 and q2, p3 by q2 and q3: whichever of q1, q2, q3 leaves, they stay in training.
    for seed in range(40):
        kept, held = hold_out(train_split(), 1, seed)
        held_qid = held.queries["qid"].iloc[0]
        for pid, judges in [("p2", {"q1", "q2"}), ("p3", {"q2", "q3"}), ("p4", {"q3", "q5"})]:
            if held_qid in judges:
                assert pid in set(held.passages["pid"]) and pid in set(kept.passages["pid"]), (held_qid, pid)


def test_same_seed_same_choice_and_seeds_differ():
    a_kept, a_held = hold_out(train_split(), 2, seed=7)
    b_kept, b_held = hold_out(train_split(), 2, seed=7)
    pd.testing.assert_frame_equal(a_held.queries, b_held.queries)
    pd.testing.assert_frame_equal(a_kept.queries, b_kept.queries)
    pd.testing.assert_frame_equal(a_held.passages, b_held.passages)
    choices = {tuple(hold_out(train_split(), 2, seed)[1].queries["qid"]) for seed in range(40)}
    # 6 possible pairs of 4 eligible queries; the seed must move the choice.
    assert len(choices) > 1
    assert all(set(c) <= ELIGIBLE for c in choices)


def test_choice_does_not_depend_on_row_order():
    shuffled = SplitTables(QUERIES.iloc[::-1].reset_index(drop=True), PASSAGES.iloc[::-1].reset_index(drop=True),
                           QRELS.iloc[::-1].reset_index(drop=True))
    for seed in range(5):
        assert set(hold_out(shuffled, 2, seed)[1].queries["qid"]) == set(hold_out(train_split(), 2, seed)[1].queries["qid"])


@pytest.mark.parametrize("n", [4, 5, 100])
def test_holding_out_every_eligible_query_is_an_error_naming_the_param(n):
    with pytest.raises(TwoTowerError, match="data.val_queries") as info:
        hold_out(train_split(), n, seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert f"{n} is not below the 4 " in message


def test_three_of_four_eligible_queries_can_be_held_out():
    kept, held = hold_out(train_split(), 3, seed=0)
    assert len(held.queries) == 3
    # One eligible query stays, and q4.
    assert len(set(kept.queries["qid"]) & ELIGIBLE) == 1


def test_add_distractors_adds_only_new_pids_and_keeps_qrels():
    _, held = hold_out(train_split(), 1, seed=0)
    pool = set(held.passages["pid"])
    present = sorted(pool)[0]
    distractors = pd.DataFrame({"pid": ["d1", present, "d2"],
                                "text": ["distractor one", "another text for a judged pid", "distractor two"],
                                "source": ["c", "c", "c"]})
    out = add_distractors(held, distractors)
    assert list(out.passages.columns) == ["pid", "text"]
    assert list(out.passages["pid"]) == [*held.passages["pid"], "d1", "d2"]
    assert list(out.passages["text"]) == [*held.passages["text"], "distractor one", "distractor two"]
    # The judged passage keeps its own text, not the distractor's.
    assert out.passages.set_index("pid").loc[present, "text"] == held.passages.set_index("pid").loc[present, "text"]
    pd.testing.assert_frame_equal(out.qrels, held.qrels)
    pd.testing.assert_frame_equal(out.queries, held.queries)


def test_add_distractors_all_present_changes_nothing():
    tables = train_split()
    out = add_distractors(tables, PASSAGES.iloc[:3].assign(text="other"))
    pd.testing.assert_frame_equal(out.passages, PASSAGES)
    pd.testing.assert_frame_equal(out.qrels, QRELS)


COLLECTION = pd.DataFrame({"pid": ["c1", "c2", "c3", "c4", "c5", "c6"],
                           "text": ["apple pie recipe", "car engine oil", "apple orchard", "weather today",
                                    "engine repair", "apple car"]})


@pytest.mark.parametrize("n", [0, 1, 2, 4, 10])
def test_split_collection_takes_distractors_from_the_neighbours_first_and_never_trains_on_them(n):
    neighbours = COLLECTION.iloc[[5, 1]].reset_index(drop=True)  # c6, c2
    distractors, training = split_collection(COLLECTION, neighbours, n)
    assert list(distractors["pid"]) == ["c6", "c2", "c1", "c3", "c4", "c5"][:n]
    assert not {"c6", "c2"} & set(training["pid"])
    assert list(training["pid"]) == [p for p in ["c1", "c3", "c4", "c5"] if p not in set(distractors["pid"])]
    assert list(training.index) == list(range(len(training)))
    distractors, training = split_collection(COLLECTION, neighbours.iloc[:0], n)
    assert list(distractors["pid"]) + list(training["pid"]) == list(COLLECTION["pid"])


@pytest.mark.parametrize("seed", range(8))
def test_held_out_queries_come_from_among_only(seed):
    kept, held = hold_out(train_split(), 2, seed, among={"q2", "q3", "q4"})
    # q4 has no relevant passage, so q2 and q3 are the only two that can be held out.
    assert sorted(held.queries["qid"]) == ["q2", "q3"]
    assert sorted(kept.queries["qid"]) == ["q1", "q4", "q5"]


def test_among_may_give_up_all_its_queries_while_others_stay_for_training():
    kept, held = hold_out(train_split(), 3, seed=0, among={"q1", "q3", "q5"})
    assert sorted(held.queries["qid"]) == ["q1", "q3", "q5"]
    with pytest.raises(TwoTowerError, match=r"data.val_queries: 3 is more than the 2 .*data.val_trec_set"):
        hold_out(train_split(), 3, seed=0, among={"q1", "q3", "q4"})


def test_among_none_holds_out_what_it_always_did():
    for seed in range(8):
        assert (list(hold_out(train_split(), 2, seed, among=None)[1].queries["qid"])
                == list(hold_out(train_split(), 2, seed)[1].queries["qid"]))
        assert (set(hold_out(train_split(), 2, seed, among=set(QUERIES["qid"]))[1].queries["qid"])
                == set(hold_out(train_split(), 2, seed)[1].queries["qid"]))


def write_train(raw, sets=None):
    rows = {"query_id": [1, 2, 3], "query": ["a", "b", "c"],
            "passages": [{"is_selected": [1], "passage_text": ["x"]}] * 3}
    if sets is not None:
        rows["trec_set"] = sets
    raw.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_parquet(raw / "train.parquet")
    return raw


def test_trec_set_queries_reads_the_raw_rows_sets(tmp_path):
    raw = write_train(tmp_path / "raw", ["dl20", "dl21", "dl20"])
    assert trec_set_queries(raw, "dl20") == {"1", "3"}
    assert trec_set_queries(raw, "dl21") == {"2"}
    assert trec_set_queries(raw, "all") is None


def test_an_unknown_trec_set_names_the_sets_there_are(tmp_path):
    raw = write_train(tmp_path / "raw", ["dl20", "dl21", "dl20"])
    with pytest.raises(TwoTowerError) as info:
        trec_set_queries(raw, "dl19")
    assert str(info.value) == ("data.val_trec_set: 'dl19' is not a TREC-DL set of the train split; it has dl20, dl21 "
                               "(or use 'all')")


def test_rows_without_sets_hold_out_from_every_query_with_a_note(tmp_path, capsys):
    raw = write_train(tmp_path / "raw")
    assert trec_set_queries(raw, "dl20") is None
    assert "names no TREC-DL sets" in capsys.readouterr().out
