"""Normalise raw MS MARCO into the prepared tables (`twotower.data.prepared`), and check a raw
split in seconds for `twotower validate`.

The raw files are streamed in record batches and the tables written batch by batch
(`prepare_split`), so a full-size MS MARCO never sits in memory as Python objects.
"""

import hashlib
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from twotower.errors import TwoTowerError
from twotower.data.prepared import (PASSAGES_SCHEMA, QRELS_SCHEMA, QUERIES_SCHEMA, SplitTables, load_split, streamed,
                               table_rows)
from twotower.data.raw import (SLOTS_SCHEMA, TEXT_DROPS, check_schema, counted_batches, flatten_batch, normalise_slots,
                          read_batches, schema_problems, split_files)


@dataclass
class SplitSummary:
    """What `prepare_split` wrote (row counts) and what it dropped and cleaned, by reason."""
    queries: int
    passages: int
    judged: int
    selected: int
    dropped: Counter
    cleaned: Counter


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
    with pq.ParquetWriter(slots_path, SLOTS_SCHEMA) as writer:
        for batch in batches:
            queries, slots = flatten_batch(batch, dropped)
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
            slots = normalise_slots(slots[slots["qid"].isin(set(kept["qid"]))], dropped, cleaned)
            writer.write_table(_arrow(slots, SLOTS_SCHEMA))
    return pa.concat_tables([QUERIES_SCHEMA.empty_table(), *query_parts]), dropped, cleaned


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
            batches = counted_batches(files, batch_size, bar)
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
        sample = next((b for path in files for b in read_batches(path, sample_rows) if b.num_rows), None)
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
        lost = ", ".join(f"{dropped[r]} {r}" for r in TEXT_DROPS if dropped[r])
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
        for batch in streamed(slots_path).iter_batches(batch_size, columns=PASSAGES_SCHEMA.names):
            writer.write_table(pa.Table.from_batches([batch]).filter(mask[start:start + batch.num_rows]))
            start += batch.num_rows
            bar.update(batch.num_rows)
