"""A BM25 index over a user's collection, built from batches of text, saved and searched.

`twotower.retrieval.bm25` ranks the small test corpus in memory; this is its counterpart for a
collection of millions of passages: tokens are packed into one int32 array as they are
read, the score matrix is built a chunk of passages at a time, and the index is saved
with bm25s and loaded memory-mapped, so a server touches
only the posting lists its queries need. Tokenization is `twotower.retrieval.bm25.tokenize`, the
same the BM25 baseline uses, so a `params` (Bm25Params) gives the same terms everywhere; a
search's one query goes through `QueryTerms`, the same terms without bm25s' corpus machinery.
"""

import functools
import re
import threading
from pathlib import Path

import bm25s
import numpy as np
from bm25s import scoring
from bm25s.tokenization import _infer_stopwords
from tqdm import tqdm

from twotower.retrieval.bm25 import _stemmer, _stopwords, tokenize
from twotower.errors import TwoTowerError
from twotower.files import atomic_path


def build(text_batches, params, rows: int | None = None, show_progress: bool = False,
          chunk_docs: int = 65536) -> bm25s.BM25:
    """A bm25s index of every text in `text_batches` (row i = the i-th text).

    Tokens are packed into one int32 array as batches arrive (a million passages: ~40M
    ints, 160 MB), with one vocabulary (stemmed term -> id) grown across batches. The score
    matrix is then built here, `chunk_docs` passages at a time, with bm25s' own idf and tf
    formulas, into the same CSC arrays `BM25.index` makes (tests/test_bm25_index.py checks
    they are equal): bm25s builds it from three whole-corpus COO arrays and a scipy
    conversion, which peaks at ~1.5 GB for a million passages; this stays near the result's
    own size. bm25s' docs invite overriding the build for such cases.
    """
    vocab: dict[str, int] = {}
    flat_parts, lengths = [], []
    with tqdm(total=rows, desc="BM25 tokens", unit="passage", disable=not show_progress) as progress:
        for texts in text_batches:
            batch_ids = []
            for doc in tokenize(texts, params, return_ids=False):
                batch_ids.extend(vocab.setdefault(term, len(vocab)) for term in doc)
                lengths.append(len(doc))
            flat_parts.append(np.asarray(batch_ids, dtype=np.int32))
            progress.update(len(texts))
    if not lengths:
        raise TwoTowerError("cannot build a BM25 index of no passages")
    flat = np.concatenate(flat_parts)
    del flat_parts
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
    index.scores, index.nonoccurrence_array = _score_matrix(index, flat, offsets, max(len(vocab), 1), chunk_docs)
    if "" not in vocab:  # as `BM25.index` does: an id past the matrix for the empty token
        vocab[""] = max(vocab.values(), default=-1) + 1
    index.vocab_dict = vocab
    index.unique_token_ids_set = set(vocab.values())
    return index


