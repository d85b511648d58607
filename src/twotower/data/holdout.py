"""A validation split shaped like the test: held-out graded TREC-DL queries over their pools.

The raw validation split (MS MARCO v1.1 rows) ranks each query's ~8 candidates among
passages of unrelated queries, so almost any model finds the answer and its figures do not
tell configurations apart. Holding some of the training split's TREC-DL 2020/21 queries out
of training and ranking them over their whole judged pools plus unlabelled distractors is
the test's task (TREC-DL 2019 over its pool) on other queries, so model selection can trust it.

The collection comes from the same TREC-DL pools: beside the held-out queries' judged
passages (left out by id and text) it holds their unjudged candidates. Trained on as a real
query's candidate or a passage-phase target, those would fit the model to validation's
neighbourhood, which the test queries do not share. `retrieval.neighbours.nearest_passages`
finds them (BM25's top passages per held-out query, standing in for the pools the data does
not list), and `split_collection` keeps them out of training and makes them validation
distractors first, as the test ranks its queries' unjudged pool passages.
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


def split_collection(collection: pd.DataFrame, neighbours: pd.DataFrame,
                     n_distractors: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(distractors, passages left to training) of `collection` (pid, text).

    The distractors are the first `n_distractors` of `neighbours` and then of the rest of
    `collection` in its order; training gets what is neither a neighbour nor a distractor.
    """
    near = set(neighbours["pid"].astype(str))
    far = collection[~collection["pid"].astype(str).isin(near)]
    ordered = pd.concat([neighbours[["pid", "text"]], far[["pid", "text"]]], ignore_index=True)
    distractors = ordered.iloc[:n_distractors].reset_index(drop=True)
    return distractors, ordered.iloc[max(n_distractors, len(neighbours)):].reset_index(drop=True)
