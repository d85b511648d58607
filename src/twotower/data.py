"""Read MS MARCO-style parquet and normalise it into the standard IR tables.

Input rows follow the Hugging Face `ms_marco` v1.1/v2.1 schema:
    query_id, query, passages{is_selected, passage_text, url[, passage_id, relevance]}, ...
Output tables (the schema every later stage relies on):
    queries  (qid: str, text: str)
    passages (pid: str, text: str)                      deduplicated by pid
    qrels    (qid: str, pid: str, relevance: int, selected: bool)
`relevance` is the graded TREC label when the row has one, else `is_selected`; `selected`
is `is_selected` (for TREC-DL rows that is relevance >= 2), so binary measures and training
positives mean the same thing whatever the source.
The raw files are streamed in record batches so a full-size MS MARCO never sits in memory
as Python objects.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from twotower.errors import TwoTowerError

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("query_id", "query", "passages")
REQUIRED_PASSAGE_FIELDS = ("is_selected", "passage_text")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


@dataclass
class SplitTables:
    queries: pd.DataFrame
    passages: pd.DataFrame
    qrels: pd.DataFrame
    dropped: Counter = field(default_factory=Counter)


def split_files(raw_dir, split: str) -> list[Path]:
    """`{split}.parquet`, else Hugging Face shards `{split}-*.parquet`."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise TwoTowerError(
            f"raw data folder not found: {raw_dir} (run `dvc pull`, or set data.raw_dir "
            "to a folder of MS MARCO parquet files)"
        )
    single = raw_dir / f"{split}.parquet"
    if single.is_file():
        return [single]
    shards = sorted(raw_dir.glob(f"{split}-*.parquet"))
    if shards:
        return shards
    raise TwoTowerError(
        f"no '{split}' split in {raw_dir}: expected {split}.parquet or {split}-*.parquet"
    )


def check_schema(path: Path) -> pa.Schema:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TwoTowerError(f"{path}: not a readable parquet file ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise TwoTowerError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED_COLUMNS)} (Hugging Face ms_marco schema)"
        )
    ptype = schema.field("passages").type
    if not pa.types.is_struct(ptype):
        raise TwoTowerError(
            f"{path}: column 'passages' is {ptype}, expected a struct of lists "
            "{is_selected, passage_text, ...}"
        )
    names = [ptype.field(i).name for i in range(ptype.num_fields)]
    missing = [f for f in REQUIRED_PASSAGE_FIELDS if f not in names]
    if missing:
        raise TwoTowerError(f"{path}: passages is missing field(s) {', '.join(missing)}")
    for name in names:
        ftype = ptype.field(name).type
        if not (pa.types.is_list(ftype) or pa.types.is_large_list(ftype)):
            raise TwoTowerError(f"{path}: passages.{name} is {ftype}, expected a list")
    return schema


def clean_text(texts: pd.Series) -> pd.Series:
    """Control characters become spaces, runs of whitespace one space; None stays None."""
    texts = texts.astype("string")
    texts = texts.str.replace(_CONTROL, " ", regex=True)
    return texts.str.replace(r"\s+", " ", regex=True).str.strip()


def text_pid(texts: pd.Series) -> pd.Series:
    """A stable id for passages that come without `passage_id` (HF v1.1/v2.1 rows)."""
    return texts.map(lambda t: "h" + hashlib.blake2b(t.encode("utf-8"), digest_size=8).hexdigest())


