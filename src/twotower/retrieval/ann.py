"""faiss indexes over unit passage vectors, scored by inner product (= cosine).

`exact` is faiss' brute force (IndexFlatIP); `hnsw` a proximity graph (IndexHNSWFlat) and
`ivf` an inverted file of k-means cells (IndexIVFFlat), both approximate: faster than brute
force on large corpora at some loss of recall. `ivf_sq8` is `ivf` with each vector stored
as one byte a dimension (IndexIVFScalarQuantizer, 8-bit): a quarter of the memory, for
collections whose float vectors would not fit a server's budget (`twotower.serve.index_plan`).
`ivf_pq` stores each pair of dimensions as a 4-bit product-quantizer code (faiss' fast-scan
kernels, IndexIVFPQFastScan: 1/16 of the memory, cells scanned ~10x faster than 8-bit
ones); its scores are rough, so a search re-scores its best `refine_depth(k)` candidates by
their exact inner products with the float vectors (`refine`, rows read from vectors.npy).
Builds are deterministic: ivf's k-means runs on a seeded sample with a fixed seed, and hnsw
inserts on one thread by default, since parallel insertion makes the graph depend on thread
timing.
"""

import contextlib
from pathlib import Path

import faiss
import numpy as np

from twotower.errors import TwoTowerError
from twotower.files import atomic_path
from twotower.param_checks import INDEXES

KINDS = (*INDEXES, "ivf_sq8", "ivf_pq")  # the pipeline's eval.index choices, and what `twotower index` adds
IVF_KINDS = ("ivf", "ivf_sq8", "ivf_pq")  # the kinds with cells, whose nprobe a search sets
REFINED_KINDS = ("ivf_pq",)  # the kinds whose searches re-rank candidates with the float vectors
REFINE_FACTOR = 10  # candidates per result a refined search re-scores exactly...
REFINE_MAX = 256  # ...up to this many: a row read from disk each, ~4 us
PQ_CENTROIDS = 16  # 4-bit codes
PQ_TRAIN_MIN = 10_000  # vectors (or all there are) that train an ivf_pq index


SETTINGS = ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nlist", "ivf_nprobe")


def settings(params) -> dict:
    """`build_index`'s keyword arguments from EvalParams (its SETTINGS of the same names)."""
    return {name: getattr(params, name) for name in SETTINGS}


def build_index(vectors: np.ndarray, kind: str = "exact", *, hnsw_m: int = 32,
                hnsw_ef_construction: int = 200, hnsw_ef_search: int = 128, ivf_nlist: int = 256,
                ivf_nprobe: int = 32, seed: int = 0, deterministic: bool = True,
                block_rows: int | None = None, train_per_cell: int = 256,
                kmeans_iterations: int = 25) -> faiss.Index:
    """An index of `vectors` (float32 [n, dim]); row i of `vectors` is id i in results.

    ivf trains spherical k-means (`kmeans_iterations`, faiss' default 25) on at most
    `train_per_cell` vectors a cell (256, faiss' own cap), drawn with `seed`; `ivf_nlist`
    is lowered to n // 39 when there are too few vectors for it (faiss wants 39 a cell).
    `deterministic: False` lets hnsw insert on every thread: faster, but two builds may differ slightly. With `block_rows`, `vectors` may be any
    array-like that slices into arrays (rows read from a file, say): it is added
    `block_rows` at a time and never held whole (hnsw's graph then depends on the blocks).
    """
    if kind not in KINDS:
        raise TwoTowerError(f"index kind {kind!r} is not one of {', '.join(KINDS)}")
    if block_rows is None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors.shape) != 2 or len(vectors) == 0:
        raise TwoTowerError(f"cannot index an array of shape {vectors.shape}: expected [n > 0, dim]")
    dim = vectors.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
        _add(index, vectors, block_rows)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = hnsw_ef_construction
        index.hnsw.efSearch = hnsw_ef_search
        with _threads(1 if deterministic else faiss.omp_get_max_threads()):
            _add(index, vectors, block_rows)
    else:
        nlist = max(1, min(ivf_nlist, len(vectors) // 39))
        if kind == "ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivf_pq":
            if dim % 2:
                raise TwoTowerError(f"an ivf_pq index codes pairs of dimensions; these vectors have {dim}")
            if len(vectors) < PQ_CENTROIDS:
                raise TwoTowerError(f"an ivf_pq index needs at least {PQ_CENTROIDS} vectors to train its "
                                    f"codes, got {len(vectors)}: use exact")
            index = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, nlist, dim // 2, 4,
                                             faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist,
                                                  faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.spherical = True
        index.cp.niter = kmeans_iterations
        index.cp.max_points_per_centroid = train_per_cell
        index.cp.min_points_per_centroid = min(39, train_per_cell)
        # pq's codebooks (16 centroids a pair of dimensions) want more vectors than few cells give
        wanted = train_per_cell * nlist if kind != "ivf_pq" else max(train_per_cell * nlist, PQ_TRAIN_MIN)
        sample = np.random.default_rng(seed).permutation(len(vectors))[:wanted]
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
        index.nprobe = min(ivf_nprobe, nlist)
        _add(index, vectors, block_rows)
    return index


def _add(index: faiss.Index, vectors, block_rows: int | None) -> None:
    if block_rows is None:
        index.add(vectors)
        return
    for start in range(0, len(vectors), block_rows):
        index.add(np.ascontiguousarray(vectors[start: start + block_rows], dtype=np.float32))


def index_kind(index: faiss.Index) -> str:
    """The KINDS name of an index built here (after `load_index`, faiss hands back the subclass)."""
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8"
    if isinstance(index, faiss.IndexIVFPQFastScan):
        return "ivf_pq"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexFlatIP):
        return "exact"
    raise TwoTowerError(f"unsupported faiss index type {type(index).__name__}")


def search(index: faiss.Index, queries: np.ndarray, k: int, *, ef_search: int | None = None,
           nprobe: int | None = None, refine=None) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32, rows int64) [nq, k], best first. `ef_search` / `nprobe` override the
    index's own setting for this call; hnsw searches with efSearch at least k, since faiss
    returns no more than efSearch rows. With `refine` (the float vectors: anything with
    `take(rows)`, e.g. `index_folder.NpyRows`), the index's best `refine_depth(k)` candidates
    are re-scored exactly and ranked first (`_refine`). An approximate index may still find
    fewer than k rows: the rest are -1 with score -inf (`twotower.retrieval.dense.to_run`
    leaves them out)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, index.ntotal)
    exact = refine_depth(k)
    depth = max(k, min(exact, index.ntotal)) if refine is not None else k
    params = None
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(depth, ef_search or index.hnsw.efSearch))
    elif nprobe is not None and isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=nprobe)
    scores, rows = index.search(queries, depth, params=params)
    if refine is not None:
        scores, rows = _refine(queries, scores, rows, refine, k, exact)
    scores[rows < 0] = -np.inf
    return scores, rows


