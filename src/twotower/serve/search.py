"""Ad hoc retrieval with a trained model: rank the embedded corpus, an index folder, or a list
of texts, for a query.

`Searcher.from_pipeline()` needs only the pipeline's products (model, passage index, passage
texts), so it works in any checkout after `dvc repro` or `dvc pull`, without params.yaml.
`Searcher.from_index(DIR)` opens a folder `twotower index` built from any collection; it
adds BM25 and hybrid (the two fused as `twotower.retrieval.fusion` fuses runs) to dense search.
Dense search (hybrid's too) moves each query toward its first passages before the search
that answers (`twotower.retrieval.feedback`), as the evaluate stage does.
"""

import functools
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from twotower.retrieval import ann, bm25_index

from twotower.serve import index_folder
from twotower.devices import select_device
from twotower.errors import TwoTowerError
from twotower.retrieval.fusion import fuse_query
from twotower.retrieval.dense import embed
from twotower.retrieval.feedback import expand
from twotower.retrieval.dense import top_k as nearest  # `top_k` is search()'s argument name
from twotower.model.towers import load_model
from twotower.params import Bm25Params, FeedbackParams, HybridParams, TeacherParams
from twotower.text.tokenizers import UNK_ID, Tokenizer, make_tokenizer, words

MODEL = Path("models/model.pt")
EMBEDDINGS = Path("data/index/embeddings.npy")
PIDS = Path("data/index/pids.parquet")
PASSAGES = Path("data/prepared/test/passages.parquet")
FEEDBACK_PROBES = 4  # an ivf index's feedback search visits 1/4 of its cells (benchmarks/README.md)
BATCH_SIZE = 128  # passages/s of the fused student tower on 2 cores: 7,854 at 64, 8,914 at 128, 6,723 at 256
TEACHER_BATCH_SIZE = TeacherParams().batch_size  # the teacher stage's default: passages/s on CPU peak near it
MODES = ("dense", "bm25", "hybrid")


@dataclass(frozen=True)
class Hit:
    rank: int
    pid: str
    score: float
    text: str | None


