"""Candidate passages for unlabelled real queries, on which the query tower matches the teacher.

A real query has no judged passage; what it teaches is the teacher's whole score
distribution over passages. Uniformly random passages say little (the teacher scores
them all low), so each query gets candidates mined among the passages the teacher
encoded: the teacher's own top `depth` (`teacher`) or BM25's (`bm25`). Each query's
triplet pairs one candidate from the very top (`hard` best) with one from further down, and
the batch's other passages add in-batch contrast (see `losses.kl_distill_loss`).
"""

import numpy as np
import pandas as pd

from twotower.errors import TwoTowerError
from twotower.retrieval.dense import top_k


def teacher_candidates(teacher_queries: np.ndarray, teacher_passages: np.ndarray, depth: int) -> np.ndarray:
    """Rows [n_queries, depth] of each query's best passages by the teacher's cosine."""
    _, rows = top_k(teacher_queries.astype(np.float32), teacher_passages.astype(np.float32), depth)
    return rows


def bm25_candidates(queries: pd.DataFrame, passages: pd.DataFrame, params, depth: int) -> np.ndarray:
    """Rows [n_queries, depth] of each query's best passages by BM25 (`params`: `Bm25Params`);
    a query with fewer than `depth` matching passages is filled with random ones."""
    from dataclasses import replace

    from twotower.retrieval.bm25 import bm25_run

    depth = min(depth, len(passages))
    run = bm25_run(queries, passages, replace(params, depth=max(depth, 100)))
    row_of = pd.Series(np.arange(len(passages)), index=passages["pid"].astype(str).to_numpy())
    ranked = run.groupby("qid", sort=False)["pid"].agg(list).to_dict()
    rng = np.random.default_rng(0)
    out = np.empty((len(queries), depth), dtype=np.int64)
    for i, qid in enumerate(queries["qid"].astype(str)):
        found = row_of.loc[ranked.get(qid, [])[:depth]].to_numpy()
        fill = rng.permutation(np.setdiff1d(np.arange(len(passages)), found))[: depth - len(found)]
        out[i] = np.concatenate([found, fill])
    return out


def candidate_triplets(qids: np.ndarray, pids: np.ndarray, ranked: np.ndarray, seed: int,
                       hard: int = 4) -> pd.DataFrame:
    """One (qid, pos_pid, neg_pid) per query: `pos` drawn from its `hard` best candidates,
    `neg` from the rest of `ranked` (rows into `pids`, best first). The names are only
    places in the batch: the loss these pairs feed takes its targets from the teacher."""
    if ranked.shape[1] < 2:
        raise TwoTowerError("train.candidate_depth needs at least 2 candidate passages per query")
    hard = min(hard, ranked.shape[1] - 1)
    rng = np.random.default_rng(seed)
    n = len(qids)
    pos = ranked[np.arange(n), rng.integers(0, hard, n)]
    neg = ranked[np.arange(n), rng.integers(hard, ranked.shape[1], n)]
    pids = np.asarray(pids, dtype=object)
    return pd.DataFrame({"qid": np.asarray(qids, dtype=object), "pos_pid": pids[pos], "neg_pid": pids[neg]})
