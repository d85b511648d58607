"""The dual encoder: a query tower and a passage tower of RNNs over token vectors.

The token vectors are the tokenize stage's table: by default the teacher's vector of each
of its WordPiece pieces (`tokenize.vectors: teacher`), or GloVe words (`word` + `glove`).
Each tower is `bag-of-vectors + RNN correction`: the term-weighted mean of the token vectors
plus a linear projection of the pooled RNN states, L2-normalised. Term weights start at the
training corpus' idf and the projection starts at zero, so an untrained model *is* the
idf-weighted bag of token vectors and training moves it from there; an RNN that had to
learn retrieval from scratch does worse than that bag. With `model.passage_encoder:
teacher` there is no passage tower: passages are the teacher's own vectors.
"""

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from twotower.errors import TwoTowerError
from twotower.model.fused import fuse
from twotower.params import ModelParams

CHECKPOINT_FORMAT = 4  # 4: passage_encoder, teacher space and WordPiece tokenizer in the checkpoint
_DEFAULTS = ModelParams()  # the architecture defaults have one source: params.py


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    embed_dim: int
    rnn_type: str = _DEFAULTS.rnn_type
    hidden_dim: int = _DEFAULTS.hidden_dim
    num_layers: int = _DEFAULTS.num_layers
    dropout: float = _DEFAULTS.dropout
    bidirectional: bool = _DEFAULTS.bidirectional
    shared_encoder: bool = _DEFAULTS.shared_encoder
    shared_embeddings: bool = _DEFAULTS.shared_embeddings
    freeze_embeddings: bool = _DEFAULTS.freeze_embeddings
    pooling: str = _DEFAULTS.pooling
    output: str = "student"  # a bare config has no teacher space; params choose it (`from_params`)
    passage_encoder: str = "student"
    teacher_dim: int = 0  # > 0: a learned projection into a teacher's space, for distillation
    teacher: str = ""  # the teacher's space (`teacher.teacher_identity`) when output is teacher

    @classmethod
    def from_params(cls, params, vocab_size: int, embed_dim: int, teacher_dim: int = 0,
                    teacher: str = "") -> "ModelConfig":
        """Take the architecture fields of a `ModelParams` (loss settings stay with training)."""
        keep = {f for f in cls.__dataclass_fields__} - {"vocab_size", "embed_dim", "teacher_dim", "teacher"}
        return cls(vocab_size=vocab_size, embed_dim=embed_dim, teacher_dim=teacher_dim, teacher=teacher,
                   **{k: v for k, v in asdict(params).items() if k in keep})