def _pairs(flat, offsets, lengths, first: int, last: int, n_terms: int):
    """(doc, term, tf) of passages first..last-1, one row per distinct term of a passage,
    sorted by doc then term."""
    docs = np.repeat(np.arange(first, last, dtype=np.int64), lengths[first:last])
    keys, tf = np.unique(docs * n_terms + flat[offsets[first]: offsets[last]], return_counts=True)
    return (keys // n_terms).astype(np.int64), (keys % n_terms).astype(np.int64), tf.astype(np.float32)


def _score_matrix(index: bm25s.BM25, flat, offsets, n_terms: int, chunk_docs: int):
    """bm25s' (scores dict, nonoccurrence array): a CSC matrix [docs x terms] of BM25 term
    scores, columns holding docs in increasing order, as scipy's conversion leaves them.

    Two passes over the tokens: document frequencies first (idf needs all of them), then each
    chunk's scores, scattered straight into their columns' slots."""
    n_docs = len(offsets) - 1
    lengths = np.diff(offsets)
    avg_doc_len = np.array(lengths).mean()
    chunks = [(first, min(first + chunk_docs, n_docs)) for first in range(0, n_docs, chunk_docs)]
    df = np.zeros(n_terms, dtype=np.int64)
    for first, last in chunks:
        df += np.bincount(_pairs(flat, offsets, lengths, first, last, n_terms)[1], minlength=n_terms)
    doc_frequencies = dict(enumerate(df.tolist()))
    idf = scoring._build_idf_array(doc_frequencies, n_docs, scoring._select_idf_scorer(index.idf_method),
                                   dtype=index.dtype)
    nonoccurrence = None
    if index.method in index.methods_requiring_nonoccurrence:
        nonoccurrence = scoring._build_nonoccurrence_array(
            doc_frequencies=doc_frequencies, n_docs=n_docs, compute_idf_fn=scoring._select_idf_scorer(index.idf_method),
            calculate_tfc_fn=scoring._select_tfc_scorer(index.method), l_d=avg_doc_len, l_avg=avg_doc_len,
            k1=index.k1, b=index.b, delta=index.delta, dtype=index.dtype)
    tfc = scoring._select_tfc_scorer(index.method)

    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    index_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    data = np.empty(indptr[-1], dtype=index.dtype)
    indices = np.empty(indptr[-1], dtype=index_dtype)
    next_slot = indptr[:-1].copy()
    for first, last in chunks:
        doc, term, tf = _pairs(flat, offsets, lengths, first, last, n_terms)
        scores = idf[term] * tfc(tf_array=tf, l_d=lengths[doc], l_avg=avg_doc_len, k1=index.k1, b=index.b,
                                 delta=index.delta)
        if nonoccurrence is not None:
            scores -= nonoccurrence[term]
        order = np.argsort(term, kind="stable")  # by term, docs still increasing within each
        term = term[order]
        counts = np.bincount(term, minlength=n_terms)
        rank_in_term = np.arange(len(term)) - (np.cumsum(counts) - counts)[term]
        slots = next_slot[term] + rank_in_term
        data[slots] = scores[order]
        indices[slots] = doc[order]
        next_slot += counts
    return {"data": data, "indices": indices, "indptr": indptr.astype(index_dtype), "num_docs": n_docs}, nonoccurrence


def save(index: bm25s.BM25, folder) -> None:
    with atomic_path(folder) as tmp:
        index.save(str(tmp))


def load(folder, rows: int) -> bm25s.BM25:
    """The index saved in `folder`, memory-mapped; it must cover `rows` passages."""
    folder = Path(folder)
    try:
        index = bm25s.BM25.load(str(folder), mmap=True)
    except (OSError, ValueError, KeyError) as exc:
        raise TwoTowerError(f"{folder}: not a readable BM25 index ({type(exc).__name__})") from None
    if index.scores["num_docs"] != rows:
        raise TwoTowerError(f"{folder} covers {index.scores['num_docs']} passages, not {rows}")
    return index


TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s.tokenize's default, which `twotower.retrieval.bm25.tokenize` uses


class QueryTerms:
    """One text's terms exactly as `tokenize` gives them (lowercased words of 2+ characters,
    stopwords out, stemmed, in order), without what bm25s.tokenize builds for a corpus (a
    vocabulary, progress bars, a new stemmer a call): a search server tokenizes one query a
    request. Each thread gets its own stemmer, as PyStemmer's are not safe to share."""

    def __init__(self, stopwords: str, stemmer: str):
        self._stopwords = frozenset(_infer_stopwords(_stopwords(stopwords)) or ())
        self._stemmer_name = stemmer
        self._split = re.compile(TOKEN_PATTERN).findall
        self._local = threading.local()

    def __call__(self, text: str) -> list[str]:
        terms = [term for term in self._split(text.lower()) if term not in self._stopwords]
        if self._stemmer_name == "none" or not terms:
            return terms
        if not hasattr(self._local, "stemmer"):
            self._local.stemmer = _stemmer(self._stemmer_name)
        return self._local.stemmer.stemWords(terms)


@functools.lru_cache(maxsize=16)
def query_terms(stopwords: str, stemmer: str) -> QueryTerms:
    """The `QueryTerms` of these settings, made once."""
    return QueryTerms(stopwords, stemmer)


def top_rows(index: bm25s.BM25, query: str, params, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32, rows int64) of the `k` best passages for `query`, best first, ties by
    lower row; only passages sharing a term with the query (score > 0) are returned."""
    token_ids = index.get_tokens_ids(query_terms(params.stopwords, params.stemmer)(query))
    if not token_ids:
        return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
    scores = index.get_scores(token_ids)
    hits = np.flatnonzero(scores > 0)
    if len(hits) > k:
        kth = scores[hits[np.argpartition(-scores[hits], k - 1)[k - 1]]]
        hits = hits[scores[hits] >= kth]
    top = hits[np.lexsort((hits, -scores[hits]))][:k]
    return scores[top].astype(np.float32), top.astype(np.int64)
