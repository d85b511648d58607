"""Read a user's passage collection (parquet, jsonl or tsv) in batches of (ids, texts).

Nothing here holds the whole file: parquet is read a record batch at a time, jsonl and tsv
a chunk of lines at a time, so a collection of any size costs one batch of memory.
Column names default to the first of the usual names present (`pid`, `id`, `passage_id`,
... and `text`, `passage_text`, `contents`, ...); a tsv without a header row is read as
two columns, id then text, as MS MARCO's collection.tsv is.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.errors import TwoTowerError

FORMATS = ("parquet", "jsonl", "tsv")
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl", ".tsv": "tsv", ".tab": "tsv"}
ID_COLUMNS = ("pid", "id", "passage_id", "docid", "doc_id", "_id")
TEXT_COLUMNS = ("text", "passage_text", "passage", "contents", "content", "body")


@dataclass(frozen=True)
class Source:
    """One collection file and how to read it; `fingerprint` tells a resumed run it is unchanged."""

    path: Path
    format: str
    id_column: str
    text_column: str
    header: bool = True  # tsv only
    rows: int | None = None  # when cheap to know (parquet metadata, line count)

    @property
    def fingerprint(self) -> dict:
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "format": self.format, "id_column": self.id_column, "text_column": self.text_column}


@dataclass
class RowCounts:
    """Rows read and why some were left out of the index."""

    read: int = 0
    kept: int = 0
    skipped: dict = field(default_factory=lambda: {"missing_id": 0, "empty_text": 0, "duplicate_id": 0})

    def add(self, other: "RowCounts") -> None:
        self.read += other.read
        self.kept += other.kept
        for reason, n in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n


def describe_skipped(skipped: dict) -> str:
    """`1 missing id, 2 duplicate id`: the reasons with a count, for a log line ("" for none)."""
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in skipped.items() if n)


def detect_format(path, format: str | None = None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise TwoTowerError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
        return format
    found = SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise TwoTowerError(f"{path}: cannot tell the format from the suffix {Path(path).suffix!r}; "
                            f"pass --format ({', '.join(FORMATS)})")
    return found


def open_source(path, format: str | None = None, id_column: str | None = None,
                text_column: str | None = None) -> Source:
    """Check that `path` exists and has the id and text columns; read nothing else."""
    path = Path(path)
    if not path.is_file():
        raise TwoTowerError(f"collection not found: {path}")
    format = detect_format(path, format)
    header, rows = True, None
    if format == "parquet":
        try:
            meta = pq.ParquetFile(path)
        except Exception:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not parquet
            raise TwoTowerError(f"{path}: not a readable parquet file") from None
        columns, rows = list(meta.schema_arrow.names), meta.metadata.num_rows
    elif format == "jsonl":
        columns, rows = _jsonl_columns(path), _count_lines(path)
    else:
        columns, rows = _tsv_columns(path), _count_lines(path)
        wanted = {c for c in (id_column, text_column) if c}
        header = bool(columns) and (wanted <= set(columns) if wanted else _pick(columns, ID_COLUMNS) is not None)
        if not header:
            if len(columns) != 2 or wanted:
                raise TwoTowerError(f"{path}: the first line is not a header naming the id and text columns "
                                    f"and the file does not have exactly two columns (id, text)")
            columns = ["id", "text"]
        else:
            rows -= 1
    id_column = _column(path, columns, id_column, ID_COLUMNS, "id", "--id-column")
    text_column = _column(path, columns, text_column, TEXT_COLUMNS, "text", "--text-column")
    if id_column == text_column:
        raise TwoTowerError(f"{path}: the id and text columns are both {id_column!r}")
    return Source(path, format, id_column, text_column, header, rows)


def read_batches(source: Source, batch_size: int) -> Iterator[tuple[list, list]]:
    """Yield (ids, texts) lists of up to `batch_size` rows in file order; values as read
    (None where a row has no value), so the caller decides what a bad row is, except that
    float ids become the integers they hold (`_whole_ids`). A tsv's ids are its text as written."""
    if source.format == "parquet":
        try:
            for batch in pq.ParquetFile(source.path).iter_batches(
                    batch_size=batch_size, columns=[source.id_column, source.text_column]):
                ids = batch.column(0).to_pylist()
                if pa.types.is_floating(batch.column(0).type):
                    ids = _whole_ids(ids, source)
                yield ids, batch.column(1).to_pylist()
        except OSError as exc:
            raise TwoTowerError(f"{source.path}: cannot read ({exc})") from None
        return
    if source.format == "jsonl":
        yield from _jsonl_batches(source, batch_size)
        return
    chunks = pd.read_csv(source.path, sep="\t", header=0 if source.header else None,
                         names=None if source.header else ["id", "text"], dtype=str,
                         keep_default_na=False, na_values=[], quoting=csv.QUOTE_NONE,
                         chunksize=batch_size, on_bad_lines="error", encoding="utf-8")
    try:
        for chunk in chunks:
            yield chunk[source.id_column].tolist(), chunk[source.text_column].tolist()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TwoTowerError(f"{source.path}: {' '.join(str(exc).split())}") from None