class Encoder(nn.Module):
    """One tower. Padding never reaches the RNN states nor the pooling.

    A bidirectional RNN is run as two one-way RNNs over the padded batch: the backward one
    reads each sequence reversed within its own length, so both only ever see real tokens
    before padding and their outputs at real positions are exactly those of a packed
    bidirectional RNN. On CPU this is ~2x faster than `pack_padded_sequence`, whose
    backward pass slices the batch at every time step.
    """

    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding, term_weight: nn.Embedding):
        super().__init__()
        self.cfg = cfg
        self.embedding = embedding
        self.term_weight = term_weight
        rnn_cls = {"GRU": nn.GRU, "LSTM": nn.LSTM, "RNN": nn.RNN}[cfg.rnn_type]
        directions = 2 if cfg.bidirectional else 1
        sizes = [cfg.embed_dim] + [cfg.hidden_dim * directions] * (cfg.num_layers - 1)
        self.forward_rnns = nn.ModuleList(rnn_cls(size, cfg.hidden_dim, batch_first=True) for size in sizes)
        self.backward_rnns = nn.ModuleList(
            rnn_cls(size, cfg.hidden_dim, batch_first=True) for size in (sizes if cfg.bidirectional else []))
        self.dropout = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(cfg.hidden_dim * directions, cfg.embed_dim)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def _rnn_outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T, hidden * directions]; rows are meaningful at t < length only."""
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        # Position t of the reversed sequence; an involution that leaves padding in place.
        reverse = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)

        def flip(t):
            return t.gather(1, reverse[:, :, None].expand_as(t))

        for layer, forward_rnn in enumerate(self.forward_rnns):
            if layer:
                x = self.dropout(x)  # between layers, as nn.GRU(dropout=...) does
            outputs = [forward_rnn(x)[0]]
            if self.cfg.bidirectional:
                outputs.append(flip(self.backward_rnns[layer](flip(x))[0]))
            x = torch.cat(outputs, dim=-1)
        return x

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T] (0 = padding), lengths [B] >= 1  ->  unit vectors [B, embed_dim]."""
        lengths = lengths.clamp(min=1)
        ids = ids[:, : int(lengths.max())]
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        vectors = self.embedding(ids)
        weights = self.term_weight(ids) * mask
        bag = (vectors * weights).sum(1) / lengths[:, None].to(vectors.dtype)
        outputs = self._rnn_outputs(self.dropout(vectors), lengths)
        if self.cfg.pooling == "last":
            # The forward direction ends at the last token, the backward one at the first.
            last = outputs[torch.arange(len(ids), device=ids.device), lengths - 1]
            pooled = (torch.cat([last[:, : self.cfg.hidden_dim], outputs[:, 0, self.cfg.hidden_dim:]], dim=-1)
                      if self.cfg.bidirectional else last)
        elif self.cfg.pooling == "mean":
            pooled = (outputs * mask).sum(1) / lengths[:, None].to(outputs.dtype)
        else:
            pooled = outputs.masked_fill(~mask, float("-inf")).max(1).values
        return F.normalize(bag + self.project(self.dropout(pooled)), dim=-1)

    def encode_one(self, ids: torch.Tensor) -> torch.Tensor:
        """One unpadded sequence ids [T] -> its unit vector [embed_dim], what `forward` gives
        it in a batch. Without padding there is nothing to mask and the backward direction is
        a plain flip: half the operations of the batched path, for a search request's query."""
        vectors = self.embedding(ids)
        bag = (vectors * self.term_weight(ids)).mean(0)
        x = vectors
        for layer, forward_rnn in enumerate(self.forward_rnns):
            outputs = [forward_rnn(x)[0]]
            if self.cfg.bidirectional:
                outputs.append(self.backward_rnns[layer](x.flip(0))[0].flip(0))
            x = torch.cat(outputs, dim=-1)
        if self.cfg.pooling == "last":
            pooled = (torch.cat([x[-1, : self.cfg.hidden_dim], x[0, self.cfg.hidden_dim:]])
                      if self.cfg.bidirectional else x[-1])
        elif self.cfg.pooling == "mean":
            pooled = x.mean(0)
        else:
            pooled = x.max(0).values
        return F.normalize(bag + self.project(pooled), dim=-1)


