"""A validation split shaped like the test: held-out graded TREC-DL queries over their pools.

The raw validation split (MS MARCO v1.1 rows) ranks each query's ~8 candidates among
passages of unrelated queries, so almost any model finds the answer and its figures do not
tell configurations apart. Holding some of the training split's TREC-DL 2020/21 queries out
of training and ranking them over their whole judged pools plus unlabelled distractors is
the test's task (TREC-DL 2019 over its pool) on other queries, so model selection can trust it.
"""

import numpy as np
import pandas as pd

from twotower.errors import TwoTowerError
from twotower.data.prepared import SplitTables


def hold_out(train: SplitTables, n: int, seed: int) -> tuple[SplitTables, SplitTables]:
    """(train without `n` seeded queries, those queries with their judged passages).

    Only queries with a selected passage can be held out (they are the ones a metric
    counts). The held-out queries' passages stay in training where other training queries
    judged them too: only their queries and judgements leave.
    """
    eligible = np.sort(train.qrels.loc[train.qrels["selected"], "qid"].astype(str).unique())
    if n >= len(eligible):
        raise TwoTowerError(f"data.val_queries: {n} is not below the {len(eligible)} training queries with "
                            "a relevant passage (some must stay for training)")
    rng = np.random.default_rng(seed)
    held = set(eligible[rng.permutation(len(eligible))[:n]])
    return _subset(train, lambda qids: ~qids.isin(held)), _subset(train, lambda qids: qids.isin(held))


def _subset(tables: SplitTables, keep) -> SplitTables:
    queries = tables.queries[keep(tables.queries["qid"].astype(str))].reset_index(drop=True)
    qrels = tables.qrels[keep(tables.qrels["qid"].astype(str))].reset_index(drop=True)
    passages = tables.passages[tables.passages["pid"].isin(set(qrels["pid"]))].reset_index(drop=True)
    return SplitTables(queries, passages, qrels)


def add_distractors(tables: SplitTables, distractors: pd.DataFrame) -> SplitTables:
    """`tables` with unlabelled passages (pid, text) added to the pool (unjudged, so any a
    model ranks high counts as not relevant, as an unjudged passage does in TREC)."""
    new = distractors[~distractors["pid"].isin(set(tables.passages["pid"]))]
    passages = pd.concat([tables.passages, new[["pid", "text"]]], ignore_index=True)
    return SplitTables(tables.queries, passages, tables.qrels)
