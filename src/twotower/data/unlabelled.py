"""Unlabelled text for distillation: real queries and the passages the teacher scores them on.

`queries.parquet` (query_id, query) holds real MS MARCO queries with no judgements. With the
teacher's vectors of them, the query tower learns what a real query looks like in the
teacher's space, which 100 labelled queries cannot teach. They become a prepared split
`real` whose passages are unlabelled candidates (collection passages, or the training pool
when there is no collection) and whose qrels are empty.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.errors import TwoTowerError
from twotower.data.prepared import SplitTables
from twotower.data.raw import clean_text

QUERIES_FILE = "queries.parquet"
EMPTY_QRELS = pd.DataFrame({"qid": pd.Series([], dtype=str), "pid": pd.Series([], dtype=str),
                            "relevance": pd.Series([], dtype="int32"), "selected": pd.Series([], dtype=bool)})


def read_real_queries(raw_dir) -> pd.DataFrame | None:
    """`{raw_dir}/queries.parquet` as (qid, text), rows without an id or text and repeated ids dropped;
    None when the folder has no such file (e.g. the Hugging Face splits alone)."""
    path = Path(raw_dir) / QUERIES_FILE
    if not path.is_file():
        return None
    missing = [c for c in ("query_id", "query") if c not in pq.read_schema(path).names]
    if missing:
        raise TwoTowerError(f"{path}: missing column(s) {', '.join(missing)}")
    arrow = pq.read_table(path, columns=["query_id", "query"])
    ids = arrow.column("query_id").cast(pa.string()).to_pandas()  # 11 stays "11" even beside a null
    texts = clean_text(arrow.column("query").to_pandas())
    keep = ids.notna() & texts.notna() & (texts.str.strip() != "")
    queries = pd.DataFrame({"qid": ids[keep].astype(str), "text": texts[keep].astype(str)})
    return queries.drop_duplicates("qid").reset_index(drop=True)


def exclude(queries: pd.DataFrame, *splits: SplitTables) -> pd.DataFrame:
    """`queries` without any whose id or lowercased text is a query of `splits`: the real
    queries must never repeat a training, validation or test query."""
    return _without(queries, "qid", [s.queries for s in splits], lambda texts: texts.str.strip().str.lower())


def exclude_passages(passages: pd.DataFrame, *splits: SplitTables) -> pd.DataFrame:
    """`passages` without any whose id or text is a passage of `splits`, order kept.

    The collection holds passages of the TREC-DL pools (about 2,450 of the 2,542 judged
    validation passages are in it). As a real query's candidate, a distractor or a
    pseudo-query passage, such a passage would be fitted to the teacher's vector in training,
    and validation would then score how well training memorised its own pool.
    """
    return _without(passages, "pid", [s.passages for s in splits], lambda texts: texts.str.strip())


def _without(frame: pd.DataFrame, id_column: str, others: list[pd.DataFrame], normalise) -> pd.DataFrame:
    """Rows of `frame` whose id is in no frame of `others` and whose `normalise`d text is in
    none of theirs, in order, reindexed."""
    ids = set().union(*(set(other[id_column].astype(str)) for other in others))
    texts = set().union(*(set(normalise(other["text"])) for other in others))
    keep = ~frame[id_column].astype(str).isin(ids) & ~normalise(frame["text"]).isin(texts)
    return frame[keep].reset_index(drop=True)


def sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to `n` rows of `frame`, a seeded choice kept in the frame's order."""
    if n >= len(frame):
        return frame.reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).permutation(len(frame))[:n])
    return frame.iloc[rows].reset_index(drop=True)


def real_query_split(queries: pd.DataFrame, candidates: pd.DataFrame) -> SplitTables:
    """The `real` split: real queries, candidate passages (pid, text), no judgements."""
    return SplitTables(queries[["qid", "text"]].reset_index(drop=True),
                       candidates[["pid", "text"]].drop_duplicates("pid").reset_index(drop=True), EMPTY_QRELS)
