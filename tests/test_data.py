import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_data import make_tiny_msmarco, msmarco_table

from twotower.data.prepare import keep_fraction, prepare_split, read_split
from twotower.errors import TwoTowerError
from twotower.data.prepared import PASSAGES_SCHEMA, QRELS_SCHEMA, QUERIES_SCHEMA, load_split, write_split


def raw_rows(folder, split):
    return pq.read_table(folder / f"{split}.parquet").to_pylist()


def write_rows(folder, split, rows, graded=False):
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(msmarco_table(rows, graded), folder / f"{split}.parquet")
    return folder


def row(qid, query, texts, selected, **extra):
    return {"query_id": qid, "query": query,
            "passages": {"is_selected": selected, "passage_text": texts, "url": ["u"] * len(texts), **extra}}


def test_tiny_data_is_deterministic_and_shaped_like_hf(tmp_path, tiny_raw):
    again = make_tiny_msmarco(tmp_path / "again")
    for name in ("train", "validation", "test", "collection"):
        assert pq.read_table(again / f"{name}.parquet").equals(pq.read_table(tiny_raw / f"{name}.parquet"))
    other = make_tiny_msmarco(tmp_path / "other", seed=1)
    assert not pq.read_table(other / "train.parquet").equals(pq.read_table(tiny_raw / "train.parquet"))

    graded = pq.read_schema(tiny_raw / "train.parquet").field("passages").type
    plain = pq.read_schema(tiny_raw / "validation.parquet").field("passages").type
    assert [graded.field(i).name for i in range(graded.num_fields)] == [
        "is_selected", "passage_text", "url", "passage_id", "relevance"]
    assert [plain.field(i).name for i in range(plain.num_fields)] == ["is_selected", "passage_text", "url"]
    assert plain.field("is_selected").type == pa.list_(pa.int32())
    assert pq.read_schema(tiny_raw / "train.parquet").field("query_id").type == pa.int64()

    train_pids = {p for r in raw_rows(tiny_raw, "train") for p in r["passages"]["passage_id"]}
    test_pids = {p for r in raw_rows(tiny_raw, "test") for p in r["passages"]["passage_id"]}
    assert len(test_pids) >= 60 and not train_pids & test_pids


def test_read_split_normalises_graded_rows(tiny_raw):
    tables = read_split(tiny_raw, "train")
    assert list(tables.queries.columns) == ["qid", "text"]
    assert list(tables.passages.columns) == ["pid", "text"]
    assert list(tables.qrels.columns) == ["qid", "pid", "relevance", "selected"]

    rows = raw_rows(tiny_raw, "train")
    assert tables.queries.values.tolist() == [[str(r["query_id"]), r["query"]] for r in rows]
    expected_qrels = {
        (str(r["query_id"]), pid, rel, rel >= 2)
        for r in rows
        for pid, rel in zip(r["passages"]["passage_id"], r["passages"]["relevance"])
    }
    assert set(tables.qrels.itertuples(index=False, name=None)) == expected_qrels
    assert len(tables.qrels) == len(expected_qrels)
    expected_passages = {
        (pid, text) for r in rows for pid, text in zip(r["passages"]["passage_id"], r["passages"]["passage_text"])
    }
    assert set(tables.passages.itertuples(index=False, name=None)) == expected_passages
    assert tables.passages["pid"].is_unique
    assert sum(tables.dropped.values()) == 0


def test_validation_pids_are_stable_text_hashes(tiny_raw, tmp_path):
    tables = read_split(tiny_raw, "validation")
    # Without passage_id, relevance is is_selected.
    assert (tables.qrels["relevance"] == tables.qrels["selected"].astype(int)).all()
    texts = tables.passages.set_index("pid")["text"]
    assert texts.index.is_unique and texts.is_unique
    # Shared negatives appear under several queries, always with one pid.
    slots = [(r["query_id"], t) for r in raw_rows(tiny_raw, "validation") for t in r["passages"]["passage_text"]]
    assert len({t for _, t in slots}) < len(slots)
    assert len(tables.passages) == len({t for _, t in slots})
    # The same text in another file, row and position gets the same pid.
    text = texts.iloc[5]
    folder = write_rows(tmp_path / "raw", "validation", [row(99, "lake", ["other words", text], [0, 1])])
    again = read_split(folder, "validation")
    assert again.passages.set_index("text").loc[text, "pid"] == texts.index[5]
    assert again.passages.set_index("text").loc["other words", "pid"] not in set(texts.index)


