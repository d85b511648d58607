"""Fuse two runs (qid, pid, rank, score) into one: reciprocal rank fusion or a weighted score mix.

Both take each input's ranks from its scores (descending, ties by pid), the way the metrics
read a run, so a run file's own rank column never has to be trusted. A passage that only one
run retrieved still enters the fused run: in RRF it collects only that run's share; in the
weighted mix its normalised score in the other run is 0, the floor of that run's range.
"""

import numpy as np
import pandas as pd

from twotower.errors import TwoTowerError
from twotower.data.runs import RUN_COLUMNS


def ranked(run: pd.DataFrame) -> pd.DataFrame:
    """`run` re-ranked 1..n per query by score (descending), ties broken by pid."""
    missing = [c for c in ("qid", "pid", "score") if c not in run.columns]
    if missing:
        raise TwoTowerError(f"run is missing column(s) {', '.join(missing)}")
    run = run[["qid", "pid", "score"]].astype({"qid": str, "pid": str, "score": float})
    if run.duplicated(["qid", "pid"]).any():
        qid, pid = run.loc[run.duplicated(["qid", "pid"]), ["qid", "pid"]].iloc[0]
        raise TwoTowerError(f"run lists passage {pid} twice for query {qid}")
    run = run.sort_values(["qid", "score", "pid"], ascending=[True, False, True], ignore_index=True)
    run["rank"] = run.groupby("qid").cumcount() + 1
    return run[RUN_COLUMNS]


def _joined(run_a: pd.DataFrame, run_b: pd.DataFrame) -> pd.DataFrame:
    """One row per (qid, pid) in either run: rank_a, score_a, rank_b, score_b (NaN where absent)."""
    a, b = ranked(run_a), ranked(run_b)
    return a.merge(b, on=["qid", "pid"], how="outer", suffixes=("_a", "_b"))


def _top(fused: pd.DataFrame, keys: list, depth: int) -> pd.DataFrame:
    """Sort by `keys` (fused score first, descending; the rest ascending) and keep `depth` a query."""
    fused = fused.sort_values(["qid", *keys], ascending=[True, False] + [True] * (len(keys) - 1),
                              na_position="last", ignore_index=True)
    fused["rank"] = fused.groupby("qid").cumcount() + 1
    fused = fused[fused["rank"] <= depth]
    return fused.rename(columns={"fused": "score"})[RUN_COLUMNS].reset_index(drop=True)


def rrf(run_a: pd.DataFrame, run_b: pd.DataFrame, k: int = 60, depth: int = 1000) -> pd.DataFrame:
    """Reciprocal rank fusion (Cormack et al., 2009): score = sum over runs of 1 / (k + rank)."""
    joined = _joined(run_a, run_b)
    joined["fused"] = (1.0 / (k + joined["rank_a"])).fillna(0.0) + (1.0 / (k + joined["rank_b"])).fillna(0.0)
    return _top(joined, ["fused", "pid"], depth)


def min_max(run: pd.DataFrame, column: str) -> pd.Series:
    """Scores scaled to [0, 1] within each query; a query whose scores are all equal gets 1."""
    by_query = run.groupby("qid")[column]
    low, high = by_query.transform("min"), by_query.transform("max")
    span = (high - low).to_numpy()
    scaled = np.divide((run[column] - low).to_numpy(), span, out=np.ones(len(run)), where=span > 0)
    return pd.Series(scaled, index=run.index).where(run[column].notna())


def weighted(run_a: pd.DataFrame, run_b: pd.DataFrame, weight: float = 0.5, depth: int = 1000) -> pd.DataFrame:
    """weight * minmax(score_a) + (1 - weight) * minmax(score_b), normalised per query.

    Ties go to the run with the larger weight (its rank, then the other's), so weight 1.0
    gives run_a's order exactly, followed by the passages only run_b found, in run_b's order.
    """
    joined = _joined(run_a, run_b)
    joined["fused"] = (weight * min_max(joined, "score_a").fillna(0.0)
                       + (1.0 - weight) * min_max(joined, "score_b").fillna(0.0))
    first, second = ("rank_a", "rank_b") if weight >= 0.5 else ("rank_b", "rank_a")
    return _top(joined, ["fused", first, second, "pid"], depth)


def fuse(run_a: pd.DataFrame, run_b: pd.DataFrame, params) -> pd.DataFrame:
    """Fuse by `params` (HybridParams); `run_a` is the one `params.weight` applies to."""
    if params.method == "rrf":
        return rrf(run_a, run_b, params.rrf_k, params.depth)
    return weighted(run_a, run_b, params.weight, params.depth)


def fuse_query(pids_a: np.ndarray, scores_a: np.ndarray, pids_b: np.ndarray, scores_b: np.ndarray,
               params) -> tuple[np.ndarray, np.ndarray]:
    """`fuse` for one query's two runs given as arrays: (pids, scores) best first, the same
    rows `fuse` returns (tests/test_fusion.py checks it) in ~1 ms instead of ~70 ms of pandas,
    which a server answering many queries a second cannot spend. Each run's pids are distinct.
    Integers that sort as the pids do may stand in for them (a server's `pid_rank`): ties
    then break the same way without comparing strings."""
    pids = _keys(np.concatenate([pids_a, pids_b]))
    union, where = np.unique(pids, return_inverse=True)
    n = len(union)
    rank_a, rank_b = _ranks(pids_a, scores_a, where[: len(pids_a)], n), _ranks(pids_b, scores_b, where[len(pids_a):], n)
    if params.method == "rrf":
        fused = _share(rank_a, lambda r: 1.0 / (params.rrf_k + r)) + _share(rank_b, lambda r: 1.0 / (params.rrf_k + r))
        keys = [np.arange(n)]  # union is sorted by pid: its position breaks ties by pid
    else:
        fused = (params.weight * _scaled(scores_a, where[: len(pids_a)], n)
                 + (1.0 - params.weight) * _scaled(scores_b, where[len(pids_a):], n))
        first, second = (rank_a, rank_b) if params.weight >= 0.5 else (rank_b, rank_a)
        keys = [np.arange(n), np.where(np.isnan(second), np.inf, second), np.where(np.isnan(first), np.inf, first)]
    order = np.lexsort([*keys, -fused])[: params.depth]
    return union[order], fused[order]


def _keys(pids: np.ndarray) -> np.ndarray:
    """Pids as an array that sorts in pid order: strings as strings, integer stand-ins as they are."""
    return pids if np.issubdtype(pids.dtype, np.integer) else pids.astype(str)


def _ranks(pids, scores, slots, n) -> np.ndarray:
    """Rank 1.. of each run row by score (descending), ties by pid, placed at its union slot; NaN elsewhere."""
    ranks = np.full(n, np.nan)
    order = np.lexsort((_keys(np.asarray(pids)), -np.asarray(scores, dtype=np.float64)))
    ranks[slots[order]] = np.arange(1, len(order) + 1)
    return ranks


def _share(ranks, f) -> np.ndarray:
    return np.where(np.isnan(ranks), 0.0, f(np.nan_to_num(ranks, nan=1.0)))


def _scaled(scores, slots, n) -> np.ndarray:
    """`min_max` of one query's run, 0 where the run has no row (the floor of its range)."""
    out = np.zeros(n)
    if len(scores):
        scores = np.asarray(scores, dtype=np.float64)
        low, span = scores.min(), scores.max() - scores.min()
        out[slots] = (scores - low) / span if span > 0 else 1.0
    return out
