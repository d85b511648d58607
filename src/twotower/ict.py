"""Inverse cloze task: self-supervised (pseudo-query, passage) pairs from unlabelled text.

A sentence of a passage becomes the query and the rest of the passage its positive (Lee et
al. 2019). With probability `keep_sentence` the sentence stays in the positive too, so the
model also learns that word overlap matters. The output is an ordinary split (queries,
passages, qrels), so tokenizing and triplet building treat it like labelled data.
"""

import re

import numpy as np
import pandas as pd

from twotower.prepared import SplitTables

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
