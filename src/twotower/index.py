"""Dense passage index: embed texts in length-sorted batches and rank by exact dot product."""

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm


@torch.no_grad()
def embed(encode, ids: np.ndarray, lengths: np.ndarray, batch_size: int, device,
          desc: str = "embedding") -> np.ndarray:
    """Run `encode(ids, lengths)` over all rows; returns float32 [n, dim] in input order.

    Rows are processed sorted by length so each batch is trimmed to its own longest
    sequence, which saves most of the padding work on skewed MS MARCO lengths.
    """
    order = np.argsort(-lengths, kind="stable")
    out = None
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch",
                      disable=len(order) <= batch_size):
        rows = order[start: start + batch_size]
        batch_len = int(lengths[rows].max())
        vectors = encode(torch.as_tensor(np.asarray(ids[rows, :batch_len]), dtype=torch.long, device=device),
                         torch.as_tensor(lengths[rows], dtype=torch.long, device=device))
        if out is None:
            out = np.empty((len(order), vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors.float().cpu().numpy()
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def top_k(query_vectors: np.ndarray, passage_vectors: np.ndarray, k: int,
          batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(scores, passage rows) [nq, k] by dot product, best first; ties go to the lower row."""
    k = min(k, len(passage_vectors))
    all_scores = np.empty((len(query_vectors), k), dtype=np.float32)
    all_rows = np.empty((len(query_vectors), k), dtype=np.int64)
    for start in range(0, len(query_vectors), batch_size):
        scores = np.asarray(query_vectors[start: start + batch_size]) @ np.asarray(passage_vectors).T
        for i, row_scores in enumerate(scores):
            rows = _best_rows(row_scores, k)
            all_rows[start + i] = rows
            all_scores[start + i] = row_scores[rows]
    return all_scores, all_rows


def _best_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest scores, ties by lower row. argpartition finds the k-th score in
    linear time; every row scoring at least that much (ties at the cut included) is sorted."""
    if k < len(scores):
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


def to_run(qids, pids, scores: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """Ranked (qid, pid, rank, score) frame from top_k's (or `twotower.ann.search`'s) output.

    Rows of -1 (an approximate index that found fewer than k passages) are left out.
    """
    pids = np.asarray(pids, dtype=object)
    n, k = rows.shape
    found = rows.ravel() >= 0
    run = pd.DataFrame({
        "qid": np.repeat(np.asarray(qids, dtype=object), k),
        "pid": pids[np.where(found, rows.ravel(), 0)],
        "rank": np.tile(np.arange(1, k + 1), n),
        "score": scores.ravel().astype(np.float64),
    })
    return run if found.all() else run[found].reset_index(drop=True)
