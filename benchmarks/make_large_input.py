"""Write a synthetic MS MARCO v2.1-sized input for the memory benchmark (not for training).

808,731 train rows (v2.1's count) of ~10 passages each, plus validation and test splits an
eighth that size, as Hugging Face-style shards `{split}-0000N-of-0000M.parquet` in the v2.1
schema (query_id, query, query_type, passages{is_selected, passage_text, url}, answers,
wellFormedAnswers). Texts are GloVe's alphabetic words drawn Zipf-like by frequency rank;
passage lengths are log-normal (median 50 words, ~5% over 100, cut at 400) and queries
2-16 words, like MS MARCO's. Streams: each chunk of rows is built with pyarrow and written
as one row group, so memory stays bounded whatever `--rows`.

    python benchmarks/make_large_input.py /tmp/msmarco-large               # full size, ~3.5 GB
    python benchmarks/make_large_input.py /tmp/msmarco-50k --rows 50000    # smaller
    python benchmarks/peak_memory.py --pipeline --raw /tmp/msmarco-50k     # then measure
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from twotower.text.glove import load_glove

V21_TRAIN_ROWS = 808_731
SCHEMA = pa.schema([
    ("answers", pa.list_(pa.string())),
    ("passages", pa.struct([("is_selected", pa.list_(pa.int32())), ("passage_text", pa.list_(pa.string())),
                            ("url", pa.list_(pa.string()))])),
    ("query", pa.string()),
    ("query_id", pa.int32()),
    ("query_type", pa.string()),
    ("wellFormedAnswers", pa.list_(pa.string())),
])
QUERY_TYPES = pa.array(["DESCRIPTION", "NUMERIC", "ENTITY", "LOCATION", "PERSON"])


class Words:
    """Texts of random words: Zipf-like over GloVe's frequency order, joined by pyarrow."""

    def __init__(self, rng, vocab_size=100_000):
        words = [w for w in load_glove()[0][: vocab_size * 2] if w.isalpha()][:vocab_size]
        self.words = pa.array(words)
        weights = 1.0 / (np.arange(len(words)) + 2.7)
        self.cdf = np.cumsum(weights / weights.sum())
        self.rng = rng

    def texts(self, counts: np.ndarray, sep: str = " ") -> pa.Array:
        ids = np.searchsorted(self.cdf, self.rng.random(int(counts.sum())))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        return pc.binary_join(pa.ListArray.from_arrays(offsets, self.words.take(ids)), sep)


def nested(values: pa.Array, counts: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32), values)


def chunk(rng, words: Words, first_id: int, rows: int) -> pa.Table:
    per_row = rng.integers(8, 13, rows)                                        # 8-12, mean 10
    n = int(per_row.sum())
    lengths = np.clip(rng.lognormal(np.log(50), 0.45, n), 3, 400).astype(np.int64)
    selected = np.zeros(n, dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    has_answer = rng.random(rows) < 0.9                                        # the rest: no answer
    selected[(starts + rng.integers(0, per_row))[has_answer]] = 1
    urls = pc.binary_join_element_wise("https://www.", words.texts(np.full(n, 2), "-"), ".com/",
                                       words.texts(np.full(n, 4), "-"), "")
    passages = pa.StructArray.from_arrays(
        [nested(pa.array(selected), per_row), nested(words.texts(lengths), per_row), nested(urls, per_row)],
        fields=list(SCHEMA.field("passages").type))
    query_lengths = np.clip(rng.lognormal(np.log(5.5), 0.4, rows), 2, 16).astype(np.int64)
    return pa.Table.from_arrays([
        nested(words.texts(rng.integers(5, 20, rows)), np.ones(rows, dtype=np.int64)),
        passages,
        words.texts(query_lengths),
        pa.array(np.arange(first_id, first_id + rows, dtype=np.int32)),
        QUERY_TYPES.take(rng.integers(0, len(QUERY_TYPES), rows)),
        nested(pa.array([], pa.string()), np.zeros(rows, dtype=np.int64)),
    ], schema=SCHEMA)


def write_split(out: Path, split: str, rows: int, first_id: int, rng, words, shard_rows: int, chunk_rows: int):
    shards = max(1, -(-rows // shard_rows))
    for shard in range(shards):
        shard_start = shard * rows // shards
        shard_end = (shard + 1) * rows // shards
        path = out / f"{split}-{shard:05d}-of-{shards:05d}.parquet"
        with pq.ParquetWriter(path.with_suffix(".tmp"), SCHEMA) as writer:
            for start in range(shard_start, shard_end, chunk_rows):
                writer.write_table(chunk(rng, words, first_id + start, min(chunk_rows, shard_end - start)))
        os.replace(path.with_suffix(".tmp"), path)
    print(f"{split}: {rows} rows in {shards} shard(s)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=V21_TRAIN_ROWS, help="train rows (validation, test: 1/8 each)")
    parser.add_argument("--shard-rows", type=int, default=120_000)
    parser.add_argument("--chunk-rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    words = Words(rng)
    first_id = 0
    for split, rows in (("train", args.rows), ("validation", max(1, args.rows // 8)), ("test", max(1, args.rows // 8))):
        write_split(args.out, split, rows, first_id, rng, words, args.shard_rows, args.chunk_rows)
        first_id += rows
    size = sum(p.stat().st_size for p in args.out.glob("*.parquet"))
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; wrote {size / 2**30:.2f} GiB "
          f"to {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
