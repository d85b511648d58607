"""The prepared tables: what the subsample stage writes under data/prepared and every later
stage reads.

Each split is a folder of three parquet files (arrow schemas below; large_string, as pandas
writes its `str` columns, so the files read back the same either way):
    queries  (qid: str, text: str)
    passages (pid: str, text: str)                      deduplicated by pid
    qrels    (qid: str, pid: str, relevance: int, selected: bool)
`relevance` is the graded TREC label when the raw row has one, else `is_selected`;
`selected` is `is_selected` (for TREC-DL rows that is relevance >= 2), so binary measures
and training positives mean the same thing whatever the source.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from twotower.errors import TwoTowerError

SPLITS = ("train", "validation", "test")
QUERIES_SCHEMA = pa.schema([("qid", pa.large_string()), ("text", pa.large_string())])
PASSAGES_SCHEMA = pa.schema([("pid", pa.large_string()), ("text", pa.large_string())])
QRELS_SCHEMA = pa.schema([("qid", pa.large_string()), ("pid", pa.large_string()),
                          ("relevance", pa.int32()), ("selected", pa.bool_())])


@dataclass
class SplitTables:
    """One split's three tables; `dropped` and `cleaned` count, by reason, the raw rows and
    texts that making them dropped or cleaned (empty when loaded from files)."""

    queries: pd.DataFrame
    passages: pd.DataFrame
    qrels: pd.DataFrame
    dropped: Counter = field(default_factory=Counter)
    cleaned: Counter = field(default_factory=Counter)


def streamed(path) -> pq.ParquetFile:
    """A parquet file to read batch by batch. Not pyarrow's default `pre_buffer=True`: that
    keeps every column chunk read until the file object goes, so by the last batch the
    whole compressed file is in memory (+220 MiB for a 900k-passage table, measured)."""
    return pq.ParquetFile(path, pre_buffer=False)


def write_split(tables: SplitTables, out_dir) -> None:
    """Tables made in memory (e.g. `twotower.data.ict`'s pairs) as a prepared split folder."""
    from twotower.files import write_parquet

    out_dir = Path(out_dir)
    write_parquet(tables.queries, out_dir / "queries.parquet")
    write_parquet(tables.passages, out_dir / "passages.parquet")
    write_parquet(tables.qrels, out_dir / "qrels.parquet")


def prepared_file(prepared_dir, split: str, table: str) -> Path:
    """The path of one prepared table (queries, passages or qrels), which must exist."""
    path = Path(prepared_dir) / split / f"{table}.parquet"
    if not path.is_file():
        raise TwoTowerError(f"prepared split missing: {path} (run the subsample stage)")
    return path


def table_rows(path) -> int:
    """Rows of a parquet file, from its footer: nothing else is read."""
    return pq.ParquetFile(path).metadata.num_rows


def text_batches(path, batch_size: int = 8192, desc: str | None = None):
    """The `text` column of a prepared table as lists of str, one record batch at a time
    (with a progress bar named `desc` on a terminal)."""
    with tqdm(total=table_rows(path), desc=desc, unit="text", disable=None) as bar:
        for batch in streamed(path).iter_batches(batch_size, columns=["text"]):
            bar.update(batch.num_rows)
            yield batch.column("text").to_pylist()


def load_split(prepared_dir, split: str) -> SplitTables:
    """A prepared split's three tables, read whole."""
    return SplitTables(*(pd.read_parquet(prepared_file(prepared_dir, split, table))
                         for table in ("queries", "passages", "qrels")))
