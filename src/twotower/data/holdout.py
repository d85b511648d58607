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
from twotower.data.raw import read_trec_sets


def hold_out(train: SplitTables, n: int, seed: int, among=None) -> tuple[SplitTables, SplitTables]:
    """(train without `n` seeded queries, those queries with their judged passages).

    Only queries with a selected passage can be held out (they are the ones a metric
    counts), and only those in `among` (qids) when it is given. The held-out queries'
    passages stay in training where other training queries judged them too: only their
    queries and judgements leave.
    """
    labelled = np.sort(train.qrels.loc[train.qrels["selected"], "qid"].astype(str).unique())
    if n >= len(labelled):
        raise TwoTowerError(f"data.val_queries: {n} is not below the {len(labelled)} training queries with "
                            "a relevant passage (some must stay for training)")
    eligible = labelled if among is None else labelled[np.isin(labelled, np.asarray(list(among), dtype=str))]
    if n > len(eligible):
        raise TwoTowerError(f"data.val_queries: {n} is more than the {len(eligible)} training queries with a "
                            "relevant passage in data.val_trec_set")
    rng = np.random.default_rng(seed)
    held = set(eligible[rng.permutation(len(eligible))[:n]])
    return _subset(train, lambda qids: ~qids.isin(held)), _subset(train, lambda qids: qids.isin(held))


def trec_set_queries(raw_dir, trec_set: str, note=print):
    """The train queries `data.val_trec_set` may hold out (None: any). Files without
    TREC-DL sets hold out from every query, said through `note` (`twotower validate`,
    which only checks, passes one that keeps quiet)."""
    if trec_set == "all":
        return None
    sets = read_trec_sets(raw_dir)
    if sets is None:
        note(f"note: the train split names no TREC-DL sets, so data.val_trec_set '{trec_set}' holds out from "
             "every query")
        return None
    check_trec_set(sets, trec_set)
    return set(sets.index[sets == trec_set])


def check_trec_set(sets: pd.Series, trec_set: str) -> None:
    """One line naming the train split's sets when `trec_set` is none of them; also run by
    `twotower validate`, so the mistake shows before a long run."""
    if trec_set not in set(sets):
        raise TwoTowerError(f"data.val_trec_set: '{trec_set}' is not a TREC-DL set of the train split; it has "
                            f"{', '.join(sorted(set(sets)))} (or use 'all')")


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
