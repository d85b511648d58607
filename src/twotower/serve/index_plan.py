"""Which faiss index a collection of a given size gets, so a user never has to know faiss.

The rule (`twotower index --index auto`, the default; README, *Search your own documents*):

    n <= 20,000          exact       brute force reads n * dim * 4 bytes a query: ~3 ms at
                                     20k x 384 on 2 cores, and recall is 1
    n <= 200,000         ivf         k-means cells, float vectors
    n >  200,000         ivf_pq      the same with 4-bit codes of each pair of dimensions
                                     (1M x 384: 96 MB instead of 1.5 GB), scanned by faiss'
                                     fast-scan kernels; each search re-ranks its candidates
                                     by their float vectors, read from vectors.npy
                                     (ivf_sq8, 8-bit vectors, for an odd dimension)

An ivf index has nlist = 4 * sqrt(n) cells (faiss' rule of thumb), an ivf_pq index 2 * sqrt(n)
(2,000 at 1M: its cells scan fast, and against 4,000 cells it built in 29 s instead of ~80 s at
the same recall and latency), trained on 64 vectors a cell for 10 k-means iterations (more
buys no measurable recall here and costs minutes at 1M). How many cells a query visits (nprobe) is then calibrated on the
collection itself: the smallest power of two whose recall@10 against exact search, for
`CALIBRATION_QUERIES` pseudo-queries (spans of the collection's passages, encoded by the
query tower: `pseudo_queries`), reaches `TARGET_RECALL`.
hnsw is never chosen: its build took 8-21 minutes at 1M on 2 cores and it cannot be
quantized as cheaply. Above 200k, ivf_pq replaced ivf_sq8: on a million real-text vectors
8-bit scores could not tell near neighbours apart (recall@10 0.94 with every cell scanned),
and scanning the cells recall needed took ~25 ms a query (benchmarks/README.md). Every choice can be overridden (`--index`, `--nprobe`).
"""

import math
from dataclasses import dataclass

import faiss
import numpy as np

from twotower.retrieval import ann
from twotower.text.tokenizers import words

EXACT_MAX = 20_000
FLOAT_MAX = 200_000
TRAIN_PER_CELL = 64
KMEANS_ITERATIONS = 10
TARGET_RECALL = 0.95
CALIBRATION_QUERIES = 256
RECALL_K = 10


@dataclass(frozen=True)
class IndexPlan:
    kind: str
    nlist: int = 0  # ivf kinds only
    train_per_cell: int = TRAIN_PER_CELL
    kmeans_iterations: int = KMEANS_ITERATIONS


def plan_index(n: int, dim: int) -> IndexPlan:
    """The index kind and cell count for `n` vectors of `dim` dimensions (the module's rule)."""
    if n <= EXACT_MAX:
        return IndexPlan("exact")
    kind = "ivf" if n <= FLOAT_MAX else "ivf_sq8" if dim % 2 else "ivf_pq"
    cells_per_root = 2 if kind == "ivf_pq" else 4
    return IndexPlan(kind, max(1, min(round(cells_per_root * math.sqrt(n)), n // 39)))


@dataclass(frozen=True)
class Calibration:
    nprobe: int
    recall: float  # recall@10 against exact search at that nprobe, for the calibration queries
    queries: int


def pseudo_queries(texts: list[str], seed: int = 0) -> list[str]:
    """A span of 3-8 words from each text: what a query about it might say. Query vectors
    sit farther from their passages than a passage's own vector does, so calibrating on
    passage vectors as queries overstates recall (on 57k MS MARCO passages nprobe 16 gave
    0.977 for those, 0.862 for real queries); recall for these spans is within ~0.015 of
    real queries' at every nprobe (benchmarks/README.md, *Index and serve*)."""
    rng = np.random.default_rng(seed)
    spans = []
    for text in texts:
        tokens = words(text)
        n = int(rng.integers(3, 9))
        start = int(rng.integers(0, max(1, len(tokens) - n + 1)))
        spans.append(" ".join(tokens[start: start + n]) or text)
    return spans


def calibrate_nprobe(index: faiss.Index, vectors, queries: np.ndarray, *, nprobe: int | None = None,
                     target: float = TARGET_RECALL, block_rows: int = 65536, refine=None) -> Calibration:
    """The smallest power-of-two nprobe whose recall@10 against exact search for `queries`
    (float32 [q, dim], e.g. the query tower's vectors of `pseudo_queries`) reaches `target`,
    set on the ivf `index`; with `nprobe` given, that one and the recall it gets. `vectors`
    may be any array-like that slices into arrays (an `index_folder.NpyRows`): exact scores
    are computed `block_rows` rows at a time, never the whole score matrix. With `refine`
    (the float vectors again), recall is measured as a refined search finds (`ann.search`)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    truth = exact_top(queries, vectors, RECALL_K, block_rows)
    probe = nprobe or 1
    while True:
        index.nprobe = min(probe, index.nlist)
        _, found = ann.search(index, queries, RECALL_K, refine=refine)
        recall = float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))
        if nprobe or recall >= target or index.nprobe >= index.nlist:
            return Calibration(nprobe=int(index.nprobe), recall=round(recall, 4), queries=len(queries))
        probe *= 2


def exact_top(queries: np.ndarray, vectors, k: int, block_rows: int) -> np.ndarray:
    """Rows of the k best inner products of each query over all of `vectors`, block by block."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block_rows):
        block = np.asarray(vectors[start: start + block_rows], dtype=np.float32)
        scores = queries @ block.T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_rows, keep, 1)
    return best_rows
