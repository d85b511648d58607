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
The raw files are streamed in record batches and the tables written batch by batch
(`prepare_split`), so a full-size MS MARCO never sits in memory as Python objects; the
files' arrow schemas are QUERIES_SCHEMA, PASSAGES_SCHEMA and QRELS_SCHEMA below.
"""

import hashlib
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from twotower.errors import TwoTowerError

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("query_id", "query", "passages")
REQUIRED_PASSAGE_FIELDS = ("is_selected", "passage_text")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
# large_string, as pandas writes its `str` columns: the files read back the same either way.
QUERIES_SCHEMA = pa.schema([("qid", pa.large_string()), ("text", pa.large_string())])
PASSAGES_SCHEMA = pa.schema([("pid", pa.large_string()), ("text", pa.large_string())])
QRELS_SCHEMA = pa.schema([("qid", pa.large_string()), ("pid", pa.large_string()),
                          ("relevance", pa.int32()), ("selected", pa.bool_())])
# Scratch rows of `prepare_split`: one per passage of a kept query, before de-duplication.
_SLOTS_SCHEMA = pa.schema([("qid", pa.large_string()), ("pid", pa.large_string()), ("text", pa.large_string()),
                           ("relevance", pa.int64()), ("selected", pa.bool_())])


@dataclass
class SplitTables:
    queries: pd.DataFrame
    passages: pd.DataFrame
    qrels: pd.DataFrame
    dropped: Counter = field(default_factory=Counter)
    cleaned: Counter = field(default_factory=Counter)


@dataclass
class SplitSummary:
    """What `prepare_split` wrote (row counts) and what it dropped and cleaned, by reason."""
    queries: int
    passages: int
    judged: int
    selected: int
    dropped: Counter
    cleaned: Counter


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


def _flatten_batch(batch: pa.RecordBatch, dropped: Counter):
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
_TEXT_DROPS = ("empty or missing passage texts", "passage texts that are not valid UTF-8")


def _normalise_slots(slots: pd.DataFrame, dropped: Counter, cleaned: Counter) -> pd.DataFrame:
    invalid = slots["invalid"].to_numpy(dtype=bool)
    empty = (slots["text"].isna() | (slots["text"] == "")).to_numpy(dtype=bool) & ~invalid
    dropped[_TEXT_DROPS[0]] += int(empty.sum())
    dropped[_TEXT_DROPS[1]] += int(invalid.sum())
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


def _streamed(path) -> pq.ParquetFile:
    """A parquet file to read batch by batch. Not pyarrow's default `pre_buffer=True`: that
    keeps every column chunk read until the file object goes, so by the last batch the
    whole compressed file is in memory (+220 MiB for a 900k-passage table, measured)."""
    return pq.ParquetFile(path, pre_buffer=False)


def _batches(path: Path, batch_size: int):
    """The file's record batches; a damaged file is a TwoTowerError, not a pyarrow traceback."""
    try:
        yield from _streamed(path).iter_batches(batch_size=batch_size)
    except (pa.ArrowException, OSError) as exc:
        raise TwoTowerError(f"{path}: cannot read ({exc})") from None


def _counted(files: list[Path], batch_size: int, bar):
    """The record batches of all `files`, each counted on the progress bar as it is read."""
    for path in files:
        for batch in _batches(path, batch_size):
            bar.update(batch.num_rows)
            yield batch


def _arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """`df` as a table of exactly `schema`, without pandas metadata so that parts concatenate."""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata()


def _stream_slots(batches, fraction: float, seed: int,
                  slots_path: Path) -> tuple[pa.Table, Counter, Counter]:
    """Kept queries and the drop and clean counts by reason; the passage slots of the kept
    queries go to `slots_path` batch by batch, so their texts never pile up in memory."""
    dropped, cleaned = Counter(), Counter()
    query_parts = []
    with pq.ParquetWriter(slots_path, _SLOTS_SCHEMA) as writer:
        for batch in batches:
            queries, slots = _flatten_batch(batch, dropped)
            no_qid = queries["qid"].isna().to_numpy(dtype=bool)
            invalid = queries["invalid"].to_numpy(dtype=bool) & ~no_qid
            empty = (queries["text"].isna() | (queries["text"] == "")).to_numpy(dtype=bool) & ~no_qid & ~invalid
            dropped["rows without a query id"] += int(no_qid.sum())
            dropped["rows whose query is not valid UTF-8"] += int(invalid.sum())
            dropped["rows with an empty or missing query"] += int(empty.sum())
            keep = ~(no_qid | invalid | empty) & keep_fraction(queries["qid"].fillna(""), fraction, seed)
            kept = queries[keep]
            cleaned["query texts with control characters (replaced by spaces)"] += int(kept["control"].sum())
            query_parts.append(_arrow(kept, QUERIES_SCHEMA))
            slots = _normalise_slots(slots[slots["qid"].isin(set(kept["qid"]))], dropped, cleaned)
            writer.write_table(_arrow(slots, _SLOTS_SCHEMA))
    return pa.concat_tables([QUERIES_SCHEMA.empty_table(), *query_parts]), dropped, cleaned