def refine_depth(k: int) -> int:
    """How many of the index's best candidates a refined search of k re-scores exactly:
    REFINE_FACTOR a result, at most REFINE_MAX (each is one row read from disk)."""
    return min(REFINE_FACTOR * k, REFINE_MAX)


def _refine(queries, scores, rows, vectors, k: int, exact: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's first `exact` candidates re-scored against `vectors` (float rows read on
    demand, so a server never holds them) and ranked by that score, ties by lower row; when
    k is more, the index's next candidates follow with their own scores, capped at the
    lowest exact one so the run stays in order (a deep run, e.g. for fusion, needs its tail
    only roughly)."""
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_rows = np.full((len(queries), k), -1, dtype=np.int64)
    for i, query in enumerate(queries):
        found = rows[i] >= 0
        head, tail, tail_scores = rows[i][found][:exact], rows[i][found][exact:k], scores[i][found][exact:k]
        if not len(head):
            continue
        rescored = np.asarray(vectors.take(head), dtype=np.float32) @ query
        best = np.lexsort((head, -rescored))
        tail_scores = np.minimum(tail_scores, rescored.min())
        n = min(k, len(head) + len(tail))
        out_scores[i, :n] = np.concatenate([rescored[best], tail_scores])[:n]
        out_rows[i, :n] = np.concatenate([head[best], tail])[:n]
    return out_scores, out_rows


def save_index(index: faiss.Index, path) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path, kind: str | None = None, size: int | None = None, mmap: bool = False) -> faiss.Index:
    """Read an index written by `save_index`; with `kind` / `size`, fail unless it is of
    that kind / holds that many vectors (a stale index must not pass for the current one).
    `mmap` maps the file read-only instead of reading it: a server's memory then holds only
    the pages its searches touch, shared with the page cache."""
    path = Path(path)
    if not path.is_file():
        raise TwoTowerError(f"faiss index not found: {path} (run the embed_corpus stage)")
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0)
    except RuntimeError:
        raise TwoTowerError(f"{path}: not a readable faiss index") from None
    if kind is not None and index_kind(index) != kind:
        raise TwoTowerError(f"{path} holds an index of kind {index_kind(index)}, but eval.index is {kind}; "
                            "rerun embed_corpus")
    if size is not None and index.ntotal != size:
        raise TwoTowerError(f"{path} holds {index.ntotal} vectors, not {size}; rerun embed_corpus")
    return index


@contextlib.contextmanager
def _threads(n: int):
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