class TwoTower(nn.Module):
    """Query and passage towers over word-embedding tables that start equal.

    With `shared_embeddings` (or `shared_encoder`) both towers read one table and one set of
    term weights. Without it the passage tower gets its own copies: both start from the same
    vectors, so the towers begin in one space, but a word's weight and vector in a 200-piece
    passage need not be what they are in a 7-piece query (student mode gains ~0.015-0.02
    validation nDCG@10 from the copies). With `passage_encoder: teacher` there is no passage
    tower: passages are the teacher's vectors, and the query tower is trained into the
    teacher's space to search them.
    """

    def __init__(self, cfg: ModelConfig, embeddings: torch.Tensor | None = None,
                 term_weights: torch.Tensor | None = None):
        """`embeddings` [vocab, dim] and `term_weights` [vocab] (e.g. idf) initialise the
        tables; without them (as when loading a checkpoint) weights start at 1."""
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=0)
        self.term_weight = nn.Embedding(cfg.vocab_size, 1, padding_idx=0)
        nn.init.ones_(self.term_weight.weight)
        with torch.no_grad():
            if embeddings is not None:
                if tuple(embeddings.shape) != (cfg.vocab_size, cfg.embed_dim):
                    raise ValueError(f"embeddings {tuple(embeddings.shape)} do not match the config")
                self.embedding.weight.copy_(embeddings)
            if term_weights is not None:
                if tuple(term_weights.shape) != (cfg.vocab_size,):
                    raise ValueError(f"term weights {tuple(term_weights.shape)} do not match the config")
                self.term_weight.weight.copy_(term_weights[:, None])
            self.term_weight.weight[0] = 0.0
        self.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
        self.query_encoder = Encoder(cfg, self.embedding, self.term_weight)
        self.passage_encoder = (None if cfg.passage_encoder == "teacher" else self.query_encoder
                                if cfg.shared_encoder else Encoder(cfg, *self._passage_tables()))
        # Maps the towers' vectors into the teacher's space: for the `cosine` teacher loss, and
        # with `output: teacher` as the towers' last layer (search then ranks in that space).
        self.to_teacher = nn.Linear(cfg.embed_dim, cfg.teacher_dim) if cfg.teacher_dim else None
        if cfg.output == "teacher" and self.to_teacher is None:
            raise ValueError("output 'teacher' needs teacher_dim > 0")
        if cfg.passage_encoder == "teacher" and cfg.output != "teacher":
            raise ValueError("passage_encoder 'teacher' needs output 'teacher'")

    def _passage_tables(self) -> tuple[nn.Embedding, nn.Embedding]:
        """The passage tower's word table and term weights: the query tower's, or copies."""
        if self.cfg.shared_embeddings:
            return self.embedding, self.term_weight
        return copy.deepcopy(self.embedding), copy.deepcopy(self.term_weight)

    @property
    def teacher_passages(self) -> bool:
        """Whether passages are the teacher's vectors (this model has no passage tower)."""
        return self.cfg.passage_encoder == "teacher"

    def forward(self, query_ids, query_lengths, passage_ids=None, passage_lengths=None):
        """Both towers in one call, so DistributedDataParallel sees (and syncs) every step;
        the query tower alone when passages are the teacher's."""
        queries = self.encode_queries(query_ids, query_lengths)
        return queries, (None if passage_ids is None else self.encode_passages(passage_ids, passage_lengths))

    @property
    def output_dim(self) -> int:
        """Dimensions of the vectors the towers return (and an index holds)."""
        return self.cfg.teacher_dim if self.cfg.output == "teacher" else self.cfg.embed_dim

    def _out(self, vectors):
        if self.cfg.output == "teacher":
            return F.normalize(self.to_teacher(vectors), dim=-1)
        return vectors

    def encode_queries(self, ids, lengths):
        return self._out(self.query_encoder(ids, lengths))

    def encode_query(self, ids: torch.Tensor) -> torch.Tensor:
        """One query's unpadded ids [T] -> its vector [output_dim], in eval mode (no dropout)."""
        return self._out(self.query_encoder.encode_one(ids))

    def encode_passages(self, ids, lengths):
        if self.passage_encoder is None:
            raise TwoTowerError("this model has no passage tower: its passages are the teacher's vectors "
                                "(model.passage_encoder: teacher)")
        return self._out(self.passage_encoder(ids, lengths))

    def fused_passage_path(self):
        """`encode_passages` for inference: through the fused copy of the passage tower where
        one exists (`twotower.model.fused`), with the weights as they are now."""
        fused = fuse(self.passage_encoder)
        if fused is None:
            return self.encode_passages
        fused = fused.to(self.embedding.weight.device)
        return lambda ids, lengths: self._out(fused(ids, lengths))


def cpu_state_dict(model: nn.Module) -> dict:
    """The state dict copied to the CPU, each tensor once.

    The towers register the shared word table and term weights too, so the state dict holds
    each under three keys (the model's and each encoder's). torch.save stores a storage once
    however many keys name it, but copying per key (`.cpu()` of a CUDA tensor) would make
    three storages: ~3x the file. Keys that alias one tensor share one copy here.
    """
    copies, state = {}, {}
    for key, tensor in model.state_dict().items():
        alias = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                 tuple(tensor.stride()), tensor.dtype, tensor.device)
        if alias not in copies:
            copies[alias] = tensor.detach().to("cpu", copy=True)
        state[key] = copies[alias]
    return state


def save_model(model: TwoTower, vocab: list[str], max_len_query: int, max_len_passage: int, path,
               tokenizer_json: str | None = None, teacher: dict | None = None) -> None:
    """Everything needed to search later, with no params.yaml: weights, config, vocabulary,
    the WordPiece tokenizer's definition when it tokenizes, and when the teacher encodes the
    passages, how to load it (`teacher`: `model` as `teacher.model` names it, `max_seq_length`)."""
    from twotower.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save({
            "format": CHECKPOINT_FORMAT,
            "config": asdict(model.cfg),
            "state_dict": cpu_state_dict(model),
            "vocab": list(vocab),
            "max_len_query": int(max_len_query),
            "max_len_passage": int(max_len_passage),
            "tokenizer_json": tokenizer_json,
            "teacher": teacher,
        }, tmp)


def load_model(path, device="cpu") -> tuple[TwoTower, dict]:
    """(model in eval mode on `device`, the checkpoint dict for its vocab and lengths)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TwoTowerError(f"model not found: {path} (run `dvc repro train`)") from None
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise TwoTowerError(f"{path}: not a readable model checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TwoTowerError(f"{path}: not a twotower model checkpoint (format {CHECKPOINT_FORMAT})")
    model = TwoTower(ModelConfig(**ckpt["config"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise TwoTowerError(f"{path}: weights do not fit this version's model; rerun `dvc repro train`") from None
    return model.to(device).eval(), ckpt
