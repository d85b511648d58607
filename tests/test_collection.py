"""Reading collections: each format, column names found or named, bad rows skipped and counted."""

import re

import pandas as pd
import pytest

from twotower import TwoTowerError
from twotower.serve.collection import clean_batch, open_source, read_batches
from tests.tiny_index import PASSAGES, write_collection


def read_all(source, batch_size=3):
    ids, texts = [], []
    for batch_ids, batch_texts in read_batches(source, batch_size):
        assert len(batch_ids) <= batch_size
        ids += batch_ids
        texts += batch_texts
    return ids, texts


@pytest.mark.parametrize("format", ["parquet", "jsonl", "tsv"])
def test_each_format_reads_every_row_in_order(tmp_path, format):
    path = tmp_path / f"c.{format}"
    write_collection(PASSAGES, path, format)
    source = open_source(path)
    assert (source.format, source.id_column, source.text_column, source.rows) == (format, "id", "text", 8)
    ids, texts = read_all(source)
    assert [str(i) for i in ids] == PASSAGES["id"].tolist()
    assert texts == PASSAGES["text"].tolist()


def test_headerless_tsv_is_id_then_text(tmp_path):
    path = tmp_path / "collection.tsv"
    table = pd.DataFrame({"id": ["7", "8"], "text": ['say "hi" \\ there', "plain"]})
    write_collection(table, path, "tsv", header=False)
    source = open_source(path)
    assert (source.header, source.rows) == (False, 2)
    assert read_all(source) == (["7", "8"], ['say "hi" \\ there', "plain"])


def test_column_names_are_found_among_the_usual_ones_or_named(tmp_path):
    path = tmp_path / "c.parquet"
    PASSAGES.rename(columns={"id": "passage_id", "text": "passage_text"}).assign(title="t").to_parquet(path)
    source = open_source(path)
    assert (source.id_column, source.text_column) == ("passage_id", "passage_text")
    assert open_source(path, text_column="title").text_column == "title"
    with pytest.raises(TwoTowerError, match=r"has no column 'body' \(columns: passage_id, passage_text, title\)"):
        open_source(path, text_column="body")


def test_a_collection_without_a_text_column_names_the_flag(tmp_path):
    path = tmp_path / "c.jsonl"
    write_collection(PASSAGES.rename(columns={"text": "words"}), path, "jsonl")
    with pytest.raises(TwoTowerError, match="no text column among .* \\(columns: id, words\\): name it with --text-column"):
        open_source(path)


@pytest.mark.parametrize("name, message", [
    ("c.csv", "cannot tell the format from the suffix '.csv'; pass --format"),
    ("missing.parquet", "collection not found"),
])
def test_unknown_suffix_or_missing_file(tmp_path, name, message):
    (tmp_path / "c.csv").write_text("id,text\n1,a\n")
    with pytest.raises(TwoTowerError, match=message):
        open_source(tmp_path / name)


def test_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_text("id\ttext\n")
    with pytest.raises(TwoTowerError, match="not a readable parquet file"):
        open_source(path)


def test_a_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 1, "text": "a"}\n{"id": 2, "text": \n')
    with pytest.raises(TwoTowerError, match="line 2 is not JSON"):
        read_all(open_source(path))


def test_a_tsv_line_with_an_extra_field_is_named_and_one_with_too_few_has_no_text(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\ttext\n1\thello\n2\n")
    assert read_all(open_source(path)) == (["1", "2"], ["hello", ""])
    path.write_text("id\ttext\n1\thello\n2\tworld\textra\n")
    with pytest.raises(TwoTowerError, match="Expected 2 fields in line 3, saw 3"):
        read_all(open_source(path))


def test_rows_without_id_or_text_and_repeated_ids_are_skipped_and_counted():
    seen = {"d0"}
    ids = ["d0", "d1", None, "d2", "d3", "d1", " ", 5]
    texts = ["again", "one", "no id", "  ", None, "repeat", "blank id", "five"]
    kept_ids, kept_texts, counts = clean_batch(ids, texts, seen)
    assert kept_ids == ["d1", "5"] and kept_texts == ["one", "five"]
    assert counts.read == 8 and counts.kept == 2
    assert counts.skipped == {"missing_id": 2, "empty_text": 2, "duplicate_id": 2}
    assert seen == {"d0", "d1", "5"}


FLOAT_IDS = pd.DataFrame({"id": [1.0, 2.0, float("nan"), 4.0, 123.0],  # as pandas writes ints with a gap
                          "text": ["one", "two", "no id", "four", "many"]})


@pytest.mark.parametrize("format", ["parquet", "jsonl"])
def test_whole_float_ids_are_read_as_integers(tmp_path, format):
    path = tmp_path / f"c.{format}"
    write_collection(FLOAT_IDS, path, format)
    ids, texts = read_all(open_source(path))
    kept_ids, kept_texts, counts = clean_batch(ids, texts, set())
    assert kept_ids == ["1", "2", "4", "123"] and kept_texts == ["one", "two", "four", "many"]
    assert counts.skipped["missing_id"] == 1


def test_tsv_ids_are_kept_as_written(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\ttext\n1.0\tone\n2\ttwo\n")
    ids, _ = read_all(open_source(path))
    assert clean_batch(ids, ["one", "two"], set())[0] == ["1.0", "2"]  # text, not a number: as the file says


@pytest.mark.parametrize("format", ["parquet", "jsonl"])
@pytest.mark.parametrize("bad, message", [(1.5, "holds 1.5, not a whole number"),
                                          (2.0 ** 60, "holds 1.152921504606847e+18, too large for a float")])
def test_a_float_id_that_is_not_an_exact_integer_is_refused_naming_the_column(tmp_path, format, bad, message):
    path = tmp_path / f"c.{format}"
    write_collection(pd.DataFrame({"doc_id": [1.0, bad], "text": ["one", "two"]}), path, format)
    expected = re.escape(f"{path}: id column 'doc_id' {message}") + ".*: write ids as integers or text$"
    with pytest.raises(TwoTowerError, match=expected):
        read_all(open_source(path))


def test_an_index_of_float_ids_answers_with_integer_ids(tmp_path):
    from twotower import Searcher
    from tests.tiny_index import PASSAGES, build_index

    table = PASSAGES.assign(id=[float(i) for i in range(100, 108)])
    hits = Searcher.from_index(build_index(tmp_path, table), device="cpu").search("flea life cycle", 1)
    assert hits[0].pid == "101"
