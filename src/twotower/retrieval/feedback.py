"""Pseudo-relevance feedback in vector space (Rocchio's, as Li et al. 2021 apply it to dense
retrievers): a query's vector is moved toward the vectors of the passages it ranks first,
and searched again.

Why it pays here: the query tower only approximates the teacher's query vector (mean cosine
~0.82 on unseen queries), while the passage vectors it searches are the teacher's own. The
few passages its first search ranks highest carry the teacher's view of what the query
asks for, and adding them corrects much of the tower's error (`FeedbackParams`' defaults,
chosen on validation: docs/DESIGN.md, *Feedback*). It costs a second search per query.
"""

from collections.abc import Callable

import numpy as np

from twotower.params import FeedbackParams


def expand(query_vectors: np.ndarray, search: Callable, vectors_of: Callable,
           params: FeedbackParams) -> np.ndarray:
    """Unit vectors [nq, dim]: each query plus `params.weight` times the mean of its first
    `params.depth` passages' vectors, renormalised (so scores stay cosines).

    `search(queries, k)` returns (scores, rows) [nq, k] with -1 where it found no row;
    `vectors_of(rows)` the float vectors of a 1-D array of rows. A query whose search found
    nothing is left as it was; depth 0 or weight 0 leaves every query as it was.
    """
    queries = np.asarray(query_vectors, dtype=np.float32)
    if params.depth == 0 or params.weight == 0 or len(queries) == 0:
        return queries
    _, rows = search(queries, params.depth)
    found = rows >= 0
    vectors = np.asarray(vectors_of(rows[found]), dtype=np.float32)
    sums = np.zeros_like(queries)
    np.add.at(sums, np.nonzero(found)[0], vectors)
    counts = np.maximum(found.sum(axis=1, keepdims=True), 1).astype(np.float32)
    expanded = queries + np.float32(params.weight) * sums / counts
    norms = np.linalg.norm(expanded, axis=1, keepdims=True)
    # float32 throughout: a float64 query would make every search convert the passage matrix
    return np.where(norms > 0, expanded / np.where(norms > 0, norms, 1), queries).astype(np.float32, copy=False)