def check_raw(raw_dir, splits=SPLITS) -> None:
    """Fail on the first missing split file or wrong schema before any long read starts."""
    for split in splits:
        for path in split_files(raw_dir, split):
            check_schema(path)


def prepare_split(raw_dir, split: str, out_dir, fraction: float = 1.0, seed: int = 0,
                  batch_size: int = 4096) -> SplitSummary:
    """Stream one raw split into `out_dir`/{queries,passages,qrels}.parquet, keeping a seeded
    `fraction` of its queries.

    Two passes, so that memory holds the queries and a batch but never the passage texts:
    the raw rows are normalised batch by batch and their passage slots written to a scratch
    file in `out_dir`; which slots become `passages` is known only once every row has been
    seen (a query id may come back in a later row, a passage's first slot may belong to a
    query that ends up without a selected passage), so the scratch file is then filtered
    into passages.parquet batch by batch and deleted.
    """
    files = split_files(raw_dir, split)
    for path in files:
        check_schema(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slots_path = out_dir / ".slots.parquet"
    rows = sum(table_rows(path) for path in files)
    try:
        with tqdm(total=rows, desc=f"{split} rows", unit="row", disable=None) as bar:
            batches = _counted(files, batch_size, bar)
            queries, dropped, cleaned = _stream_slots(batches, fraction, seed, slots_path)
        return _finish(queries, slots_path, out_dir, dropped, cleaned, split)
    finally:
        slots_path.unlink(missing_ok=True)


def read_split(raw_dir, split: str, fraction: float = 1.0, seed: int = 0,
               batch_size: int = 4096) -> SplitTables:
    """`prepare_split` read back into memory, for tests and small inputs."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = prepare_split(raw_dir, split, Path(tmp) / split, fraction, seed, batch_size)
        tables = load_split(tmp, split)
    tables.dropped, tables.cleaned = summary.dropped, summary.cleaned
    return tables


def check_split(raw_dir, split: str, sample_rows: int = 1000) -> tuple[list[str], list[str]]:
    """(problems, warnings) for one raw split in seconds, whatever its size.

    Problems are what would stop the subsample stage: missing files, a wrong schema, or
    what the first `sample_rows` rows already prove (conflicting query ids; no usable
    query when they are the whole split). Warnings are the rows it would drop, as counted
    in that sample, and sample-only signs of trouble. Cleaned texts are left to the
    stage's log: they are normal in MS MARCO.
    """
    try:
        files = split_files(raw_dir, split)
    except TwoTowerError as exc:
        return [str(exc)], []
    problems = [problem for path in files for problem in schema_problems(path)]
    if problems:
        return problems, []
    try:
        total = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
        sample = next((b for path in files for b in _batches(path, sample_rows) if b.num_rows), None)
    except (TwoTowerError, pa.ArrowException, OSError) as exc:
        return [str(exc) if isinstance(exc, TwoTowerError) else f"{files[0]}: cannot read ({exc})"], []
    if sample is None:
        return [f"{split}: no rows in {', '.join(map(str, files))}"], []
    whole = sample.num_rows == total
    name = files[0] if len(files) == 1 else files[0].parent / f"{split}-*.parquet"
    where = f"{name} ({'all' if whole else f'first {sample.num_rows} of'} {total} rows)"
    with tempfile.TemporaryDirectory() as tmp:
        slots_path = Path(tmp) / "slots.parquet"
        queries, dropped, cleaned = _stream_slots([sample], 1.0, 0, slots_path)
        warnings = [f"{where}: {n} {reason} (subsample drops them)"
                    for reason, n in sorted(dropped.items()) if n]
        conflict = _conflicting_queries(queries.to_pandas(), split)
        if conflict:
            return [f"{where}: {conflict.removeprefix(f'{split}: ')}"], warnings
        try:
            _finish(queries, slots_path, Path(tmp) / split, dropped, cleaned, split)
        except TwoTowerError as exc:
            (problems if whole else warnings).append(f"{where}: {str(exc).removeprefix(f'{split}: ')}")
    return problems, warnings


def _conflicting_queries(queries: pd.DataFrame, split: str) -> str | None:
    conflicting = queries.groupby("qid")["text"].nunique()
    conflicting = conflicting[conflicting > 1]
    if not len(conflicting):
        return None
    qid = conflicting.index[0]
    texts = sorted(queries.loc[queries["qid"] == qid, "text"].unique())[:2]
    return (f"{split}: query id {qid} appears with different texts ({texts[0]!r} vs {texts[1]!r}); "
            f"{len(conflicting)} such id(s) in all")


def _finish(queries: pa.Table, slots_path: Path, out_dir: Path, dropped: Counter, cleaned: Counter,
            split: str) -> SplitSummary:
    """Write the split's tables from its kept queries and the scratch file of their slots.

    Only the slots' ids and labels are loaded (as arrow, never Python objects) and grouped
    on integer codes; the texts are copied from the scratch file a batch at a time.
    """
    queries = queries.to_pandas()
    if queries.empty:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items()) if n) or "the files have no rows"
        raise TwoTowerError(f"{split}: no usable query rows ({reasons})")
    conflict = _conflicting_queries(queries, split)
    if conflict:
        raise TwoTowerError(conflict)
    queries = queries.drop_duplicates("qid").reset_index(drop=True)

    slots = pq.read_table(slots_path, columns=["qid", "pid", "relevance", "selected"], pre_buffer=False)
    pid = _codes(slots["pid"])
    first, relevance, selected = _judgements(slots, pid)
    with_positive = pc.unique(slots["qid"].filter(_mask(first[selected], slots.num_rows)))
    no_positive = ~pc.is_in(pa.array(queries["qid"]), value_set=with_positive).to_numpy(zero_copy_only=False)
    dropped["queries with no selected passage"] += int(no_positive.sum())
    queries = queries[~no_positive].reset_index(drop=True)
    if queries.empty:
        lost = ", ".join(f"{dropped[r]} {r}" for r in _TEXT_DROPS if dropped[r])
        raise TwoTowerError(f"{split}: no query has a selected passage "
                            + (f"once {lost} are dropped" if lost else "(is_selected all 0)"))
    kept = pc.is_in(slots["qid"], value_set=pa.array(queries["qid"])).to_numpy(zero_copy_only=False)
    judged = kept[first]
    rows = _mask(first[judged], slots.num_rows)
    qrels = pa.table([slots["qid"].filter(rows), slots["pid"].filter(rows), relevance[judged].astype(np.int32),
                      selected[judged]], schema=QRELS_SCHEMA)
    passage_slots = _passage_slots(pid, kept)
    del slots, pid, rows

    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(_arrow(queries, QUERIES_SCHEMA), out_dir / "queries.parquet")
    pq.write_table(qrels, out_dir / "qrels.parquet")
    _copy_passages(slots_path, passage_slots, out_dir / "passages.parquet", split)
    return SplitSummary(len(queries), int(passage_slots.sum()), qrels.num_rows, int(selected[judged].sum()),
                        dropped, cleaned)


def _codes(values) -> np.ndarray:
    """Dense int64 codes 0..k-1 of `values`, equal values equal codes.

    Arrow's rank, which sorts: dictionary_encode's hash table of v2.1's 7.3M pids took
    ~1 GB, rank ~130 MB.
    """
    return pc.rank(values, tiebreaker="dense").to_numpy().astype(np.int64) - 1


def _first_slots(codes: np.ndarray) -> np.ndarray:
    """Index of the first slot of each code 0..k-1 in `codes`."""
    first = np.full(int(codes.max(initial=-1)) + 1, len(codes))
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first


def _mask(rows: np.ndarray, n: int) -> np.ndarray:
    """`rows` (ascending) as a mask over n slots: filtering by it keeps their order and, unlike
    `take`, never concatenates a chunked column into one copy first."""
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _judgements(slots: pa.Table, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (qid, pid) pair's first slot, in order of appearance, with the highest relevance
    any of its slots gave and whether any selected it (a query id may repeat across rows).

    Grouped with numpy on integer codes (`pid` is `_codes` of the pid column): arrow's
    group_by on the two string columns took ~270 bytes a slot (~2 GB at v2.1 size).
    """
    pair = _codes(_codes(slots["qid"]) * (int(pid.max(initial=0)) + 1) + pid)
    first = _first_slots(pair)
    order = np.argsort(first)
    relevance = np.full(len(first), np.iinfo(np.int64).min)
    np.maximum.at(relevance, pair, slots["relevance"].to_numpy())
    selected = np.bincount(pair[slots["selected"].to_numpy()], minlength=len(first)) > 0
    return first[order], relevance[order], selected[order]


def _passage_slots(pid: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Mask of the slots whose text becomes `passages`: the first slot of each pid that a slot
    of a kept query judges, even when that first slot belongs to a dropped query (the text
    is the same for a text-hash pid; for a given passage_id, the first text seen wins)."""
    first = _first_slots(pid)
    judged = np.zeros(len(first), dtype=bool)
    judged[pid[kept]] = True
    return _mask(first[judged], len(pid))


def _copy_passages(slots_path: Path, mask: np.ndarray, path: Path, split: str,
                   batch_size: int = 65536) -> None:
    """Copy the (pid, text) of the slots in `mask` from the scratch file, batch by batch."""
    start = 0
    with pq.ParquetWriter(path, PASSAGES_SCHEMA) as writer, \
            tqdm(total=len(mask), desc=f"{split} passages", unit="slot", disable=None) as bar:
        for batch in _streamed(slots_path).iter_batches(batch_size, columns=PASSAGES_SCHEMA.names):
            writer.write_table(pa.Table.from_batches([batch]).filter(mask[start:start + batch.num_rows]))
            start += batch.num_rows
            bar.update(batch.num_rows)


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
        for batch in _streamed(path).iter_batches(batch_size, columns=["text"]):
            bar.update(batch.num_rows)
            yield batch.column("text").to_pylist()


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
