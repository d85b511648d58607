"""The collection passages nearest a set of queries, by BM25.

The collection holds the held-out validation queries' unjudged pool candidates, and the
data does not say which they are; BM25's top passages per query stand in for those pools
(`data.val_neighbours`; `twotower.data.holdout.split_collection` then keeps them out of
training).
"""

from dataclasses import replace

import pandas as pd

from twotower.retrieval.bm25 import bm25_run


def nearest_passages(queries: pd.DataFrame, collection: pd.DataFrame, depth: int, bm25_params) -> pd.DataFrame:
    """The rows of `collection` (pid, text) among BM25's top `depth` for any of `queries`,
    rank-major (every query's first hit, then every second...), each once, reindexed: a
    prefix of it is each query's nearest few."""
    if depth == 0 or len(collection) == 0 or len(queries) == 0:
        return collection.iloc[:0][["pid", "text"]].reset_index(drop=True)
    run = bm25_run(queries, collection, replace(bm25_params, depth=depth))
    order = run.sort_values(["rank", "qid"], kind="stable")["pid"].drop_duplicates()
    unique = collection.drop_duplicates("pid")
    by_pid = unique.set_index(unique["pid"].astype(str))
    return by_pid.loc[order.to_numpy(), ["pid", "text"]].reset_index(drop=True)
