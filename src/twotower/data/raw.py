"""The raw MS MARCO files: find a split's files, check their schema, read them in record
batches and flatten each batch into query rows and passage slots.

Input rows follow the Hugging Face `ms_marco` v1.1/v2.1 schema:
    query_id, query, passages{is_selected, passage_text, url[, passage_id, relevance]}, ...
A passage slot is one passage of one row (SLOTS_SCHEMA once normalised): the same passage
can fill many slots, and `twotower.data.prepare` turns the slots into the prepared tables.
"""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from twotower.errors import TwoTowerError
from twotower.data.prepared import SPLITS, streamed

REQUIRED_COLUMNS = ("query_id", "query", "passages")
REQUIRED_PASSAGE_FIELDS = ("is_selected", "passage_text")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
# Passage slots as `normalise_slots` returns them: one per passage of a row, before de-duplication.
SLOTS_SCHEMA = pa.schema([("qid", pa.large_string()), ("pid", pa.large_string()), ("text", pa.large_string()),
                          ("relevance", pa.int64()), ("selected", pa.bool_())])


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


def _is_text(t) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
        or pa.types.is_large_binary(t)


def _is_id(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_flag(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_boolean(t)


# What each column (and each list of `passages`) may hold; binary text is decoded as UTF-8.
_COLUMN_TYPES = {"query_id": (_is_id, "integers or strings"), "query": (_is_text, "strings")}
_PASSAGE_TYPES = {"is_selected": (_is_flag, "integers or booleans"), "passage_text": (_is_text, "strings"),
                  "passage_id": (_is_id, "integers or strings"), "relevance": (pa.types.is_integer, "integers")}


def schema_problems(path: Path) -> list[str]:
    """Every way the file's schema differs from what `read_split` needs, one message each."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        return [f"{path}: not a readable parquet file ({exc})"]
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        return [f"{path}: missing column(s) {', '.join(missing)}; "
                f"expected {', '.join(REQUIRED_COLUMNS)} (Hugging Face ms_marco schema)"]
    problems = []
    for name, (ok, accepted) in _COLUMN_TYPES.items():
        if not ok(schema.field(name).type):
            problems.append(f"{path}: column '{name}' is {schema.field(name).type}, expected {accepted}")
    ptype = schema.field("passages").type
    if not pa.types.is_struct(ptype):
        return problems + [f"{path}: column 'passages' is {ptype}, expected a struct of lists "
                           "{is_selected, passage_text, ...}"]
    names = [ptype.field(i).name for i in range(ptype.num_fields)]
    missing = [f for f in REQUIRED_PASSAGE_FIELDS if f not in names]
    if missing:
        problems.append(f"{path}: passages is missing field(s) {', '.join(missing)}")
    for name in names:
        ftype = ptype.field(name).type
        if not (pa.types.is_list(ftype) or pa.types.is_large_list(ftype)):
            problems.append(f"{path}: passages.{name} is {ftype}, expected a list")
        elif name in _PASSAGE_TYPES and not _PASSAGE_TYPES[name][0](ftype.value_type):
            problems.append(f"{path}: passages.{name} is {ftype}, expected a list of {_PASSAGE_TYPES[name][1]}")
    return problems


def check_schema(path: Path) -> pa.Schema:
    """The file's schema, or a TwoTowerError naming its first problem."""
    problems = schema_problems(path)
    if problems:
        raise TwoTowerError(problems[0])
    return pq.read_schema(path)


def check_raw(raw_dir, splits=SPLITS) -> None:
    """Fail on the first missing split file or wrong schema before any long read starts."""
    for split in splits:
        for path in split_files(raw_dir, split):
            check_schema(path)


def read_batches(path: Path, batch_size: int):
    """The file's record batches; a damaged file is a TwoTowerError, not a pyarrow traceback."""
    try:
        yield from streamed(path).iter_batches(batch_size=batch_size)
    except (pa.ArrowException, OSError) as exc:
        raise TwoTowerError(f"{path}: cannot read ({exc})") from None


def counted_batches(files: list[Path], batch_size: int, bar):
    """The record batches of all `files`, each counted on the progress bar as it is read."""
    for path in files:
        for batch in read_batches(path, batch_size):
            bar.update(batch.num_rows)
            yield batch


def clean_text(texts: pd.Series) -> pd.Series:
    """Control characters become spaces, runs of whitespace one space; None stays None."""
    texts = texts.astype("string")
    texts = texts.str.replace(_CONTROL, " ", regex=True)
    return texts.str.replace(r"\s+", " ", regex=True).str.strip()


def text_pid(texts: pd.Series) -> pd.Series:
    """A stable id for passages that come without `passage_id` (HF v1.1/v2.1 rows)."""
    return texts.map(lambda t: "h" + hashlib.blake2b(t.encode("utf-8"), digest_size=8).hexdigest())


def _decode(array: pa.Array) -> tuple[pd.Series, np.ndarray]:
    """Texts as str (missing stays missing) and a mask of values that were not valid UTF-8.

    Parquet strings should be UTF-8, but binary columns, and files from careless writers,
    may hold anything; such values become missing so their rows are dropped and counted.
    """
    invalid = np.zeros(len(array), dtype=bool)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        try:
            array.validate(full=True)
            return array.to_pandas(), invalid
        except pa.ArrowInvalid:
            array = array.view(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
    try:
        return pc.cast(array, pa.large_string()).to_pandas(), invalid
    except pa.ArrowInvalid:
        pass
    values = []
    for i, raw in enumerate(array.to_pylist()):
        try:
            values.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(None)
            invalid[i] = True
    return pd.Series(values, dtype=object), invalid


def _texts(array: pa.Array) -> dict:
    """Cleaned text plus two masks for the counts: not UTF-8, and had control characters."""
    raw, invalid = _decode(array)
    raw = raw.astype("string")
    control = raw.str.contains(_CONTROL, regex=True).fillna(False).to_numpy(dtype=bool)
    return {"text": clean_text(raw).to_numpy(dtype=object), "invalid": invalid, "control": control}


def flatten_batch(batch: pa.RecordBatch, dropped: Counter):
    """One record batch -> (queries, passage slots) as DataFrames; rows whose passage lists
    are missing or disagree in length are counted and dropped here, dirty texts later."""
    names = batch.schema.field("passages").type
    names = [names.field(i).name for i in range(names.num_fields)]
    lists = dict(zip(names, batch.column("passages").flatten()))  # struct nulls become list nulls
    lengths = {n: np.nan_to_num(pc.list_value_length(lists[n]).to_numpy(zero_copy_only=False).astype(float),
                                nan=-1) for n in names}
    missing = lengths["passage_text"] < 0
    ok = ~missing
    for n in names:
        if n != "url":
            ok &= lengths[n] == lengths["passage_text"]
    dropped["rows without passages"] += int(missing.sum())
    dropped["rows whose passage lists differ in length"] += int((~ok & ~missing).sum())
    if not ok.all():
        batch = batch.filter(pa.array(ok))
        lists = dict(zip(names, batch.column("passages").flatten()))

    queries = pd.DataFrame({
        "qid": pd.Series(batch.column("query_id").to_pylist(), dtype="object").map(
            lambda q: None if q is None else str(q)),
        **_texts(batch.column("query")),
    })
    parents = pc.list_parent_indices(lists["passage_text"]).to_numpy()
    slots = pd.DataFrame({
        "row": parents,
        **_texts(pc.list_flatten(lists["passage_text"])),
        "selected": pc.list_flatten(lists["is_selected"]).to_pandas(),
    })
    if "passage_id" in names:
        slots["passage_id"] = pc.list_flatten(lists["passage_id"]).to_pandas()
    if "relevance" in names:
        slots["relevance"] = pc.list_flatten(lists["relevance"]).to_pandas()
    slots["qid"] = queries["qid"].to_numpy()[parents]
    return queries, slots


# Passage texts dropped one by one: how a query can lose the positives its row had.
TEXT_DROPS = ("empty or missing passage texts", "passage texts that are not valid UTF-8")


def normalise_slots(slots: pd.DataFrame, dropped: Counter, cleaned: Counter) -> pd.DataFrame:
    """`flatten_batch`'s slots as SLOTS_SCHEMA columns: slots without usable text are dropped
    and counted; the pid is `passage_id` where the row has one, else a hash of the text."""
    invalid = slots["invalid"].to_numpy(dtype=bool)
    empty = (slots["text"].isna() | (slots["text"] == "")).to_numpy(dtype=bool) & ~invalid
    dropped[TEXT_DROPS[0]] += int(empty.sum())
    dropped[TEXT_DROPS[1]] += int(invalid.sum())
    slots = slots[~(invalid | empty)].copy()
    cleaned["passage texts with control characters (replaced by spaces)"] += int(slots["control"].sum())
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


def read_trec_sets(raw_dir, split: str = "train") -> pd.Series | None:
    """Each query's TREC-DL set (`trec_set`, e.g. dl20) by qid, or None when the split's rows
    have no such column (Hugging Face files)."""
    files = split_files(raw_dir, split)
    if any("trec_set" not in pq.read_schema(path).names for path in files):
        return None
    table = pd.concat([pd.read_parquet(path, columns=["query_id", "trec_set"]) for path in files], ignore_index=True)
    return pd.Series(table["trec_set"].astype(str).to_numpy(), index=table["query_id"].astype(str).to_numpy())
