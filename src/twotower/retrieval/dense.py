"""Dense passage index: embed texts in length-sorted batches and rank by exact dot product.

Also where ranking a split lives (`Split`, `rank`), which training's validation and the
evaluate stage share.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from twotower.retrieval.feedback import expand
from twotower.text.tokenizers import TokenArrays


@dataclass
class Split:
    """A split's token arrays with the ids that name their rows, and its qrels."""

    qids: np.ndarray
    queries: TokenArrays
    pids: np.ndarray
    passages: TokenArrays
    qrels: pd.DataFrame
    teacher_queries: np.ndarray | None = None  # training only: the teacher's float16 vectors per row
    teacher_passages: np.ndarray | None = None
    labelled: bool = True  # false for pseudo-query pairs (see `losses.LossInputs`)


def embed(encode, ids: np.ndarray, lengths: np.ndarray, batch_size: int, device,
          desc: str = "embedding", show_progress: bool = True) -> np.ndarray:
    """Run `encode(ids, lengths)` over all rows; returns float32 [n, dim] in input order.

    Rows are processed sorted by length so each batch is trimmed to its own longest
    sequence, which saves most of the padding work on skewed MS MARCO lengths.
    """
    whole = list(embed_windows(encode, ids, lengths, batch_size, device, max(len(lengths), 1), desc,
                               show_progress))
    return whole[0] if whole else np.empty((0, 0), dtype=np.float32)


@torch.no_grad()
def embed_windows(encode, ids: np.ndarray, lengths: np.ndarray, batch_size: int, device, window: int,
                  desc: str = "embedding", show_progress: bool = True):
    """Yield float32 [rows, dim] vectors of consecutive windows of `window` rows, in order.

    As in `embed`, but rows are sorted by length only within their window and no batch spans
    two windows, so a row's vector depends on its window alone: a slice that starts at a
    multiple of `window` embeds to bit-for-bit the rows a whole run gives (float kernels
    round differently for other batch shapes; `twotower.retrieval.shards` relies on this). Memory
    holds one window at a time.
    """
    n = len(lengths)
    starts = range(0, n, window)
    total = sum(-(-min(window, n - start) // batch_size) for start in starts)
    with tqdm(total=total, desc=desc, unit="batch", disable=not show_progress or total <= 1) as progress:
        for start in starts:
            window_lengths = np.asarray(lengths[start: start + window])
            order = np.argsort(-window_lengths, kind="stable")
            out = None
            for first in range(0, len(order), batch_size):
                rows = order[first: first + batch_size]
                batch_len = int(window_lengths[rows].max())
                vectors = encode(
                    torch.as_tensor(np.asarray(ids[start + rows, :batch_len]), dtype=torch.long, device=device),
                    torch.as_tensor(window_lengths[rows], dtype=torch.long, device=device))
                if out is None:
                    out = np.empty((len(order), vectors.shape[1]), dtype=np.float32)
                out[rows] = vectors.float().cpu().numpy()
                progress.update()
            yield out


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
    """Ranked (qid, pid, rank, score) frame from top_k's (or `twotower.retrieval.ann.search`'s) output.

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


@torch.no_grad()
def rank(model, split: Split, depth: int, batch_size: int, device,
         passage_vectors: np.ndarray | None = None, feedback=None) -> pd.DataFrame:
    """Run of every query of `split` against all its passages (or precomputed vectors), with
    `feedback` (FeedbackParams) moving each query toward its first passages before the
    search that makes the run (`twotower.retrieval.feedback`); none for training's validation."""
    model.eval()
    if passage_vectors is None:
        passage_vectors = embed(model.encode_passages, split.passages.ids, split.passages.lengths,
                                batch_size, device, desc="passages")
    query_vectors = embed(model.encode_queries, split.queries.ids, split.queries.lengths,
                          batch_size, device, desc="queries")
    if feedback is not None:
        query_vectors = expand(query_vectors, lambda queries, k: top_k(queries, passage_vectors, k),
                               lambda rows: passage_vectors[rows], feedback)
    scores, rows = top_k(query_vectors, passage_vectors, depth)
    return to_run(split.qids, split.pids, scores, rows)