class Searcher:
    """A model (eval mode, on `device`) and optionally an index of passage vectors to rank.

    `texts`, when given, is a mapping pid -> text or a sequence row-aligned with `pids`.
    """

    def __init__(self, model, tokenizer: Tokenizer, max_len_query: int, max_len_passage: int,
                 passage_vectors: np.ndarray | None = None, pids: Sequence | None = None,
                 texts: Mapping | Sequence | None = None, device="cpu", teacher: dict | None = None,
                 feedback: FeedbackParams = FeedbackParams()):
        """`teacher` ({model, max_seq_length}, from the checkpoint) loads the teacher that
        embeds passages for a model without a passage tower, when it first has to.
        `feedback` is how dense search expands a query (the `feedback` params)."""
        self.device = torch.device(device)
        self.feedback = feedback
        self.teacher_settings, self._teacher = teacher, None
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_len_query, self.max_len_passage = int(max_len_query), int(max_len_passage)
        self._set_index(passage_vectors, pids, texts)

    def _set_index(self, vectors, pids, texts) -> None:
        if (vectors is None) != (pids is None):
            raise TwoTowerError("passage vectors and pids come together: give both or neither")
        if vectors is not None:
            if len(vectors) != len(pids):
                raise TwoTowerError(f"index has {len(vectors)} vectors but {len(pids)} pids")
            if vectors.ndim != 2 or vectors.shape[1] != self.model.output_dim:
                raise TwoTowerError(f"index vectors have shape {vectors.shape} but the model makes "
                                    f"{self.model.output_dim} dimensions: rerun `dvc repro embed_corpus`")
            pids = np.asarray(pids, dtype=object)
            if isinstance(texts, Mapping):
                texts = [texts.get(pid) for pid in pids]
            if texts is not None and len(texts) != len(pids):
                raise TwoTowerError(f"{len(texts)} texts for {len(pids)} pids")
        self.passage_vectors, self.pids, self.texts = vectors, pids, texts
        self.faiss_index = self.store = self.bm25 = self.manifest = None
        self.dense_search = None  # (query vectors, k) -> (scores, rows) over faiss_index; see `serve`
        self.vectors = None  # the index's float vectors (`take(rows)`), for feedback
        self.feedback_search = None  # dense_search for the feedback's first passages; see `from_index`
        self.bm25_params, self.hybrid_params = Bm25Params(), HybridParams()

    @property
    def size(self) -> int:
        """Passages searched when no `documents=` are given."""
        return len(self.pids) if self.pids is not None else 0

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.bm25 is not None else MODES[:1]

    @classmethod
    def from_model(cls, path, device="auto", feedback: FeedbackParams = FeedbackParams()) -> "Searcher":
        """A searcher without an index: rank `documents=` given to each search."""
        device = select_device(device)
        model, ckpt = load_model(path, device)
        return cls(model, make_tokenizer(ckpt["vocab"], ckpt.get("tokenizer_json")), ckpt["max_len_query"],
                   ckpt["max_len_passage"], device=device, teacher=ckpt.get("teacher"), feedback=feedback)

    @classmethod
    def from_index(cls, folder, model=None, device="auto") -> "Searcher":
        """The index folder `twotower index` wrote, searched with the model that built it
        (`model` names where that file is now, if it moved; a different model is an error)."""
        manifest = index_folder.read_manifest(folder)
        folder = Path(folder)
        try:
            kind, passages = manifest["dense"]["kind"], manifest["passages"]
            bm25_params, hybrid_params = Bm25Params(**manifest["bm25"]), HybridParams(**manifest["hybrid"])
            feedback = FeedbackParams(**manifest.get("feedback", {"depth": 0}))  # older builds had none
            feedback.validate()
            model_path = index_folder.resolve_model(folder, manifest, model)
        except (KeyError, TypeError) as exc:
            raise TwoTowerError(f"{folder / index_folder.MANIFEST} is incomplete ({exc}): rebuild the index") from None
        searcher = cls.from_model(model_path, device, feedback)
        store = index_folder.PassageStore(folder / index_folder.PASSAGES)
        if len(store) != passages:
            raise TwoTowerError(f"{folder}: {index_folder.PASSAGES} has {len(store)} rows but the "
                                f"manifest says {passages}: rebuild the index")
        dense = ann.load_index(folder / index_folder.DENSE, kind, len(store), mmap=True)
        if dense.d != searcher.model.output_dim:
            raise TwoTowerError(f"{folder}: vectors of {dense.d} dimensions, the model makes "
                                f"{searcher.model.output_dim}: rebuild the index")
        searcher.faiss_index, searcher.store = dense, store
        if not (folder / index_folder.VECTORS).is_file():
            raise TwoTowerError(f"{folder}: {index_folder.VECTORS} not found (feedback and {kind} searches read "
                                "it): rebuild the index")
        searcher.vectors = index_folder.NpyRows(folder / index_folder.VECTORS)
        # a refined kind's searches re-rank candidates by their float vectors
        refine = searcher.vectors if kind in ann.REFINED_KINDS else None
        searcher.dense_search = functools.partial(ann.search, dense, refine=refine)
        # the feedback needs only the first `feedback.depth` passages: fewer cells find them
        nprobe = max(1, dense.nprobe // FEEDBACK_PROBES) if kind in ann.IVF_KINDS else None
        searcher.feedback_search = functools.partial(ann.search, dense, refine=refine, nprobe=nprobe)
        searcher.pids = store.ids
        searcher.bm25_params, searcher.hybrid_params = bm25_params, hybrid_params
        searcher.bm25 = bm25_index.load(folder / index_folder.BM25, len(store))
        searcher.manifest = manifest
        return searcher

    @classmethod
    def from_pipeline(cls, root=".", device="auto", feedback: FeedbackParams = FeedbackParams()) -> "Searcher":
        """The trained model with the embedded test corpus and its texts, as the pipeline left
        them; `feedback` as the evaluate stage searched (the `feedback` params)."""
        root = Path(root)
        for path in (root / MODEL, root / EMBEDDINGS, root / PIDS, root / PASSAGES):
            if not path.is_file():
                raise TwoTowerError(f"{path} not found: `dvc repro` (or `dvc pull`) in {root} creates it")
        searcher = cls.from_model(root / MODEL, device, feedback)
        try:
            vectors = np.load(root / EMBEDDINGS, mmap_mode="r")
            pids = pd.read_parquet(root / PIDS)["pid"].astype(str).to_numpy()
            passages = pd.read_parquet(root / PASSAGES, columns=["pid", "text"])
        except (ValueError, OSError, KeyError) as exc:
            raise TwoTowerError(f"cannot read the index under {root}: {exc}") from None
        searcher._set_index(vectors, pids, dict(zip(passages["pid"].astype(str), passages["text"])))
        return searcher

    def _embed(self, encode, texts: list[str], max_len: int, show_progress: bool = True) -> np.ndarray:
        """Unit vectors [len(texts), dim]; `embed` runs under torch.no_grad."""
        ids, lengths = self.tokenizer.encode_batch(texts, max_len)
        return embed(encode, ids, lengths, BATCH_SIZE, self.device, show_progress=show_progress)

    def embed_query(self, query: str) -> np.ndarray:
        """The unit vector [1, dim] of one query, as a search request needs it: the tower's
        single-sequence path (`TwoTower.encode_query`), traced with TorchScript on the CPU,
        skips `embed`'s batching and padding and most of the Python between operations
        (0.75 -> ~0.4 ms p50, benchmarks/query_latency.py)."""
        ids, lengths = self.tokenizer.encode_batch([query], self.max_len_query)
        ids = torch.as_tensor(ids[0, : lengths[0]], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            return self._query_path(ids)[None].float().cpu().numpy()

    @functools.cached_property
    def _query_path(self):
        """`model.encode_query`, traced once on the CPU (the trace shares the model's weights)."""
        if self.device.type != "cpu":
            return self.model.encode_query
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(_QueryPath(self.model), (torch.tensor([UNK_ID, UNK_ID, UNK_ID]),),
                                   check_trace=False)

    def embed_passages(self, texts: Sequence[str], show_progress: bool = True) -> np.ndarray:
        """Unit vectors [len(texts), dim] of `texts` as passages, tokenizing included: what
        indexing a collection costs per text. By the teacher when the model has no passage tower."""
        if self.model.teacher_passages:
            from twotower.distill.teacher import encode_texts

            return encode_texts(self.teacher, list(texts), TEACHER_BATCH_SIZE, dtype=np.float32,
                                desc="teacher" if show_progress else None)
        return self._embed(self._passage_path, list(texts), self.max_len_passage, show_progress)

    @functools.cached_property
    def _passage_path(self):
        """`model.encode_passages`, through the fused copy of its tower where one exists
        (`twotower.model.fused`: the same vectors to float rounding, ~2-4x the passages/s)."""
        return self.model.fused_passage_path()

    @property
    def teacher(self):
        """The sentence encoder that embeds passages for this model, loaded on first use."""
        if self._teacher is None:
            from twotower.distill.teacher import load_teacher, teacher_dir

            if not self.teacher_settings:
                raise TwoTowerError("this model has no passage tower and its checkpoint names no teacher")
            self._teacher = load_teacher(teacher_dir(self.teacher_settings["model"]), self.device,
                                         self.teacher_settings.get("max_seq_length"))
        return self._teacher

    def truncate(self, query: str) -> str:
        """The words of `query` the query tower reads (its first max_len_query): what every
        mode searches for, so a 100 KB query costs what a 32-word one does."""
        return " ".join(words(query)[: self.max_len_query])

    def search(self, query: str, top_k: int = 10, documents: Sequence[str] | None = None,
               mode: str = "dense") -> list[Hit]:
        """The `top_k` best passages for `query`: from `documents` (pid = position in the list,
        as str) when given, else from the index. `mode` bm25 and hybrid need `from_index`.
        A query without a word (`twotower.text.tokenizers.words`: "???", "...") is refused: BM25 has no
        term to match and the dense tower, reading no word, would rank by a vector of no query."""
        if not isinstance(query, str) or not query.strip():
            raise TwoTowerError("query is empty")
        if not words(query):
            raise TwoTowerError(f"query has no words to search for: {query[:40]!r} holds no letters or digits")
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise TwoTowerError(f"top_k must be a positive integer, got {top_k!r}")
        if mode not in MODES:
            raise TwoTowerError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if mode != "dense" and (documents is not None or self.bm25 is None):
            raise TwoTowerError(f"mode {mode} needs an index folder: use Searcher.from_index(DIR)")
        if self.store is not None and documents is None:
            return self._search_index(query, int(top_k), mode)
        if documents is not None:
            texts = list(documents)
            pids = [str(i) for i in range(len(texts))]
            vectors = self.embed_passages(texts) if texts else None
        elif self.passage_vectors is None:
            raise TwoTowerError("no passage index: pass documents=[...] or use Searcher.from_pipeline()")
        else:
            vectors, pids, texts = self.passage_vectors, self.pids, self.texts
        if vectors is None or len(vectors) == 0:
            return []
        query_vector = expand(self.embed_query(query), lambda queries, k: nearest(queries, vectors, k),
                              lambda rows: np.asarray(vectors[rows]), self.feedback)
        scores, rows = nearest(query_vector, vectors, int(top_k))
        return [Hit(rank=rank, pid=str(pids[row]), score=float(score),
                    text=_text(texts[row]) if texts is not None else None)
                for rank, (score, row) in enumerate(zip(scores[0], rows[0]), start=1)]

    def similarity(self, text_a: str, text_b: str) -> float:
        """Cosine of `text_a` as a query and `text_b` as a passage (the score search ranks by)."""
        a = self.embed_query(text_a)[0]
        b = self.embed_passages([text_b], show_progress=False)[0]
        return float(np.clip(a @ b, -1.0, 1.0))

    def _search_index(self, query: str, k: int, mode: str) -> list[Hit]:
        query = self.truncate(query) or query
        if mode == "bm25":
            scores, rows = bm25_index.top_rows(self.bm25, query, self.bm25_params, k)
        else:
            depth = k if mode == "dense" else max(k, self.hybrid_params.depth)
            query_vector = expand(self.embed_query(query), self.feedback_search, self.vectors.take, self.feedback)
            scores, rows = self.dense_search(query_vector, depth)
            found = rows[0] >= 0
            order = np.lexsort((rows[0][found], -scores[0][found]))  # ties by lower row, as top_k does
            scores, rows = scores[0][found][order], rows[0][found][order]
            if mode == "hybrid":
                scores, rows = self._fuse(query, scores, rows, k)
        return [Hit(rank=rank, pid=str(self.pids[row]), score=float(score), text=text)
                for rank, (score, row, text) in enumerate(zip(scores, rows, self.store.texts(rows)), start=1)]

    def _fuse(self, query: str, dense_scores, dense_rows, k: int):
        """Dense and BM25 runs to hybrid_params.depth, fused as the hybrid stage fuses runs
        (rows stand in for pids through `pid_rank`, which sorts as the pids do)."""
        bm25_scores, bm25_rows = bm25_index.top_rows(self.bm25, query, self.bm25_params, len(dense_rows))
        rank_of, row_at = self.pid_rank
        ranks, scores = fuse_query(rank_of[dense_rows], dense_scores, rank_of[bm25_rows], bm25_scores,
                                   self.hybrid_params)
        return scores[:k], row_at[ranks[:k]]

    @functools.cached_property
    def pid_rank(self) -> tuple[np.ndarray, np.ndarray]:
        """(each row's place in pid order, the row at each place): fusion breaks ties by pid,
        and comparing these integers costs a fraction of comparing 2,000 id strings a request.
        Sorting a million ids takes ~1 s, once (`live_index.for_serving` does it up front)."""
        row_at = np.argsort(self.pids.astype(str), kind="stable")
        rank_of = np.empty(len(row_at), dtype=np.int64)
        rank_of[row_at] = np.arange(len(row_at))
        return rank_of, row_at


class _QueryPath(torch.nn.Module):
    """`TwoTower.encode_query` as a module, for `torch.jit.trace`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model.encode_query(ids)


def _text(value) -> str | None:
    """Missing texts come back from parquet as NaN/None; a Hit says None."""
    return value if isinstance(value, str) else None
