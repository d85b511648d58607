from dataclasses import replace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twotower.errors import TwoTowerError
from twotower.data.prepared import SplitTables
from twotower.data.prepared import load_split
from twotower.data.unlabelled import exclude, exclude_passages, read_real_queries, real_query_split, sample

from tiny_data import make_tiny_msmarco


def write_queries(folder, **columns):
    pq.write_table(pa.table(columns), folder / "queries.parquet")


def split_of(qids, texts):
    return SplitTables(pd.DataFrame({"qid": qids, "text": texts}),
                       pd.DataFrame({"pid": [], "text": []}),
                       pd.DataFrame({"qid": [], "pid": [], "relevance": [], "selected": []}))


def test_read_real_queries_cleans_and_drops_blank_and_repeated(tmp_path):
    write_queries(
        tmp_path,
        query_id=pa.array([11, 12, 13, 14, 15, 12, 16, 13], pa.int64()),
        query=["what is dvc", "", "   ", None, "  how\tdo  trees grow \n", "repeat of 12", "lstm vs gru",
               "13 again, now with text"],
        source=["a", "a", "b", "b", "a", "a", "b", "b"],
    )
    queries = read_real_queries(tmp_path)
    assert list(queries.columns) == ["qid", "text"]
    # 12's first row is blank so its second row is the one kept; 13's blank row goes, its later row stays.
    assert queries.to_dict("list") == {
        "qid": ["11", "15", "12", "16", "13"],
        "text": ["what is dvc", "how do trees grow", "repeat of 12", "lstm vs gru", "13 again, now with text"],
    }
    assert all(type(q) is str for q in queries["qid"])
    assert all(type(t) is str for t in queries["text"])
    assert list(queries.index) == [0, 1, 2, 3, 4]


def test_read_real_queries_first_of_a_repeated_id_wins(tmp_path):
    write_queries(tmp_path, query_id=["a1", "a2", "a1"], query=["first", "second", "third"])
    assert read_real_queries(tmp_path).to_dict("list") == {"qid": ["a1", "a2"], "text": ["first", "second"]}


def test_read_real_queries_without_the_file_is_none(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"")
    assert read_real_queries(tmp_path) is None


@pytest.mark.parametrize(("columns", "named"), [
    ({"query_id": [1, 2], "text": ["a", "b"]}, "query"),
    ({"id": [1, 2], "query": ["a", "b"]}, "query_id"),
])
def test_read_real_queries_missing_column_is_named(tmp_path, columns, named):
    write_queries(tmp_path, **columns)
    with pytest.raises(TwoTowerError) as info:
        read_real_queries(tmp_path)
    message = str(info.value)
    assert message.endswith(f"missing column(s) {named}")
    assert str(tmp_path / "queries.parquet") in message
    assert "\n" not in message


def test_read_real_queries_drops_a_null_id_and_leaves_other_ids_as_written(tmp_path):
    write_queries(tmp_path, query_id=pa.array([11, None, 13], pa.int64()), query=["a", "b", "c"])
    queries = read_real_queries(tmp_path)
    assert queries.to_dict("list") == {"qid": ["11", "13"], "text": ["a", "c"]}


def test_exclude_by_id_and_by_case_and_space_insensitive_text():
    real = pd.DataFrame({"qid": ["1", "2", "3", "4", "5", "6"],
                         "text": ["what is dvc", "Train Query", "kept one", "a validation query",
                                  "kept too", "kept two"]})
    train = split_of(["20", "100"], ["some other text", "  TRAIN query "])
    validation = split_of(["4"], ["unrelated"])
    test = split_of(["200"], ["WHAT IS DVC"])
    out = exclude(real, train, validation, test)
    # 1 and 2 by their text (other ids), 4 by its id (other text).
    assert out.to_dict("list") == {"qid": ["3", "5", "6"], "text": ["kept one", "kept too", "kept two"]}
    assert list(out.index) == [0, 1, 2]


