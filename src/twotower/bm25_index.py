"""A BM25 index over a user's collection, built from batches of text, saved and searched.

`twotower.bm25` ranks the small test corpus in memory; this is its counterpart for a
collection of millions of passages: tokens are packed into one int32 array as they are
read, and the index is saved with bm25s and loaded memory-mapped, so a server touches
only the posting lists its queries need. Tokenization is `twotower.bm25.tokenize`, the
same the BM25 baseline uses, so a `params` (Bm25Params) gives the same terms everywhere.
"""

from pathlib import Path

import bm25s
import numpy as np
from tqdm import tqdm

from twotower.bm25 import tokenize
from twotower.errors import TwoTowerError
from twotower.files import atomic_path


class PackedTokens:
    """Every passage's token ids in one int32 array with offsets: a million passages as ~40M
    ints (160 MB) rather than 40M Python list slots. bm25s walks a corpus several times, one
    passage's ids at a time as a list, which is all it asks of one."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets

    def __len__(self):
        return len(self.offsets) - 1

    def __iter__(self):
        flat, offsets = self.flat, self.offsets
        for i in range(len(offsets) - 1):
            yield flat[offsets[i]: offsets[i + 1]].tolist()


def build(text_batches, params, rows: int | None = None, show_progress: bool = False) -> bm25s.BM25:
    """A bm25s index of every text in `text_batches` (row i = the i-th text), holding one
    batch of texts at a time and one vocabulary (stemmed term -> id) grown across batches."""
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
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    vocab = vocab or {"": 0}  # passages with no terms at all: bm25s still wants a vocabulary
    index = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
    index.index(bm25s.tokenization.Tokenized(ids=PackedTokens(flat, offsets), vocab=vocab),
                show_progress=show_progress)
    return index


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


def top_rows(index: bm25s.BM25, query: str, params, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32, rows int64) of the `k` best passages for `query`, best first, ties by
    lower row; only passages sharing a term with the query (score > 0) are returned."""
    token_ids = index.get_tokens_ids(tokenize([query], params, return_ids=False)[0])
    if not token_ids:
        return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
    scores = index.get_scores(token_ids)
    hits = np.flatnonzero(scores > 0)
    if len(hits) > k:
        kth = scores[hits[np.argpartition(-scores[hits], k - 1)[k - 1]]]
        hits = hits[scores[hits] >= kth]
    top = hits[np.lexsort((hits, -scores[hits]))][:k]
    return scores[top].astype(np.float32), top.astype(np.int64)
