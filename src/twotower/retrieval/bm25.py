"""BM25 over the test corpus with bm25s: the lexical baseline the two-tower model must beat.

`bm25_run` is pure: tables in, run (qid, pid, rank, score) out. Every passage is scored for
every query (bm25s `get_scores`) and the top `depth` are taken by score, ties broken by pid,
so the run does not depend on how a top-k routine orders equal scores. Like Lucene, only
passages sharing at least one term with the query are returned; a query left with no terms
after stopword removal gets no rows (and so scores 0 in every measure).
"""

import bm25s
import numpy as np
import pandas as pd
import Stemmer
from tqdm import tqdm

from twotower.data.runs import RUN_COLUMNS


def _stemmer(name: str):
    return None if name == "none" else Stemmer.Stemmer(name)


def _stopwords(name: str):
    return None if name == "none" else name


def tokenize(texts, params, show_progress: bool = False, return_ids: bool = True):
    """bm25s tokenization (lowercase, words of 2+ characters) with the configured stopwords and stemmer."""
    return bm25s.tokenize(list(texts), stopwords=_stopwords(params.stopwords), stemmer=_stemmer(params.stemmer),
                          return_ids=return_ids, show_progress=show_progress)


def build_index(passages: pd.DataFrame, params, show_progress: bool = False) -> bm25s.BM25:
    index = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
    index.index(tokenize(passages["text"], params, show_progress), show_progress=show_progress)
    return index


def bm25_run(queries: pd.DataFrame, passages: pd.DataFrame, params, show_progress: bool = False) -> pd.DataFrame:
    """Rank `passages` (pid, text) for each of `queries` (qid, text) with BM25 `params`.

    Returns the run (qid, pid, rank, score): up to `params.depth` rows a query, rank from 1.
    """
    index = build_index(passages, params, show_progress)
    pids = passages["pid"].astype(str).to_numpy()
    pid_order = np.empty(len(pids), dtype=np.int64)
    pid_order[np.argsort(pids, kind="stable")] = np.arange(len(pids))
    query_tokens = tokenize(queries["text"], params, show_progress, return_ids=False)

    parts = []
    rows = zip(queries["qid"].astype(str), query_tokens)
    for qid, tokens in tqdm(rows, total=len(queries), desc="BM25 queries", disable=not show_progress):
        token_ids = index.get_tokens_ids(tokens)
        if not token_ids:
            continue
        scores = index.get_scores(token_ids)
        hits = np.flatnonzero(scores > 0)
        top = hits[np.lexsort((pid_order[hits], -scores[hits]))][: params.depth]
        parts.append(pd.DataFrame({"qid": qid, "pid": pids[top], "rank": np.arange(1, len(top) + 1),
                                   "score": scores[top].astype(np.float64)}))
    if not parts:
        return pd.DataFrame({"qid": pd.Series(dtype=str), "pid": pd.Series(dtype=str),
                             "rank": pd.Series(dtype=np.int64), "score": pd.Series(dtype=np.float64)})
    return pd.concat(parts, ignore_index=True)[RUN_COLUMNS]