def test_hugging_face_shards(tiny_raw, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(tiny_raw / "train.parquet", one / "train-00000-of-00001.parquet")
    expected = read_split(tiny_raw, "train")
    found = read_split(one, "train")
    pd.testing.assert_frame_equal(found.queries, expected.queries)
    pd.testing.assert_frame_equal(found.qrels, expected.qrels)

    two = tmp_path / "two"
    two.mkdir()
    table = pq.read_table(tiny_raw / "train.parquet")
    pq.write_table(table.slice(0, 10), two / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(10), two / "train-00001-of-00002.parquet")
    found = read_split(two, "train")
    pd.testing.assert_frame_equal(found.queries, expected.queries)
    pd.testing.assert_frame_equal(found.passages, expected.passages)


def test_missing_split_and_missing_folder(tiny_raw, tmp_path):
    with pytest.raises(TwoTowerError, match="no 'dev' split"):
        read_split(tiny_raw, "dev")
    with pytest.raises(TwoTowerError, match="raw data folder not found"):
        read_split(tmp_path / "absent", "train")


@pytest.mark.parametrize("column", ["query", "passages"])
def test_missing_column(tiny_raw, tmp_path, column):
    table = pq.read_table(tiny_raw / "train.parquet").drop_columns([column])
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(TwoTowerError, match=rf"missing column\(s\) {column};"):
        read_split(tmp_path, "train")


def test_passages_not_a_struct(tmp_path):
    pq.write_table(pa.table({"query_id": [1], "query": ["lake"], "passages": ["a passage"]}),
                   tmp_path / "train.parquet")
    with pytest.raises(TwoTowerError, match="column 'passages' is string, expected a struct"):
        read_split(tmp_path, "train")


def test_passages_missing_a_field(tmp_path):
    passages = pa.array([{"passage_text": ["x"]}], pa.struct([("passage_text", pa.list_(pa.string()))]))
    pq.write_table(pa.table({"query_id": [1], "query": ["lake"], "passages": passages}), tmp_path / "train.parquet")
    with pytest.raises(TwoTowerError, match="passages is missing field.*is_selected"):
        read_split(tmp_path, "train")


def test_not_parquet(tmp_path):
    (tmp_path / "train.parquet").write_text("query_id,query\n1,lake\n")
    with pytest.raises(TwoTowerError, match="not a readable parquet file"):
        read_split(tmp_path, "train")


@pytest.fixture(scope="module")
def many_queries(tmp_path_factory):
    return make_tiny_msmarco(tmp_path_factory.mktemp("many"), n_train=300)


def qids(folder, fraction, seed):
    return set(read_split(folder, "train", fraction=fraction, seed=seed).queries["qid"])


def test_subsample_share_seed_and_subsets(many_queries):
    everything = qids(many_queries, 1.0, 0)
    assert len(everything) == 300
    small, large = qids(many_queries, 0.2, 7), qids(many_queries, 0.5, 7)
    assert 30 <= len(small) <= 90 and 110 <= len(large) <= 190
    assert small < large < everything
    assert qids(many_queries, 0.5, 7) == large
    assert qids(many_queries, 0.5, 8) != large


def test_subsample_keeps_all_rows_of_kept_queries(many_queries):
    tables = read_split(many_queries, "train", fraction=0.3, seed=1)
    kept = set(tables.queries["qid"])
    assert set(tables.qrels["qid"]) == kept
    assert tables.qrels.groupby("qid").size().eq(8).all()
    assert set(tables.passages["pid"]) == set(tables.qrels["pid"])


def test_keep_fraction_does_not_depend_on_other_queries():
    ids = pd.Series([str(i) for i in range(200)])
    mask = keep_fraction(ids, 0.4, seed=3)
    assert (keep_fraction(ids[::-1].reset_index(drop=True), 0.4, seed=3) == mask[::-1]).all()
    assert (keep_fraction(ids[:50], 0.4, seed=3) == mask[:50]).all()


def test_query_without_selected_passage_is_dropped_and_counted(tmp_path):
    folder = write_rows(tmp_path, "train", [
        row(1, "lake water", ["lake water fish", "bank loan"], [1, 0]),
        row(2, "bank loan", ["lake water fish", "bank loan"], [0, 0]),
    ])
    tables = read_split(folder, "train")
    assert tables.queries["qid"].tolist() == ["1"]
    assert set(tables.qrels["qid"]) == {"1"}
    assert tables.dropped["queries with no selected passage"] == 1


def test_no_query_with_a_selected_passage_is_an_error(tmp_path):
    folder = write_rows(tmp_path, "train", [row(1, "lake", ["lake water"], [0])])
    with pytest.raises(TwoTowerError, match="no query has a selected passage"):
        read_split(folder, "train")


def test_duplicate_qid_with_different_text_is_an_error(tmp_path):
    folder = write_rows(tmp_path, "train", [
        row(7, "lake water", ["lake water fish"], [1]),
        row(7, "bank loan", ["bank loan cash"], [1]),
    ])
    with pytest.raises(TwoTowerError, match="query id 7 appears with different texts"):
        read_split(folder, "train")


def test_duplicate_qid_with_same_text_is_merged(tmp_path):
    folder = write_rows(tmp_path, "train", [
        row(7, "lake water", ["lake water fish"], [1]),
        row(7, "lake water", ["lake water fish", "river boat"], [0, 0]),
    ])
    tables = read_split(folder, "train")
    assert tables.queries["qid"].tolist() == ["7"]
    pid_of = tables.passages.set_index("text")["pid"]
    selected = tables.qrels.set_index("pid")["selected"]
    assert len(selected) == 2
    assert selected[pid_of["lake water fish"]] and not selected[pid_of["river boat"]]


def test_rows_with_passage_lists_of_different_lengths_are_dropped(tmp_path):
    good = row(1, "lake water", ["lake water fish", "bank loan"], [1, 0])
    bad = row(2, "bank loan", ["bank loan cash", "lake fish", "snow rain"], [1, 0])  # 2 flags, 3 texts
    folder = write_rows(tmp_path, "train", [good, bad])
    written = pq.read_table(folder / "train.parquet").column("passages").to_pylist()
    assert len(written[1]["is_selected"]) != len(written[1]["passage_text"])
    tables = read_split(folder, "train")
    assert tables.queries["qid"].tolist() == ["1"]
    assert tables.dropped["rows whose passage lists differ in length"] == 1
    assert "bank loan cash" not in set(tables.passages["text"])


def test_text_is_cleaned_and_empty_passages_dropped(tmp_path):
    folder = write_rows(tmp_path, "train", [
        row(1, "  lake\t water\x00 ", ["lake \n\n water", "", None], [1, 0, 0]),
    ])
    tables = read_split(folder, "train")
    assert tables.queries["text"].tolist() == ["lake water"]
    assert tables.passages["text"].tolist() == ["lake water"]
    assert tables.dropped["empty or missing passage texts"] == 2


def test_empty_split_file_is_a_twotower_error(tmp_path):
    folder = write_rows(tmp_path, "train", [])
    with pytest.raises(TwoTowerError):
        read_split(folder, "train")


def test_write_and_load_split_round_trip(tiny_raw, tmp_path):
    tables = read_split(tiny_raw, "test")
    write_split(tables, tmp_path / "test")
    loaded = load_split(tmp_path, "test")
    pd.testing.assert_frame_equal(loaded.queries, tables.queries)
    pd.testing.assert_frame_equal(loaded.passages, tables.passages)
    pd.testing.assert_frame_equal(loaded.qrels, tables.qrels)
    with pytest.raises(TwoTowerError) as err:
        load_split(tmp_path, "train")
    missing = tmp_path / "train" / "queries.parquet"
    assert str(err.value) == f"prepared split missing: {missing} (run the subsample stage)"


def assert_same_tables(found, expected):
    pd.testing.assert_frame_equal(found.queries, expected.queries)
    pd.testing.assert_frame_equal(found.passages, expected.passages)
    pd.testing.assert_frame_equal(found.qrels, expected.qrels)
    assert +found.dropped == +expected.dropped and +found.cleaned == +expected.cleaned


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_output_does_not_depend_on_batch_size(tiny_raw, split):
    # validation reuses negatives across queries: de-duplication has to work across batches.
    whole = read_split(tiny_raw, split, batch_size=100_000)
    for batch_size in (1, 3):
        assert_same_tables(read_split(tiny_raw, split, batch_size=batch_size), whole)


def test_duplicates_across_batches_are_merged_in_first_appearance_order(tmp_path):
    folder = write_rows(tmp_path, "train", [
        row(1, "lake water", ["shared text", "lake one"], [0, 1]),
        row(2, "bank loan", ["bank one", "shared text"], [0, 0]),        # no positive: dropped
        row(3, "river boat", ["river one", "bank one", "shared text"], [1, 0, 0]),
        row(1, "lake water", ["lake two", "shared text"], [0, 1]),       # qid 1 again, a later batch
    ])
    whole = read_split(folder, "train", batch_size=100)
    assert_same_tables(read_split(folder, "train", batch_size=1), whole)
    assert whole.queries["qid"].tolist() == ["1", "3"]
    assert whole.dropped["queries with no selected passage"] == 1
    assert whole.passages["text"].tolist() == ["shared text", "lake one", "bank one", "river one", "lake two"]
    pid = whole.passages.set_index("text")["pid"]
    qrels = whole.qrels.set_index(["qid", "pid"])
    assert qrels.index.tolist() == [("1", pid["shared text"]), ("1", pid["lake one"]), ("3", pid["river one"]),
                                    ("3", pid["bank one"]), ("3", pid["shared text"]), ("1", pid["lake two"])]
    # qid 1 judged "shared text" unselected in its first row, selected in the later one.
    assert qrels.loc[("1", pid["shared text"]), "selected"]
    assert qrels.loc[("1", pid["shared text"]), "relevance"] == 1


def test_given_passage_id_keeps_its_first_text_even_from_a_dropped_query(tmp_path):
    folder = write_rows(tmp_path, "train", [
        row(1, "bank loan", ["first text"], [0], passage_id=["p1"], relevance=[0]),  # no positive: dropped
        row(2, "lake water", ["second text", "lake"], [0, 1], passage_id=["p1", "p2"], relevance=[1, 3]),
    ], graded=True)
    for batch_size in (1, 100):
        tables = read_split(folder, "train", batch_size=batch_size)
        assert tables.passages.values.tolist() == [["p1", "first text"], ["p2", "lake"]]
        assert tables.qrels[["qid", "pid", "relevance"]].values.tolist() == [["2", "p1", 1], ["2", "p2", 3]]


def test_prepare_split_writes_the_documented_schemas_and_no_scratch(tiny_raw, tmp_path):
    summary = prepare_split(tiny_raw, "validation", tmp_path / "validation", batch_size=7)
    assert sorted(p.name for p in (tmp_path / "validation").iterdir()) == [
        "passages.parquet", "qrels.parquet", "queries.parquet"]
    for name, schema in (("queries", QUERIES_SCHEMA), ("passages", PASSAGES_SCHEMA), ("qrels", QRELS_SCHEMA)):
        assert pq.read_schema(tmp_path / "validation" / f"{name}.parquet").equals(schema)
    tables = load_split(tmp_path, "validation")
    assert (summary.queries, summary.passages, summary.judged, summary.selected) == (
        len(tables.queries), len(tables.passages), len(tables.qrels), int(tables.qrels["selected"].sum()))


def test_prepare_split_leaves_no_scratch_when_it_fails(tmp_path):
    folder = write_rows(tmp_path / "raw", "train", [row(1, "lake", ["lake water"], [0])])
    with pytest.raises(TwoTowerError, match="no query has a selected passage"):
        prepare_split(folder, "train", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_query_whose_passages_are_all_dropped_leaves_no_slots_and_one_clear_error(tmp_path):
    folder = write_rows(tmp_path, "train", [row(1, "lake", ["", None], [1, 0])])
    with pytest.raises(TwoTowerError, match="no query has a selected passage once 2 empty or missing passage"):
        read_split(folder, "train")