def test_exclude_with_nothing_in_common_keeps_all():
    real = pd.DataFrame({"qid": ["1", "2"], "text": ["alpha", "beta"]})
    pd.testing.assert_frame_equal(exclude(real, split_of(["9"], ["gamma"])), real)


def pool_of(pids, texts):
    return SplitTables(pd.DataFrame({"qid": [], "text": []}), pd.DataFrame({"pid": pids, "text": texts}),
                       pd.DataFrame({"qid": [], "pid": [], "relevance": [], "selected": []}))


def test_exclude_passages_by_id_and_by_text_keeping_order():
    collection = pd.DataFrame({"pid": ["c5", "c1", "v1", "c3", "c4"],
                               "text": ["five", "the test passage ", "anything", "three", "four"]})
    validation = pool_of(["v1", "v2"], ["a validation passage", "four"])
    test = pool_of(["t1"], ["the test passage"])
    out = exclude_passages(collection, validation, test)
    # v1 by its id, c1 and c4 by their text (other ids, spaces aside).
    assert out.to_dict("list") == {"pid": ["c5", "c3"], "text": ["five", "three"]}
    assert list(out.index) == [0, 1]
    pd.testing.assert_frame_equal(exclude_passages(collection), collection)


def test_subsample_keeps_validation_and_test_passages_out_of_the_unlabelled_ones(tmp_path):
    """The collection holds passages of the validation and test pools (the real one holds
    most of the held-out TREC-DL queries' judged passages): none of them may become a real
    query's candidate or a distractor, whatever the split it came from."""
    import yaml

    from stages import subsample

    raw = make_tiny_msmarco(tmp_path / "raw", n_real=12)
    train = pq.read_table(raw / "train.parquet").to_pylist()
    test = pq.read_table(raw / "test.parquet").to_pylist()
    copies = ([(str(pid), text) for row in train for pid, text in zip(row["passages"]["passage_id"],
                                                                       row["passages"]["passage_text"])]
              + [(f"copy{i}", text) for i, row in enumerate(test) for text in row["passages"]["passage_text"][:2]])
    collection = pq.read_table(raw / "collection.parquet").to_pandas()
    collection = pd.concat([collection, pd.DataFrame(copies, columns=["passage_id", "passage_text"])],
                           ignore_index=True)
    collection.to_parquet(raw / "collection.parquet", index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"raw_dir": str(raw), "val_queries": 4, "val_distractors": 20,
                                               "real_queries": 12, "candidate_passages": 100_000}}))
    out = tmp_path / "prepared"
    subsample.main(["--params", str(params), "--out", str(out)])

    validation, test_split, real = (load_split(out, name) for name in ("validation", "test", "real"))
    judged = set(validation.qrels["pid"])
    held_out_texts = set(validation.passages.loc[validation.passages["pid"].isin(judged), "text"])
    test_texts = set(test_split.passages["text"])
    distractors = validation.passages[~validation.passages["pid"].isin(judged)]
    assert len(distractors) == 20 and len(real.passages) > 0
    for unlabelled in (distractors, real.passages):
        assert not set(unlabelled["pid"]) & (judged | set(test_split.passages["pid"]))
        assert not set(unlabelled["text"]) & (held_out_texts | test_texts)
    # Train passages are not held out: the kept training queries' copies are still candidates.
    assert set(real.passages["pid"]) & set(load_split(out, "train").passages["pid"])


def test_sample_at_least_len_keeps_all_in_order():
    frame = pd.DataFrame({"qid": list("abcd"), "text": list("wxyz")}, index=[7, 3, 5, 1])
    for n in (4, 10):
        out = sample(frame, n, seed=0)
        assert out.to_dict("list") == {"qid": list("abcd"), "text": list("wxyz")}
        assert list(out.index) == [0, 1, 2, 3]


