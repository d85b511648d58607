"""Training triplets (query, positive passage, negative passage) drawn from qrels.

Schema written by the build_triplets stage: (qid: str, pos_pid: str, neg_pid: str).
A negative is never a passage the query's qrels mark as selected or related (relevance > 0).
"""

from collections import Counter

import numpy as np
import pandas as pd

from twotower.errors import TwoTowerError


def build_triplets(qrels: pd.DataFrame, pids: np.ndarray, negatives: str, per_query: int,
                   seed: int, stats: Counter | None = None,
                   bm25_candidates: dict | None = None) -> pd.DataFrame:
    """`per_query` triplets for every query with a selected passage.

    Positives cycle through the query's selected passages in a seeded order. Negatives:
    `random` = any passage of the split not judged relevant for the query; `hard` = the
    same query's judged or pooled non-relevant passages (competitive: they were retrieved
    for this query); `bm25` = the query's top BM25-ranked passages (`bm25_candidates`,
    qid -> pids) that are not relevant; `mixed` alternates hard and random. A query with
    no hard candidates falls back to random negatives, counted in `stats`.
    """
    if negatives not in ("random", "hard", "bm25", "mixed"):
        raise TwoTowerError(f"triplets.negatives: {negatives!r} is not one of random, hard, bm25, mixed")
    if negatives == "bm25" and bm25_candidates is None:
        raise ValueError("negatives='bm25' needs bm25_candidates")
    stats = stats if stats is not None else Counter()
    rng = np.random.default_rng(seed)
    pids = np.asarray(sorted(set(map(str, pids))), dtype=object)
    rows = []
    for qid, group in qrels.sort_values(["qid", "pid"]).groupby("qid", sort=True):
        positives = group.loc[group["selected"], "pid"].to_numpy()
        if len(positives) == 0:
            continue
        not_negative = set(group.loc[group["selected"] | (group["relevance"] > 0), "pid"])
        if negatives == "bm25":
            hard = np.array([p for p in bm25_candidates.get(qid, ()) if p not in not_negative], dtype=object)
        else:
            hard = group.loc[~group["selected"] & (group["relevance"] <= 0), "pid"].to_numpy()
        if len(not_negative) >= len(pids):
            raise TwoTowerError(f"query {qid}: every passage of the split is relevant; no negatives")
        order = rng.permutation(len(positives))
        for i in range(per_query):
            pos = positives[order[i % len(positives)]]
            want_hard = negatives in ("hard", "bm25") or (negatives == "mixed" and i % 2 == 0)
            if want_hard and len(hard):
                neg = hard[rng.integers(len(hard))]
                stats["hard negatives"] += 1
            else:
                if want_hard:
                    stats["random negatives (query had no hard candidates)"] += 1
                neg = _random_negative(rng, pids, not_negative)
                stats["random negatives"] += 1
            rows.append((qid, pos, neg))
    return pd.DataFrame(rows, columns=["qid", "pos_pid", "neg_pid"])


def _random_negative(rng, pids, excluded):
    while True:
        pid = pids[rng.integers(len(pids))]
        if pid not in excluded:
            return pid