def keep_fraction(qids: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Seeded, order-independent query sample: a query is kept iff hash(seed, qid) < fraction.

    Hashing rather than shuffling lets the sample be taken while streaming, and a query's
    fate does not depend on which other queries are in the file.
    """
    if fraction >= 1.0:
        return np.ones(len(qids), dtype=bool)
    digests = qids.map(
        lambda q: int.from_bytes(hashlib.blake2b(f"{seed}:{q}".encode(), digest_size=8).digest(), "big")
    )
    return (digests.to_numpy(dtype=np.float64) / 2.0**64) < fraction


def _flatten_batch(batch: pa.RecordBatch, dropped: Counter):
    """One record batch -> (queries, passage slots) as DataFrames; dirty rows counted and dropped."""
    passages = batch.column("passages")
    names = [passages.type.field(i).name for i in range(passages.type.num_fields)]
    lengths = {n: pc.list_value_length(passages.field(n)).to_numpy(zero_copy_only=False) for n in names}
    text_len = np.nan_to_num(lengths["passage_text"].astype(float), nan=-1)
    ok = np.ones(batch.num_rows, dtype=bool)
    for n in names:
        if n == "url":
            continue
        ok &= np.nan_to_num(lengths[n].astype(float), nan=-1) == text_len
    ok &= text_len >= 0
    dropped["rows whose passage lists differ in length"] += int((~ok).sum())
    if not ok.all():
        batch = batch.filter(pa.array(ok))
        passages = batch.column("passages")

    queries = pd.DataFrame(
        {
            "qid": pd.Series(batch.column("query_id").to_pylist(), dtype="object").map(
                lambda q: None if q is None else str(q)
            ),
            "text": clean_text(batch.column("query").to_pandas()),
        }
    )
    parents = pc.list_parent_indices(passages.field("passage_text")).to_numpy()
    slots = pd.DataFrame(
        {
            "row": parents,
            "text": clean_text(pc.list_flatten(passages.field("passage_text")).to_pandas()),
            "selected": pc.list_flatten(passages.field("is_selected")).to_pandas(),
        }
    )
    if "passage_id" in names:
        slots["passage_id"] = pc.list_flatten(passages.field("passage_id")).to_pandas()
    if "relevance" in names:
        slots["relevance"] = pc.list_flatten(passages.field("relevance")).to_pandas()
    slots["qid"] = queries["qid"].to_numpy()[parents]
    return queries, slots


def _normalise_slots(slots: pd.DataFrame, dropped: Counter) -> pd.DataFrame:
    empty = slots["text"].isna() | (slots["text"] == "")
    dropped["empty or missing passage texts"] += int(empty.sum())
    slots = slots[~empty].copy()
    slots["selected"] = slots["selected"].fillna(0).astype(int) > 0
    if "relevance" in slots:
        slots["relevance"] = slots["relevance"].fillna(0).astype(int)
    else:
        slots["relevance"] = slots["selected"].astype(int)
    pid = text_pid(slots["text"])
    if "passage_id" in slots:
        given = slots["passage_id"].map(lambda p: None if p is None or p != p or str(p) == "" else str(p))
        pid = given.where(given.notna(), pid)
    slots["pid"] = pid.astype(str)
    return slots[["qid", "pid", "text", "relevance", "selected"]]


def read_split(raw_dir, split: str, fraction: float = 1.0, seed: int = 0,
               batch_size: int = 4096) -> SplitTables:
    """Stream one split into normalised tables, keeping a seeded `fraction` of its queries."""
    dropped = Counter()
    query_parts, slot_parts = [], []
    for path in split_files(raw_dir, split):
        check_schema(path)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            queries, slots = _flatten_batch(batch, dropped)
            bad = queries["qid"].isna() | queries["text"].isna() | (queries["text"] == "")
            dropped["rows with an empty or missing query"] += int(bad.sum())
            keep = ~bad.to_numpy() & keep_fraction(queries["qid"].fillna(""), fraction, seed)
            kept_qids = set(queries.loc[keep, "qid"])
            query_parts.append(queries[keep])
            slot_parts.append(_normalise_slots(slots[slots["qid"].isin(kept_qids)], dropped))
    if not query_parts or sum(len(q) for q in query_parts) == 0:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items()) if n) or "the files have no rows"
        raise TwoTowerError(f"{split}: no usable query rows ({reasons})")
    queries = pd.concat(query_parts, ignore_index=True)
    slots = pd.concat(slot_parts, ignore_index=True)
    return _tables(queries, slots, dropped, split)


def _tables(queries: pd.DataFrame, slots: pd.DataFrame, dropped: Counter, split: str) -> SplitTables:
    conflicting = queries.groupby("qid")["text"].nunique()
    conflicting = conflicting[conflicting > 1]
    if len(conflicting):
        qid = conflicting.index[0]
        texts = sorted(queries.loc[queries["qid"] == qid, "text"].unique())[:2]
        raise TwoTowerError(
            f"{split}: query id {qid} appears with different texts ({texts[0]!r} vs {texts[1]!r}); "
            f"{len(conflicting)} such id(s) in all"
        )
    queries = queries.drop_duplicates("qid").reset_index(drop=True)

    qrels = (
        slots.groupby(["qid", "pid"], sort=False)
        .agg(relevance=("relevance", "max"), selected=("selected", "any"))
        .reset_index()
    )
    with_positive = set(qrels.loc[qrels["selected"], "qid"])
    no_positive = ~queries["qid"].isin(with_positive)
    dropped["queries with no selected passage"] += int(no_positive.sum())
    queries = queries[~no_positive].reset_index(drop=True)
    if queries.empty:
        raise TwoTowerError(f"{split}: no query has a selected passage (is_selected all 0)")
    qrels = qrels[qrels["qid"].isin(set(queries["qid"]))].reset_index(drop=True)
    passages = (
        slots[slots["pid"].isin(set(qrels["pid"]))]
        .drop_duplicates("pid")[["pid", "text"]]
        .reset_index(drop=True)
    )
    qrels["relevance"] = qrels["relevance"].astype("int32")
    return SplitTables(queries.astype({"qid": str, "text": str}),
                       passages.astype({"pid": str, "text": str}), qrels, dropped)


def read_collection(raw_dir) -> pd.DataFrame:
    """Unlabelled passages `{raw_dir}/collection.parquet` (passage_id, passage_text) as (pid, text)."""
    path = Path(raw_dir) / "collection.parquet"
    if not path.is_file():
        raise TwoTowerError(f"{path} not found: data.ict_passages needs unlabelled passages there")
    names = pq.read_schema(path).names
    missing = [c for c in ("passage_id", "passage_text") if c not in names]
    if missing:
        raise TwoTowerError(f"{path}: missing column(s) {', '.join(missing)}")
    table = pd.read_parquet(path, columns=["passage_id", "passage_text"])
    texts = clean_text(table["passage_text"])
    keep = texts.notna() & (texts != "")
    return pd.DataFrame({"pid": table.loc[keep, "passage_id"].astype(str), "text": texts[keep].astype(str)})


def write_split(tables: SplitTables, out_dir) -> None:
    from twotower.files import write_parquet

    out_dir = Path(out_dir)
    write_parquet(tables.queries, out_dir / "queries.parquet")
    write_parquet(tables.passages, out_dir / "passages.parquet")
    write_parquet(tables.qrels, out_dir / "qrels.parquet")


def load_split(prepared_dir, split: str) -> SplitTables:
    folder = Path(prepared_dir) / split
    try:
        return SplitTables(
            pd.read_parquet(folder / "queries.parquet"),
            pd.read_parquet(folder / "passages.parquet"),
            pd.read_parquet(folder / "qrels.parquet"),
        )
    except FileNotFoundError as exc:
        raise TwoTowerError(f"prepared split missing: {exc.filename} (run the subsample stage)") from None