def test_sample_n_rows_in_original_order_per_seed():
    frame = pd.DataFrame({"qid": [f"q{i}" for i in range(20)], "text": [f"t{i}" for i in range(20)]})
    picks = []
    for seed in range(10):
        out = sample(frame, 5, seed)
        rows = [int(q[1:]) for q in out["qid"]]
        assert len(rows) == 5 and len(set(rows)) == 5
        assert rows == sorted(rows)
        assert list(out["text"]) == [f"t{r}" for r in rows]
        assert list(out.index) == [0, 1, 2, 3, 4]
        pd.testing.assert_frame_equal(out, sample(frame, 5, seed))
        picks.append(tuple(rows))
    assert len(set(picks)) > 1


def test_real_query_split_has_empty_qrels_and_unique_passages():
    queries = pd.DataFrame({"qid": ["r1", "r2"], "text": ["a query", "another"], "extra": [1, 2]}, index=[4, 9])
    candidates = pd.DataFrame({"pid": ["p1", "p2", "p1", "p3"], "text": ["one", "two", "one again", "three"],
                               "source": ["x", "x", "x", "x"]})
    split = real_query_split(queries, candidates)
    assert split.queries.to_dict("list") == {"qid": ["r1", "r2"], "text": ["a query", "another"]}
    assert list(split.queries.index) == [0, 1]
    assert split.passages.to_dict("list") == {"pid": ["p1", "p2", "p3"], "text": ["one", "two", "three"]}
    assert list(split.passages.index) == [0, 1, 2]
    assert len(split.qrels) == 0
    assert list(split.qrels.columns) == ["qid", "pid", "relevance", "selected"]
    assert split.qrels["relevance"].dtype == "int32"
    assert split.qrels["selected"].dtype == bool


@pytest.mark.parametrize("distractors", [0, 3, 1000])
def test_subsample_never_trains_on_the_held_out_queries_bm25_neighbours(tmp_path, distractors):
    """The collection holds the held-out queries' unjudged pool passages: each query's top
    `val_neighbours` collection passages by BM25 may be validation distractors (taken first)
    but never a real query's candidate; with `val_neighbours: 0` they are candidates again."""
    import yaml

    from stages import subsample
    from twotower.params import Bm25Params
    from twotower.retrieval.bm25 import bm25_run

    raw = make_tiny_msmarco(tmp_path / "raw", n_real=12)
    out = {}
    for depth in (0, 3):
        params = tmp_path / f"params{depth}.yaml"
        params.write_text(yaml.safe_dump({"data": {
            "raw_dir": str(raw), "val_queries": 4, "val_distractors": distractors, "val_neighbours": depth,
            "real_queries": 12, "candidate_passages": 100_000}}))
        subsample.main(["--params", str(params), "--out", str(tmp_path / f"prepared{depth}")])
        out[depth] = {name: load_split(tmp_path / f"prepared{depth}", name) for name in ("validation", "real")}

    validation = out[3]["validation"]
    collection = pq.read_table(raw / "collection.parquet").to_pandas().rename(
        columns={"passage_id": "pid", "passage_text": "text"})
    run = bm25_run(validation.queries, collection, replace(Bm25Params(), depth=3))
    neighbours = set(run["pid"])
    assert neighbours and len(validation.queries) == 4
    assert not neighbours & set(out[3]["real"].passages["pid"])
    if distractors < len(neighbours):
        assert neighbours & set(out[0]["real"].passages["pid"])  # the check above can fail
    distractor_pids = set(validation.passages["pid"]) - set(validation.qrels["pid"])
    assert len(distractor_pids) == min(distractors, len(collection))
    if distractors >= len(neighbours):
        assert neighbours <= distractor_pids
    else:
        assert distractor_pids < neighbours
    # Neither run loses a collection passage it did not have to: all but the distractors are candidates.
    for depth in (0, 3):
        left = len(collection) - len(distractor_pids) - (len(neighbours - distractor_pids) if depth else 0)
        assert len(out[depth]["real"].passages) == left
