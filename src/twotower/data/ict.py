"""Inverse cloze task: self-supervised (pseudo-query, passage) pairs from unlabelled text.

A sentence of a passage becomes the query and the rest of the passage its positive (Lee et
al. 2019). With probability `keep_sentence` the sentence stays in the positive too, so the
model also learns that word overlap matters. The output is an ordinary split (queries,
passages, qrels), so tokenizing and triplet building treat it like labelled data.
The passages come from the raw folder's unlabelled `collection.parquet` (less validation and
test passages and the validation queries' neighbours), or, where there is none (the Hugging
Face `ms_marco` files have only train/validation/test), from the train split's passages.
"""

import re

import numpy as np
import pandas as pd
import pyarrow as pa

from twotower.data.prepared import SplitTables, streamed, table_rows

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def inverse_cloze_pairs(collection: pd.DataFrame, n: int, seed: int, keep_sentence: float = 0.1,
                        min_words: int = 4) -> SplitTables:
    """Up to `n` pairs from `collection` (pid, text), passages chosen with `seed`.

    Passages with fewer than two sentences of `min_words` words are skipped.
    """
    rng = np.random.default_rng(seed)
    chosen = collection.iloc[rng.permutation(len(collection))[:n]]
    queries, passages = [], []
    for pid, text in zip(chosen["pid"], chosen["text"]):
        sentences = [s for s in _SENTENCE_END.split(text) if len(s.split()) >= min_words]
        if len(sentences) < 2:
            continue
        i = int(rng.integers(len(sentences)))
        rest = sentences if rng.random() < keep_sentence else sentences[:i] + sentences[i + 1:]
        queries.append((f"ict:{pid}", sentences[i]))
        passages.append((f"{pid}#ict", " ".join(rest)))
    queries = pd.DataFrame(queries, columns=["qid", "text"])
    passages = pd.DataFrame(passages, columns=["pid", "text"])
    qrels = pd.DataFrame({"qid": queries["qid"], "pid": passages["pid"],
                          "relevance": np.ones(len(queries), dtype=np.int32),
                          "selected": np.ones(len(queries), dtype=bool)})
    return SplitTables(queries, passages, qrels)


def sample_passages(path, n: int, seed: int, batch_size: int = 8192) -> pd.DataFrame:
    """Up to `n` seeded rows (pid, text) of a prepared passages table, in file order.

    Read batch by batch, keeping only the chosen rows: the train split of MS MARCO v2.1 holds
    millions of passages, of which a few thousand are wanted.
    """
    total = table_rows(path)
    wanted = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    parts, start = [], 0
    for batch in streamed(path).iter_batches(batch_size, columns=["pid", "text"]):
        first, last = np.searchsorted(wanted, [start, start + batch.num_rows])
        if last > first:
            parts.append(batch.take(pa.array(wanted[first:last] - start)).to_pandas())
        start += batch.num_rows
    if not parts:
        return pd.DataFrame({"pid": pd.Series(dtype=str), "text": pd.Series(dtype=str)})
    return pd.concat(parts, ignore_index=True)


def pseudo_query_passages(collection: pd.DataFrame | None, train_passages, n: int,
                          seed: int) -> tuple[pd.DataFrame, str]:
    """The passages to make inverse-cloze pairs from, and where they came from: `collection`
    (the unlabelled passages left to training, which the subsample stage has already rid of
    validation and test passages and of the validation queries' neighbours) when the raw
    folder has one, else `n` seeded passages of the prepared `train_passages` table (`source`
    is then "train")."""
    if collection is not None:
        return collection, "collection"
    return sample_passages(train_passages, n, seed), "train"