def clean_batch(ids: list, texts: list, seen: set) -> tuple[list[str], list[str], RowCounts]:
    """The rows worth indexing, ids as str: a row without an id or text, or whose id came
    earlier (in this batch or in `seen`, which it updates), is skipped and counted."""
    counts = RowCounts(read=len(ids))
    kept_ids, kept_texts = [], []
    for pid, text in zip(ids, texts):
        if pid is None or (isinstance(pid, float) and pid != pid) or str(pid).strip() == "":
            counts.skipped["missing_id"] += 1
            continue
        if not isinstance(text, str) or not text.strip():
            counts.skipped["empty_text"] += 1
            continue
        pid = str(pid).strip()
        if pid in seen:
            counts.skipped["duplicate_id"] += 1
            continue
        seen.add(pid)
        kept_ids.append(pid)
        kept_texts.append(text)
    counts.kept = len(kept_ids)
    return kept_ids, kept_texts, counts


def _pick(columns, candidates):
    return next((c for c in candidates if c in columns), None)


def _column(path, columns, given, candidates, what, flag) -> str:
    if given is not None:
        if given not in columns:
            raise TwoTowerError(f"{path} has no column {given!r} (columns: {', '.join(map(str, columns))})")
        return given
    found = _pick(columns, candidates)
    if found is None:
        raise TwoTowerError(f"{path} has no {what} column among {', '.join(candidates)} "
                            f"(columns: {', '.join(map(str, columns))}): name it with {flag}")
    return found


def _count_lines(path) -> int:
    """Lines, counted in 1 MiB blocks: the progress bar's total for a text file (blank lines,
    which are skipped, make it an upper bound)."""
    count, last = 0, b"\n"
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _first_line(path) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            if line.strip():
                return line.rstrip("\n")
    raise TwoTowerError(f"{path} is empty")


def _jsonl_columns(path) -> list:
    line = _first_line(path)
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TwoTowerError(f"{path}: line 1 is not JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise TwoTowerError(f"{path}: line 1 is not a JSON object")
    return list(row)


def _tsv_columns(path) -> list:
    return _first_line(path).split("\t")


def _jsonl_batches(source: Source, batch_size: int) -> Iterator[tuple[list, list]]:
    """Up to `batch_size` objects at a time; a line that is not a JSON object is an error naming it."""
    ids, texts = [], []
    with open(source.path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TwoTowerError(f"{source.path}: line {number} is not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise TwoTowerError(f"{source.path}: line {number} is not a JSON object")
            ids.append(row.get(source.id_column))
            texts.append(row.get(source.text_column))
            if len(ids) == batch_size:
                yield _whole_ids(ids, source), texts
                ids, texts = [], []
    if ids:
        yield _whole_ids(ids, source), texts


def _whole_ids(ids: list, source: Source) -> list:
    """Float ids as ints, so 123.0 is indexed as "123": pandas stores an integer id column
    with a missing value as float, and JSON may spell 123 as 123.0. A float that is no whole
    number (1.5), or too large for a float to hold every integer (above 2**53), cannot be
    known to be the id the user wrote, so it is refused rather than guessed; NaN stays (a
    missing id, for `clean_batch` to count)."""
    whole = []
    for value in ids:
        if isinstance(value, float) and value == value:
            if not value.is_integer():
                raise TwoTowerError(f"{source.path}: id column {source.id_column!r} holds {value!r}, "
                                    f"not a whole number: write ids as integers or text")
            if abs(value) > 2 ** 53:
                raise TwoTowerError(f"{source.path}: id column {source.id_column!r} holds {value!r}, too large "
                                    f"for a float to keep the id exact: write ids as integers or text")
            value = int(value)
        whole.append(value)
    return whole
